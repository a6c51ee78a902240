"""The registry of layer types: how a checkpoint names a layer and how `jn.load` rebuilds it.

A checkpoint stores each layer of a `Sequential` as its registered name and its dataclass
fields (JSON), never as code or a pickle.  The built-in layers are registered under their class
names; a layer of your own is registered with `register` (also a class decorator):

    @jn.layers.register
    @dataclass(frozen=True)
    class MyGRU:
        hidden: int
        ...

`jn.save` refuses, before it writes anything, a layer that could not be rebuilt: one whose class
is not registered, that is not a dataclass, or whose fields do not survive JSON (rebuilt from the
stored options, it must equal the layer saved).  The checkpoint also records the module and
qualified name of the class; `jn.load` imports that module when the name is not registered yet
(the import runs the module's `register`), so a layer defined in an importable module loads in a
fresh process, and ``jaxnet evaluate`` finds modules in the current directory too (or named with
``--import``).  As with any import, load only checkpoints whose modules you trust.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import keyword

REQUIRED = ("init", "forward", "backward")


class UnknownLayerType(ValueError):
    """A stored layer type that is not registered (and importing its module did not help)."""


def _types() -> dict:
    from . import LAYER_TYPES  # the one registry, defined beside the built-in layers

    return LAYER_TYPES


def register(cls=None, *, name: str | None = None):
    """Add a layer class to the registry so that `jn.load` and the CLI can rebuild it.

    Arguments:
        cls: the class (a frozen dataclass with `init`, `forward` and `backward`).
        name: the name checkpoints store (default ``cls.__name__``); give one when two of your
            classes share a class name, or yours shares one with a built-in layer.

    Returns:
        `cls` itself, so that ``@register`` and ``@register(name="...")`` decorate a class.

    Raises `TypeError` when `cls` is not a class or lacks a method of the protocol, and
    `ValueError` when `name` is not an identifier or is taken by a different class
    (registering the same class again under the same name is allowed).
    """
    if cls is None:
        return lambda c: register(c, name=name)
    if not isinstance(cls, type):
        raise TypeError(f"register needs a layer class, got {cls!r} ({type(cls).__name__}); "
                        "pass the class, not an instance")
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"{cls.__qualname__} is not a layer class: it needs init, forward and "
                        f"backward methods (missing {', '.join(missing)}); see docs/layers.md")
    key = cls.__name__ if name is None else name
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise ValueError(f"a layer's registered name must be a Python identifier, got {key!r}")
    types = _types()
    old = types.get(key)
    if old is not None and old is not cls:
        raise ValueError(f"the layer name {key!r} is already registered to "
                         f"{old.__module__}.{old.__qualname__}; register "
                         f"{cls.__module__}.{cls.__qualname__} under another name with "
                         f"register(cls, name=...)")
    types[key] = cls
    return cls


def registered_name(layer) -> str | None:
    """The name `layer`'s class is registered under, or None (subclasses are not covered)."""
    cls = type(layer)
    for key, value in _types().items():
        if value is cls:
            return key
    return None


def _jsonable(value):
    if isinstance(value, tuple):
        return {"tuple": [_jsonable(v) for v in value]}
    return value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_from_json(v) for v in value["tuple"])
    return value


def layer_config(index: int, layer) -> dict:
    """`{"type", "module", "qualname", "options"}` for the checkpoint, or a ValueError naming
    layer `index` and what to change when it could not be rebuilt from that."""
    what = f"layer {index} ({layer!r})"
    cls = type(layer)
    name = registered_name(layer)
    if name is None:
        raise ValueError(f"{what} cannot be saved: its class {cls.__module__}."
                         f"{cls.__qualname__} is not registered, so jn.load could not rebuild "
                         "it; decorate the class with @jn.layers.register (or call "
                         "jn.layers.register(cls)) before saving")
    if not dataclasses.is_dataclass(layer):
        raise ValueError(f"{what} cannot be saved: a checkpoint stores a layer as its dataclass "
                         "fields, and it is not a dataclass; make the class a "
                         "@dataclass(frozen=True) whose fields are its options (ints, floats, "
                         "strings, bools, None, tuples or lists of them)")
    options = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer) if f.init}
    stored = {}
    for key, value in options.items():
        try:
            text = json.dumps(_jsonable(value), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what} cannot be saved: its field {key!r} = {value!r} is not "
                             f"JSON-serialisable ({err}); keep a layer's fields to ints, floats, "
                             "strings, bools, None, tuples or lists of them") from None
        stored[key] = json.loads(text)
    try:
        rebuilt = cls(**{k: _from_json(v) for k, v in stored.items()})
        same = rebuilt == layer
    except Exception as err:  # noqa: BLE001 -- any failure means it would not load back
        raise ValueError(f"{what} cannot be saved: rebuilding it from its stored fields "
                         f"{stored} fails ({type(err).__name__}: {err}); its __init__ must take "
                         "its dataclass fields") from None
    if not same:
        raise ValueError(f"{what} cannot be saved: rebuilt from its fields as JSON stores them "
                         f"({stored}) it is {rebuilt!r}, not the same layer; use fields that "
                         "survive JSON (ints, floats, strings, bools, None, tuples or lists)")
    return {"type": name, "module": cls.__module__, "qualname": cls.__qualname__,
            "options": stored}


def layer_from_config(entry: dict):
    """The layer `entry` (from `layer_config`) describes; a ValueError when its type is not
    registered and importing its recorded module does not register it."""
    kind = entry["type"]
    types = _types()
    failed = _import_recorded_module(entry) if kind not in types else None
    if kind not in types:
        raise UnknownLayerType(f"unknown layer type {kind!r}; known: {sorted(types)}. "
                         f"{_how_to_register(entry, failed)}")
    options = {k: _from_json(v) for k, v in entry["options"].items()}
    return types[kind](**options)


def _import_recorded_module(entry: dict) -> str | None:
    """Import the module the checkpoint says the layer's class came from (if any): importing
    it runs its `register`.  Returns the import's error as text (None if it worked)."""
    module = entry.get("module")
    if not isinstance(module, str) or module == "__main__" \
            or not all(part.isidentifier() for part in module.split(".")):
        return None
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 -- reported as the reason the type is unknown
        return f"{type(err).__name__}: {err}"
    return None


def _how_to_register(entry: dict, failed: str | None) -> str:
    module, qualname = entry.get("module"), entry.get("qualname", entry["type"])
    if not isinstance(module, str):
        return ("It is a layer of your own: import the module that registers it "
                "(jn.layers.register) before loading.")
    if module == "__main__":
        return (f"It is {qualname}, defined in the script that saved the checkpoint "
                "(__main__): register it (jn.layers.register) before loading, or move it to a "
                "module that registers it on import (jaxnet evaluate --import MODULE).")
    how = f"importing it failed ({failed})" if failed else "importing it did not register it"
    return (f"It is {module}.{qualname}: {how}; make that module importable (on sys.path, e.g. "
            "the current directory for jaxnet evaluate) and decorate the class with "
            "@jn.layers.register, or import the module that registers it before loading.")
