"""Long runs: the training state that makes a run resumable, safe interrupts, time-sized chunks,
and periodic checkpoints.  `fit` and `fit_many` (through `training.train`) use these.

A run's state is its parameters, its optimizer state, its global step count and its data order.
The data order is a function of the key and the global step alone (`batch_indices`), and an
optax schedule reads its step from the optimizer state's count, so a run stopped at step `s`
and continued from `(params, opt_state, s)` makes exactly the updates the uninterrupted run
makes.  See ``docs/long-runs.md``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# --- the data order -------------------------------------------------------------------------


def batch_indices(key, step, m: int, batch_size: int):
    """The example indices of the minibatch of global step `step`.

    Epoch `e = step // (m // batch_size)` shuffles the `m` examples with
    ``jax.random.permutation(jax.random.fold_in(key, e), m)``; step `step` takes the
    `j = step mod (m // batch_size)`-th slice of `batch_size` of them (the last
    `m mod batch_size` examples of each shuffled epoch are left out, so every step has the same
    shape).  A function of `key` and `step` alone: a resumed run sees the batches of one never
    stopped.  Traceable (`step` may be a traced integer).

    Arguments:
        key: the run's typed PRNG key (`fit`'s ``key``).
        step: the global step, an int or an integer scalar array.
        m, batch_size: the number of examples and the minibatch size (Python ints).

    Returns:
        `(batch_size,)` int32 indices into the example axis.
    """
    per_epoch = m // batch_size
    epoch, j = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), m)
    return jax.lax.dynamic_slice_in_dim(perm, j * batch_size, batch_size)


# --- the settings a resumed run must share ----------------------------------------------------


def key_record(key):
    """A JSON form of a typed key (or a stack of K keys): `{"impl", "data"}`."""
    return {"impl": str(jax.random.key_impl(key)),
            "data": np.asarray(jax.random.key_data(key)).tolist()}


def key_from_record(record):
    """The typed key `key_record` describes."""
    return jax.random.wrap_key_data(jnp.asarray(record["data"], jnp.uint32),
                                    impl=record["impl"])


def settings(*, optimizer, learning_rate, batch_size, clip_norm, key, schedule_value=None):
    """The options a resumed run must share with the run it continues, as a JSON-able dict.

    ``optimizer`` is the name (``"adam"``, ...) or ``"optax"`` for a transformation given as
    an object (then only its state's structure can be compared); ``learning_rate`` a float,
    a list of K floats (`fit_many`), ``"schedule"`` or None; ``schedule_value`` the schedule's
    value at the step the record is made (a cheap check that a resumed run's schedule is the
    same function)."""
    if learning_rate is not None and not isinstance(learning_rate, str):
        lr = np.asarray(learning_rate, np.float64)
        learning_rate = float(lr) if lr.ndim == 0 else lr.tolist()
    return {"optimizer": optimizer, "learning_rate": learning_rate,
            "batch_size": None if batch_size is None else int(batch_size),
            "clip_norm": None if clip_norm is None else float(clip_norm),
            "key": key_record(key),
            "schedule_value": None if schedule_value is None else float(schedule_value)}


def check_settings(stored: dict, current: dict, where: str) -> None:
    """ValueError naming every option that differs between the run and the one it resumes."""
    diffs = []
    for name in ("optimizer", "learning_rate", "batch_size", "clip_norm"):
        a, b = stored.get(name), current.get(name)
        same = a == b if not (isinstance(a, (float, list)) and isinstance(b, (float, list))) \
            else np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-12, atol=0)
        if not same:
            diffs.append(f"{name}: {a!r} there, {b!r} now")
    sa, sb = stored.get("schedule_value"), current.get("schedule_value")
    if sa is not None and sb is not None and not np.isclose(sa, sb, rtol=1e-6, atol=0):
        diffs.append(f"the schedule's learning rate at the resume step: {sa!r} there, {sb!r} now "
                     "(a different schedule)")
    if diffs:
        raise ValueError(f"cannot resume from {where}: the run must keep its optimizer, "
                         "hyper-parameters and batch size, but " + "; ".join(diffs))


# --- the optimizer state ----------------------------------------------------------------------


def opt_state_leaves(opt_state) -> list[np.ndarray]:
    """The leaves of an optax state as numpy arrays, in `jax.tree.leaves` order."""
    return [np.asarray(a) for a in jax.tree.leaves(opt_state)]


def restore_opt_state(template, leaves, where: str):
    """`template`'s tree (e.g. ``tx.init(params)``) holding the stored `leaves`.

    Checks the number of leaves, and each leaf's shape and dtype, so that a state saved by
    another optimizer (or another network) is a clear ValueError, not a wrong run."""
    flat, treedef = jax.tree.flatten(template)
    leaves = list(leaves)
    if len(leaves) != len(flat):
        raise ValueError(f"cannot resume from {where}: its optimizer state has {len(leaves)} "
                         f"arrays but this optimizer's has {len(flat)} (another optimizer?)")
    out = []
    for i, (a, t) in enumerate(zip(leaves, flat)):
        a = np.asarray(a)
        if a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype:
            raise ValueError(f"cannot resume from {where}: optimizer-state array {i} is "
                             f"{a.dtype}{list(a.shape)} there but {np.asarray(t).dtype}"
                             f"{list(np.shape(t))} here (another optimizer or network?)")
        out.append(jnp.asarray(a))
    return jax.tree.unflatten(treedef, out)


# --- safe interrupts --------------------------------------------------------------------------


class Interrupts:
    """A context in which SIGINT and SIGTERM ask training to stop at the next chunk boundary.

    The first signal sets `.signal` (``"SIGINT"`` or ``"SIGTERM"``); a second one raises
    `KeyboardInterrupt` at once.  Handlers are installed only in the main thread (Python
    delivers signals there alone) and the previous ones are restored on exit.  With
    ``enabled=False`` nothing is installed and signals keep their usual effect."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.signal: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborted")
        self.signal = signal.Signals(signum).name

    def __enter__(self):
        if self.enabled:
            install_handlers(self._previous, [getattr(signal, n) for n in self.SIGNALS],
                             self._handle)
        return self

    def __exit__(self, *exc):
        restore_handlers(self._previous)
        return False


