"""Long runs from the command line: Ctrl-C / SIGTERM write a resumable run and exit 130 / 143
with one line (also during the gradient check and compilation), `--resume` continues a run to
its total steps and ends where an uninterrupted run ends, `--patience` stops early, the
progress bar of the digits CNN moves at least every ~2 s, and `--stepz` points at
`jaxnet train --help`."""

import json
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import jaxnet as jn
from jaxnet import cli, training

TINY = ["train", "--dataset", "xor", "--hidden-sizes", "4", "--no-gradcheck", "--quiet"]


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "jaxnet", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(proc, text, timeout=120):
    """Read stdout lines until one contains `text` (the run reached that point)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {text!r}: {seen}")


def test_signals_write_a_resumable_run_or_exit_with_one_line(tmp_path):
    """SIGINT and SIGTERM while training (exit 130 / 143, a resumable run, one line), and SIGINT
    during the gradient check and its compilation (once a segfault): one line, 130.
    The three runs go at once: their start-up dominates."""
    runs = {signal.SIGINT: tmp_path / "int", signal.SIGTERM: tmp_path / "term"}
    procs = {sig: start(*TINY, "--steps", 10**8, "--out", out) for sig, out in runs.items()}
    early = start("train", "--dataset", "xor", "--hidden-sizes", "4", "--steps", 10**8,
                  "--quiet", "--out", tmp_path / "t")
    wait_for(early, "network")  # printed just before the gradient check compiles and runs
    early.send_signal(signal.SIGINT)
    for proc in procs.values():
        wait_for(proc, "training:")
    time.sleep(1.5)  # past the first (compiling) chunk
    for sig, proc in procs.items():
        proc.send_signal(sig)

    _, err = early.communicate(timeout=120)
    assert early.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Segmentation" not in err, err
    assert lines[0].startswith(("jaxnet: interrupted (SIGINT) during ", "interrupted at step"))

    for sig, proc in procs.items():
        out = runs[sig]
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        match = re.fullmatch(r"interrupted at step (\d+) of 100000000; resume with: jaxnet "
                             r"train --resume (.+)", lines[0])
        assert match and match[2] == str(out), lines
        ck = jn.load_checkpoint(out / "model.npz")
        assert ck.step == int(match[1]) > 0 and ck.opt_state is not None
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["stopped"] == "interrupted" and metrics["steps_run"] == ck.step
        assert (out / "cost.png").exists()


def params_of(path):
    return jax.tree.leaves(jn.load(path)[1])


def test_resume_continues_to_the_total_and_matches_an_uninterrupted_run(tmp_path, capsys):
    flags = ["train", "--dataset", "moons", "--hidden-sizes", "8", "--batch-size", "32",
             "--clip-norm", "1", "--no-gradcheck", "--quiet"]
    assert cli.main([*flags, "--steps", "60", "--out", str(tmp_path / "full")]) == 0
    assert cli.main([*flags, "--steps", "25", "--out", str(tmp_path / "half")]) == 0
    # the run's own settings come from its metrics.json: only --steps is given
    assert cli.main(["train", "--resume", str(tmp_path / "half"), "--steps", "60", "--quiet",
                     "--no-gradcheck"]) == 0
    metrics = json.loads((tmp_path / "half" / "metrics.json").read_text())
    assert metrics["steps_run"] == 60 and metrics["batch_size"] == 32
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(
        params_of(tmp_path / "full" / "model.npz"), params_of(tmp_path / "half" / "model.npz")))
    assert worst <= 1e-6  # the same batches and the same compiled step: measured 0.0
    capsys.readouterr()
    # a setting of the run that may not change is a clear error naming it
    assert cli.main(["train", "--resume", str(tmp_path / "half" / "model.npz"), "--steps", "90",
                     "--learning-rate", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--learning-rate 0.1 (the run has 0.003)" in err and len(err.splitlines()) == 1


def test_patience_stops_early_and_keeps_the_best(tmp_path, capsys):
    # iris with a wide layer and a large step: the test cost turns up long before 4000 steps
    assert cli.main(["train", "--dataset", "iris", "--hidden-sizes", "64", "--learning-rate",
                     "0.05", "--steps", "4000", "--patience", "3", "--no-gradcheck", "--quiet",
                     "--out", str(tmp_path / "p")]) == 0
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert metrics["stopped"] == "early_stopped" and metrics["steps_run"] < 4000
    assert "early stopping" in capsys.readouterr().out
    history = jn.load_checkpoint(tmp_path / "p" / "model.npz").history
    best = int(np.argmin(history["val_cost"][:-1]))
    assert metrics["best_step"] == int(history["val_step"][best])


def test_the_cnn_bar_moves_every_two_seconds(tmp_path, monkeypatch):
    times = []

    class Bar:  # what the loop calls on tqdm, recording when
        def update(self, n):
            times.append(time.perf_counter())

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass

    monkeypatch.setattr(training, "_progress", lambda total, enabled: Bar())
    assert cli.main(["train", "--model", "cnn", "--steps", "60", "--batch-size", "32",
                     "--no-gradcheck", "--out", str(tmp_path / "c")]) == 0
    gaps = np.diff(times[1:])  # after the first chunk, which compiles
    # chunks aim at 1 s of work; 3 s leaves room for a loaded CI machine
    assert len(times) >= 3 and gaps.max() < 3.0, gaps


def test_unknown_flag_of_a_subcommand_points_at_its_help(capsys):
    assert cli.main(["train", "--stepz", "3"]) == 2
    err = capsys.readouterr().err
    assert err == "jaxnet: error: unrecognized arguments: --stepz 3 (see 'jaxnet train --help')\n"
