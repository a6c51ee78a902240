"""Checkpoints: a network, its parameters and (optionally) its training history in one file.

The file is an uncompressed `.npz` (a zip of `.npy` arrays, readable with ``allow_pickle=False``):
arrays ``W1, b1, ..., WL, bL`` for an `MLP` (``p1.W, p1.b, p2.gamma, ...``: layer number and
parameter name, for a `Sequential`) and ``history_0, ...``, plus ``__jaxnet__``, a UTF-8 JSON
document (as ``uint8``) with the format name and version, the architecture (for a `Sequential`:
the input shape, the loss, and every layer's type and options), dtype and shapes.

A resumable checkpoint also holds the training state: the optimizer state's leaves
(``opt_state.0, ...``), with early stopping the best parameters (``best.W1, ...``), and the
step and the settings a resumed run must share in the metadata's ``"training"`` entry.

Saving is atomic (temporary file, fsync, `os.replace`), so a crash never leaves a half-written
checkpoint where a good one was.  Loading checks the zip CRCs, the metadata, and every array
against the stored architecture, and says what is wrong instead of raising a zipfile traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .distributed import barrier, is_writer
from .network import MLP
from .sequential import Sequential

FORMAT = "jaxnet.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "__jaxnet__"
DTYPES = ("float16", "float32", "float64")


class CheckpointError(ValueError):
    """A file that is not a readable jaxnet checkpoint (foreign, truncated, corrupted)."""


class _CheckpointFields(NamedTuple):
    net: MLP | Sequential
    params: list[dict]
    history: dict | None
    metadata: dict


class Checkpoint(_CheckpointFields):
    """What `load_checkpoint` returns: a 4-tuple `(net, params, history, metadata)` with the
    training state as attributes.

    Attributes beyond the tuple:
        opt_state: the optimizer state's arrays (numpy, in `jax.tree.leaves` order), or None
            when none was saved; ``fit(..., resume=checkpoint)`` puts them back into
            ``tx.init(params)``'s tree, checking their number, shapes and dtypes.
        step: the global step count the parameters were reached at (None if not saved).
        settings: the options a resumed run must share (optimizer, learning rate, batch
            size, clip norm, the data-order key), or None.
        best_params: with early stopping, the best parameters seen so far (else None).
    """

    def __new__(cls, net, params, history, metadata, *, opt_state=None, step=None,
                settings=None, best_params=None):
        self = super().__new__(cls, net, params, history, metadata)
        self.opt_state, self.step, self.settings = opt_state, step, settings
        self.best_params = best_params
        return self


# --- saving ------------------------------------------------------------------------------------
def save(path, net, params, *, history: dict | None = None, opt_state=None,
         step: int | None = None) -> Path:
    """Write `net`, `params` (and `history`, the training state) to exactly `path`, atomically.

    Arguments:
        path: the target file; missing parent directories are created, no suffix is added.
        net: the architecture, an `MLP` or a `Sequential`.
        params: its parameters (one dict per layer), finite, one float dtype.
        history: optional `{name: value}`; arrays and lists are stored as arrays, Python
            scalars, strings and None as JSON.  The history `fit` returns also carries the
            training state: its ``opt_state``, ``settings`` and ``best_params`` entries are
            stored as the checkpoint's training state (below), and ``steps_run`` is the step,
            so ``save(path, net, params, history=history)`` alone is resumable.
        opt_state: the optimizer state (an optax state pytree) to store (overrides
            ``history["opt_state"]``): its leaves are stored as arrays.
        step: the global step count reached (overrides ``history["steps_run"]``).

    Returns:
        `path` as a `pathlib.Path`.

    With several processes (`jaxnet.distributed`) every process calls it with the same
    arguments; process 0 writes and the others wait at a barrier until the file is there.

    Raises `ValueError` (before touching the disk) when `params` do not fit `net`, hold
    non-finite values or mix dtypes, or when a history entry cannot be stored.
    """
    path = Path(path)
    arrays, shapes, dtype = _encode_params(net, params)
    train_arrays, train_meta, history = _encode_training(net, history, opt_state, step)
    history_arrays, history_meta = _encode_history(history)
    from . import __version__

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "jaxnet_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "architecture": _architecture(net),
        "dtype": dtype, "shapes": shapes, "history": history_meta,
    }
    if train_meta is not None:
        meta["training"] = train_meta
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if is_writer():  # several processes: process 0 writes, the others wait until it is there
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, {**arrays, **history_arrays, **train_arrays, METADATA_KEY: blob})
    barrier("jaxnet.save")
    return path


TRAINING_ENTRIES = ("opt_state", "settings", "best_params")  # history entries of the state


def _encode_training(net, history, opt_state=None, step=None):
    """`(arrays, metadata or None, history without the state entries)` for the training state.

    The optimizer state's leaves become ``opt_state.0, opt_state.1, ...``; best parameters
    ``best.<name>`` like the parameters; step and settings go into the metadata."""
    rest = None if history is None else \
        {k: v for k, v in history.items() if k not in TRAINING_ENTRIES}
    history = history or {}
    if opt_state is None:
        opt_state = history.get("opt_state")
    if step is None and np.ndim(history.get("steps_run", [])) == 0:
        step = history.get("steps_run")
    settings, best = history.get("settings"), history.get("best_params")
    if opt_state is None and step is None and settings is None and best is None:
        return {}, None, rest
    from .long_runs import opt_state_leaves

    arrays = {}
    meta = {"step": None if step is None else int(step), "settings": settings,
            "opt_state": None, "best_params": best is not None}
    if opt_state is not None:
        leaves = opt_state_leaves(opt_state)
        for i, a in enumerate(leaves):
            if a.dtype.hasobject:
                raise ValueError(f"opt_state leaf {i} has dtype object; not an optax state")
            arrays[f"opt_state.{i}"] = a
        meta["opt_state"] = len(leaves)
    if best is not None:
        best_arrays, _, _ = _encode_params(net, best)
        arrays.update({f"best.{k}": a for k, a in best_arrays.items()})
    return arrays, meta, rest


def _rebuild_training(path: Path, net, meta: dict, arrays: dict) -> dict:
    """The keyword arguments of `Checkpoint` for the stored training state."""
    train = meta.get("training")
    if train is None:
        return {}
    if not isinstance(train, dict):
        raise CheckpointError(f"{path}: malformed training state in metadata")
    n = train.get("opt_state")
    try:
        opt = None if n is None else [arrays[f"opt_state.{i}"] for i in range(int(n))]
    except KeyError as err:
        raise CheckpointError(f"{path}: missing optimizer-state array {err}") from err
    best = None
    if train.get("best_params"):
        best = _rebuild_params(path, net, meta, {k[5:]: a for k, a in arrays.items()
                                                 if k.startswith("best.")})
    return {"opt_state": opt, "step": train.get("step"), "settings": train.get("settings"),
            "best_params": best}


def _architecture(net) -> dict:
    if isinstance(net, MLP):
        # No "kind" key: an MLP's metadata stays as format 1 wrote it (its absence means MLP).
        return {"sizes": list(net.sizes), "hidden": list(net.hidden),
                "output": net.output, "loss": net.loss}
    if isinstance(net, Sequential):
        return {"kind": "Sequential", **net.to_config()}
    raise TypeError(f"save needs an MLP or a Sequential, got {type(net).__name__}")


def _array_name(net, l: int, name: str) -> str:
    """The archive's name of parameter `name` of layer `l` (1-based)."""
    return f"{name}{l}" if isinstance(net, MLP) else f"p{l}.{name}"


