"""Checkpoints: a network, its parameters and (optionally) its training history in one file.

The file is an uncompressed `.npz` (a zip of `.npy` arrays, readable with ``allow_pickle=False``):
arrays ``W1, b1, ..., WL, bL`` for an `MLP` (``p1.W, p1.b, p2.gamma, ...``: layer number and
parameter name, for a `Sequential`) and ``history_0, ...``, plus ``__jaxnet__``, a UTF-8 JSON
document (as ``uint8``) with the format name and version, the architecture (for a `Sequential`:
the input shape, the loss, and every layer's type and options), dtype and shapes.

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


class Checkpoint(NamedTuple):
    """What `load_checkpoint` returns."""

    net: MLP | Sequential
    params: list[dict]
    history: dict | None
    metadata: dict


# --- saving ------------------------------------------------------------------------------------
def save(path, net, params, *, history: dict | None = None) -> Path:
    """Write `net`, `params` (and `history`) to exactly `path`, atomically.

    Arguments:
        path: the target file; missing parent directories are created, no suffix is added.
        net: the architecture, an `MLP` or a `Sequential`.
        params: its parameters (one dict per layer), finite, one float dtype.
        history: optional `{name: value}`; arrays and lists are stored as arrays, Python
            scalars, strings and None as JSON.

    Returns:
        `path` as a `pathlib.Path`.

    With several processes (`jaxnet.distributed`) every process calls it with the same
    arguments; process 0 writes and the others wait at a barrier until the file is there.

    Raises `ValueError` (before touching the disk) when `params` do not fit `net`, hold
    non-finite values or mix dtypes, or when a history entry cannot be stored.
    """
    path = Path(path)
    arrays, shapes, dtype = _encode_params(net, params)
    history_arrays, history_meta = _encode_history(history)
    from . import __version__

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "jaxnet_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "architecture": _architecture(net),
        "dtype": dtype, "shapes": shapes, "history": history_meta,
    }
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if is_writer():  # several processes: process 0 writes, the others wait until it is there
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, {**arrays, **history_arrays, METADATA_KEY: blob})
    barrier("jaxnet.save")
    return path


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
        dtype, bit-identical to what was saved; `history` is None when none was saved.

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
    return Checkpoint(net, params, history, meta)


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