def install_handlers(previous: dict, signals, handler) -> None:
    """Install `handler` for `signals` (main thread only: Python allows no other), keeping the
    handlers it replaces in `previous` for `restore_handlers`."""
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)


def restore_handlers(previous: dict) -> None:
    """Put back the handlers `install_handlers` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    previous.clear()


# --- time-sized chunks ------------------------------------------------------------------------


class ChunkSizer:
    """Steps per compiled call, sized so that one call takes about `target_s` seconds.

    The first call runs `first` steps (it also compiles; one step, so that a model of a second
    per step still answers within about two seconds); each next size is the measured rate
    times `target_s`, growing at most `growth`-fold per call (the first measurement includes
    compilation, the next ones do not), never above `most`.  A fixed `chunk` (an int) turns
    the sizing off."""

    def __init__(self, most: int, *, fixed: bool, target_s: float = 1.0, first: int = 1,
                 growth: float = 8.0):
        self.most, self.fixed, self.target_s, self.growth = most, fixed, target_s, growth
        self.size = most if fixed else min(first, most)
        self._t = None

    def start(self) -> None:
        self._t = time.perf_counter()

    def done(self, ran: int) -> None:
        if self.fixed or ran <= 0:
            return
        elapsed = max(time.perf_counter() - self._t, 1e-6)
        want = ran / elapsed * self.target_s
        self.size = int(max(1, min(self.most, want, self.size * self.growth)))


# --- periodic checkpoints ---------------------------------------------------------------------


def stepped_path(path: Path, step: int) -> Path:
    """``run/model.npz`` at step 1200 -> ``run/model.step-00001200.npz``."""
    return path.with_name(f"{path.stem}.step-{step:08d}{path.suffix}")


def _stepped_files(path: Path) -> list[Path]:
    pattern = re.compile(re.escape(path.stem) + r"\.step-(\d+)" + re.escape(path.suffix) + "$")
    found = [(int(mt.group(1)), p) for p in path.parent.glob(f"{path.stem}.step-*{path.suffix}")
             if (mt := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def write_checkpoint(path, save_fn, step: int, keep: int) -> Path:
    """Write a checkpoint of step `step` so that `path` is the newest complete one.

    `save_fn(target)` writes one checkpoint atomically (`jaxnet.save`).  With ``keep > 0`` it
    writes ``<stem>.step-<step><suffix>`` beside `path` and then puts the same file at `path`
    (a hard link, or a copy, renamed over `path` in one step); only the `keep` newest
    step-named files are kept.  With ``keep == 0`` it writes `path` alone.  Every file appears
    whole or not at all: a crash mid-write leaves the previous checkpoint."""
    path = Path(path)
    if keep == 0:
        save_fn(path)
        return path
    stepped = save_fn(stepped_path(path, step))
    from .distributed import barrier, is_writer

    if not is_writer():  # several processes: process 0 links and prunes, the others wait
        barrier("jaxnet.checkpoint")
        return path
    try:
        _link_newest(path, stepped, keep)
    finally:
        barrier("jaxnet.checkpoint")
    return path


def _link_newest(path: Path, stepped: Path, keep: int) -> None:
    """Put `stepped` at `path` in one rename; keep the `keep` newest step-named files."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(stepped, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(stepped, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    for old in _stepped_files(path)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