def _encode_params(net, params):
    """`({"W1": ndarray, ...}, {"W1": [n_1, n_0], ...}, dtype name)`, or ValueError."""
    _architecture(net)
    net._check_params(params)
    arrays = {}
    for l, layer in enumerate(params, start=1):
        for name in layer:
            a = np.asarray(layer[name])
            if a.dtype.name not in DTYPES:
                raise ValueError(f"{name}^[{l}] has dtype {a.dtype}; checkpoints hold {DTYPES}")
            bad = a.size - int(np.isfinite(a).sum())
            if bad:
                raise ValueError(f"{name}^[{l}] holds {bad} non-finite values (NaN/inf); "
                                 "refusing to save a broken checkpoint")
            arrays[_array_name(net, l, name)] = a
    dtypes = sorted({a.dtype.name for a in arrays.values()})
    if len(dtypes) != 1:
        raise ValueError(f"params mix dtypes {dtypes}; cast them to one dtype before saving")
    return arrays, {k: list(a.shape) for k, a in arrays.items()}, dtypes[0]


def _encode_history(history):
    """`({"history_i": ndarray}, [{"name", "array" | "value"}, ...] or None)`; keeps the order."""
    if history is None:
        return {}, None
    if not isinstance(history, dict):
        raise ValueError(f"history must be a dict, got {type(history).__name__}")
    arrays, entries = {}, []
    for i, (name, value) in enumerate(history.items()):
        if not isinstance(name, str):
            raise ValueError(f"history keys must be strings, got {name!r}")
        if value is None or isinstance(value, (str, bool, int, float)):
            entries.append({"name": name, "value": value})
            continue
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"history[{name!r}] is not an array: {err}") from None
        if a.dtype.hasobject:  # object arrays would need pickle, which load refuses
            raise ValueError(f"history[{name!r}] has dtype object; store numbers or strings")
        arrays[f"history_{i}"] = a
        entries.append({"name": name, "array": f"history_{i}"})
    return arrays, entries


