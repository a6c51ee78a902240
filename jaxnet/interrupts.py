"""Safe interrupts and rotating checkpoints for long training loops.

A compiled training loop returns to Python only between chunks.  A `KeyboardInterrupt` raised
in the middle of a chunk (or of an XLA compilation) unwinds through JAX's internals, loses the
run and has crashed the interpreter; so the loops install `Interrupts`: SIGINT and SIGTERM only
*ask* the loop to stop, the loop looks at the request at the next chunk boundary and returns the
last completed state (``history["stopped"] == "interrupted"``).  A second SIGINT aborts at once
with `KeyboardInterrupt`, for a loop that does not come back.

`write_rotating` keeps the file at a path always the newest complete checkpoint and up to
`keep` older ones beside it, each with its step in the name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
LAST = [None]  # the signal number the most recent `Interrupts` caught (None: none yet)


class Interrupts:
    """Context manager: while inside, SIGINT/SIGTERM set `signal` instead of raising.

    ``with Interrupts() as stop: ... if stop.requested: break``.  The previous handlers come
    back on exit.  Outside the main thread (where Python cannot install handlers) it does
    nothing and `requested` stays False.  A second SIGINT while one is pending raises
    `KeyboardInterrupt` at once; a second SIGTERM is only recorded.
    """

    def __init__(self):
        self.signal = None
        self._old = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            self.__exit__(None, None, None)
            raise KeyboardInterrupt
        self.signal = LAST[0] = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
        return False


def exit_status(signum) -> int:
    """The shell's status for a run ended by signal `signum`: 128 + its number (130, 143)."""
    return 128 + int(signum)


def step_path(path, step: int) -> Path:
    """``run/model.npz`` at step 1200 -> ``run/model.step-00001200.npz``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.step-{int(step):08d}{path.suffix}")


def write_rotating(path, step: int, write, *, keep: int = 3) -> Path:
    """Write the checkpoint of `step` with `write(target)` (an atomic writer), so that `path`
    is the newest complete one and up to `keep` step-named ones lie beside it.

    The step's file is written first (atomically), then linked (or copied) over `path` in one
    `os.replace`: a crash at any moment leaves `path` either the previous checkpoint or this
    one, never a partial file.  Step-named files beyond the `keep` newest are deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = step_path(path, step)
    write(target)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(target, tmp)
    except OSError:  # no hard links here (some network file systems): write a second copy
        write(tmp)
    os.replace(tmp, path)
    pattern = re.compile(re.escape(path.stem) + r"\.step-(\d+)" + re.escape(path.suffix) + "$")
    older = sorted((int(m.group(1)), p) for p in path.parent.iterdir()
                   if (m := pattern.match(p.name)))
    for _, p in older[:-keep] if keep > 0 else older:
        with contextlib.suppress(OSError):
            p.unlink()
    return path
