"""What `jaxnet train` needs for long runs: a signal guard around the whole command, and the
settings of a run it resumes (``--resume RUN_DIR``).

`fit` handles SIGINT/SIGTERM itself while it trains (it stops at the next chunk boundary and
returns a resumable state).  Before training (loading data, the gradient check, building the
network) there is nothing to save, and a `KeyboardInterrupt` raised there can unwind through an
XLA compilation (it once ended in a segmentation fault); so `Guard` replaces Python's handlers:
the signal prints one line and ends the process with `os._exit` at once, from Python code,
never unwinding through JAX.  From just before training on, a signal is only recorded (the
command writes its results and then exits 130 / 143); a second one exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .long_runs import install_handlers, restore_handlers

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Flags a resumed run may change: the run's total steps, how it is checkpointed and stopped
# early, and how this invocation looks (gradient-check options included).  Every other flag
# is the run's: given with another value, `--resume` refuses.
MAY_CHANGE = {"steps", "checkpoint_every", "keep", "patience", "resume", "out", "quiet",
              "no_gradcheck", "examples", "entries", "check_every", "check_memory"}
PER_INVOCATION = {"resume", "out", "quiet", "no_gradcheck"}  # never taken from the record


def exit_status(name: str) -> int:
    """The shell's status for a run ended by the signal `name`: 130 (SIGINT), 143 (SIGTERM)."""
    return 128 + int(getattr(signal, name))


class Guard:
    """Context manager for `jaxnet train`'s signals (see the module docstring).

    `phase` names what is running, for the one line an early signal prints; `defer()` switches
    to recording (from just before training); `signal` is the recorded name or None."""

    def __init__(self):
        self.phase = "starting"
        self.deferring = False
        self.signal: str | None = None
        self._previous = {}

    def defer(self) -> None:
        self.deferring = True

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.deferring and self.signal is None:
            self.signal = name
            return
        what = "while writing the results (they are written atomically: each file is " \
            "whole or absent)" if self.deferring else f"during {self.phase}; no checkpoint " \
            "was written"
        sys.stdout.flush()
        print(f"jaxnet: interrupted ({name}) {what}", file=sys.stderr, flush=True)
        os._exit(exit_status(name))

    def __enter__(self):
        install_handlers(self._previous, SIGNALS, self._handle)
        return self

    def __exit__(self, *exc):
        restore_handlers(self._previous)
        return False


# --- the settings of a run: recorded in metrics.json, read back by --resume ------------------
def record(args) -> dict:
    """`args` as JSON (every flag of `jaxnet train`, tuples as lists, paths as strings)."""
    out = {}
    for name, value in vars(args).items():
        if callable(value) or name in ("command", "given"):
            continue
        out[name] = str(value) if isinstance(value, Path) else \
            list(value) if isinstance(value, tuple) else value
    return out


def given_flags(parser, argv) -> set:
    """The `dest` of every flag `argv` names explicitly (not left at its default)."""
    sub = parser._commands["train"]
    saved = [(a, a.default) for a in sub._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv))) - {"command", "run"}
    finally:
        for action, default in saved:
            action.default = default


def run_paths(resume: Path) -> tuple[Path, Path]:
    """`(model.npz, metrics.json)` of the run `resume` names (its folder or its model file)."""
    resume = Path(resume)
    model = resume / "model.npz" if resume.is_dir() else resume
    metrics = model.parent / "metrics.json"
    if not model.exists():
        raise FileNotFoundError(2, "--resume: no model.npz to resume from", str(model))
    if not metrics.exists():
        raise FileNotFoundError(2, "--resume: the run's metrics.json (its settings) is missing",
                                str(metrics))
    return model, metrics


def resume_args(args, given: set) -> Path:
    """Replace `args` by the resumed run's recorded flags, except those given on the command
    line that may change (`MAY_CHANGE`); return the checkpoint to resume from.

    ValueError when a given flag that may not change differs from the run's, naming each."""
    model, metrics = run_paths(args.resume)
    try:
        recorded = json.loads(metrics.read_text())["args"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--resume: {metrics} holds no recorded settings ('args'); it was "
                         f"not written by this version of 'jaxnet train' ({err!r})") from None
    differ = []
    for name, value in recorded.items():
        if name in PER_INVOCATION or not hasattr(args, name):
            continue
        current = getattr(args, name)
        as_json = list(current) if isinstance(current, tuple) else \
            str(current) if isinstance(current, Path) else current
        if name in given and as_json != value:
            if name in MAY_CHANGE:
                continue
            differ.append(f"--{name.replace('_', '-')} {_flag(as_json)} (the run has "
                          f"{_flag(value)})")
        setattr(args, name, tuple(value) if isinstance(value, list) else value)
    if differ:
        raise ValueError("--resume continues a run with its own settings; only --steps, "
                         "--checkpoint-every, --keep and --patience may change, but "
                         + ", ".join(differ))
    if args.out is None:
        args.out = model.parent
    return model


def _flag(value) -> str:
    """A recorded value as it is written on the command line (lists: comma lists)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def read_run_record(checkpoint: Path) -> dict:
    """The settings in the metrics.json beside `checkpoint` ({} when there is none): what
    `evaluate` and `sample` fall back on for a checkpoint written during a run."""
    try:
        return json.loads((Path(checkpoint).parent / "metrics.json").read_text()).get("args", {})
    except (OSError, ValueError, AttributeError):
        return {}