def _write_atomic(path: Path, arrays: dict) -> None:
    """`np.savez` into a temporary file beside `path`, fsync, then rename it onto `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, _file_mode(path))  # mkstemp's 0600 -> what a plain open() would give
            np.savez(f, **arrays)  # a file object: numpy adds no ".npz" suffix
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_mode(path: Path) -> int:
    """The existing target's mode, or 0o666 masked by the umask for a new file."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


# --- loading -----------------------------------------------------------------------------------
def load(path, *, kind=None):
    """`(net, params)` from a checkpoint written by `save` (see `load_checkpoint`)."""
    return load_checkpoint(path, kind=kind)[:2]


def load_checkpoint(path, *, kind=None) -> Checkpoint:
    """Read a checkpoint: the network, the parameters, the history and the metadata.

    Arguments:
        path: a file written by `save`.
        kind: optionally the kind of network expected, ``"MLP"`` or ``"Sequential"`` (or the
            class); a checkpoint of another kind is a `CheckpointError`.

    Returns:
        `Checkpoint(net, params, history, metadata)`; `params` are `jnp` arrays of the stored
        dtype, bit-identical to what was saved; `history` is None when none was saved; the
        training state (`.opt_state`, `.step`, `.settings`, `.best_params`) is None where
        none was saved.

    Raises `FileNotFoundError` when `path` does not exist, `CheckpointError` when the file is
    not a (readable, intact, consistent) jaxnet checkpoint, and `ValueError` for a float64
    checkpoint while JAX's x64 mode is off (it would be silently rounded to float32).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no checkpoint at this path", str(path))
    arrays = _read_arrays(path)
    meta = _read_metadata(path, arrays)
    net = _rebuild_net(path, meta, kind)
    params = _rebuild_params(path, net, meta, arrays)
    history = _rebuild_history(path, meta, arrays)
    return Checkpoint(net, params, history, meta, **_rebuild_training(path, net, meta, arrays))


def _read_arrays(path: Path) -> dict:
    """Every array in the archive after checking each member's CRC; CheckpointError if not."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise CheckpointError(f"{path} is not a jaxnet checkpoint: not an .npz (zip) file")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                bad = archive.testzip()  # reads every member, so any flipped byte shows
            if bad is not None:
                raise CheckpointError(f"{path} is corrupted: member {bad!r} fails its CRC check")
            f.seek(0)
            with np.load(f, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except CheckpointError:
            raise
        except Exception as err:  # zipfile, numpy's header parser, OS: all mean "unreadable"
            raise CheckpointError(f"{path} is truncated or corrupted: cannot read the .npz "
                                  f"archive ({type(err).__name__}: {err})") from err


def _read_metadata(path: Path, arrays: dict) -> dict:
    """The decoded `__jaxnet__` JSON, with its format name and version checked."""
    if METADATA_KEY not in arrays:
        raise CheckpointError(f"{path} is not a jaxnet checkpoint: the .npz has no "
                              f"{METADATA_KEY!r} metadata entry (it holds {sorted(arrays)})")
    try:
        meta = json.loads(arrays[METADATA_KEY].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable metadata ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jaxnet checkpoint: metadata format is not "
                              f"{FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version} (written by jaxnet "
            f"{meta.get('jaxnet_version')}), newer than this jaxnet reads (up to "
            f"{FORMAT_VERSION}): upgrade jaxnet")
    return meta


def _rebuild_net(path: Path, meta: dict, kind=None):
    """The `MLP` or `Sequential` the metadata describes."""
    from .layers.registry import UnknownLayerType
    arch = meta.get("architecture")
    stored = arch.get("kind", "MLP") if isinstance(arch, dict) else None  # v1 files: MLP
    want = getattr(kind, "__name__", kind)
    if want is not None and want not in ("MLP", "Sequential"):
        raise ValueError(f"kind must be 'MLP', 'Sequential' or None, got {kind!r}")
    if want is not None and stored != want:
        raise CheckpointError(f"{path} holds a {stored} checkpoint, not the {want} expected")
    try:
        if stored == "Sequential":
            return Sequential.from_config(arch)
        return MLP(sizes=tuple(arch["sizes"]), hidden=tuple(arch["hidden"]),
                   output=arch["output"], loss=arch["loss"])
    except UnknownLayerType as err:  # a user's layer not registered in this process
        raise CheckpointError(f"{path}: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid architecture in metadata ({err!r})") from err


def _rebuild_params(path: Path, net: MLP, meta: dict, arrays: dict) -> list[dict]:
    """`[{"W", "b"}, ...]` as jnp arrays, each checked against `net`, the dtype and finiteness."""
    dtype = meta.get("dtype")
    if dtype not in DTYPES:
        raise CheckpointError(f"{path}: unsupported parameter dtype {dtype!r} in metadata")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(f"{path} holds float64 parameters but JAX's x64 mode is off, which "
                         "would round them to float32; load it inside "
                         "`with jax.enable_x64(True):`")
    params = []
    for l in range(1, net.L + 1):
        if isinstance(net, MLP):
            shapes = {"W": (net.sizes[l], net.sizes[l - 1]), "b": (net.sizes[l], 1)}
        else:
            shapes = {name: shape for name, (shape, _) in net._spec()[l - 1][0].items()}
        params.append({name: jnp.asarray(_stored_array(path, net, arrays,
                                                       _array_name(net, l, name), shape, dtype))
                       for name, shape in shapes.items()})
    return params


def _stored_array(path: Path, net, arrays: dict, key: str, shape, dtype: str):
    """`arrays[key]` once it is present, of `shape` and `dtype`, and finite."""
    if key not in arrays:
        raise CheckpointError(f"{path}: missing array {key!r} (the network has {net.L} layers)")
    a = arrays[key]
    if a.shape != shape:
        what = f"sizes={net.sizes}" if isinstance(net, MLP) else "of layers"
        raise CheckpointError(f"{path}: array {key!r} has shape {a.shape} but the stored "
                              f"architecture {what} needs {shape}")
    if a.dtype.name != dtype:
        raise CheckpointError(f"{path}: array {key!r} has dtype {a.dtype}, metadata says {dtype}")
    if not np.all(np.isfinite(a)):
        raise CheckpointError(f"{path}: array {key!r} holds non-finite values")
    return a


def _rebuild_history(path: Path, meta: dict, arrays: dict) -> dict | None:
    """The saved history dict in its saved order, or None."""
    entries = meta.get("history")
    if entries is None:
        return None
    try:
        return {e["name"]: arrays[e["array"]] if "array" in e else e["value"] for e in entries}
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: history entry missing or malformed ({err!r})") from err
