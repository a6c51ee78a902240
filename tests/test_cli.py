"""The `jaxnet` command, end to end in a subprocess (`python -m jaxnet ...`), plus a few cases
through `main([...])` in this process."""

import json
import subprocess
import sys

import pytest

from jaxnet import __version__
from jaxnet.cli import main
from jaxnet.plotting import plot_history

PNG = b"\x89PNG\r\n\x1a\n"
# A quick run: iris is small, 8 hidden units, 50 steps; the progress bar stays on (to stderr).
TRAIN = ["train", "--dataset", "iris", "--hidden-sizes", "8", "--steps", "50", "--seed", "3",
         "--learning-rate", "0.02"]


def jaxnet(*args):
    return jaxnet_many(args)[0]


def jaxnet_many(*commands):
    """Run `python -m jaxnet ARGS` for each ARGS at once (the start-up dominates); the results."""
    procs = [subprocess.Popen([sys.executable, "-m", "jaxnet", *map(str, args)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def assert_usage_error(proc):
    """Exit status 2 and exactly one line on stderr, `jaxnet: error: ...`, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxnet: error: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trained model: its folder, the completed process and metrics.json."""
    out = tmp_path_factory.mktemp("cli") / "iris-run"
    proc = jaxnet(*TRAIN, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc, json.loads((out / "metrics.json").read_text())


def test_train_prints_the_check_and_the_metrics(run):
    out, proc, metrics = run
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("iris (3 classes): 120 train + 30 test examples, 4 features; "
                               "network 4 -> 8 (relu) -> 3 (softmax)")
    assert lines[1].startswith("gradient check: ok (manual~autodiff ")
    assert "Taylor order" in lines[1]
    test_acc = f"{100 * metrics['test']['accuracy']:.2f}%"
    assert f"train: accuracy {100 * metrics['train']['accuracy']:.2f}%" in proc.stdout
    assert f"test:  accuracy {test_acc}" in proc.stdout
    assert "stopped after 50 steps: reached --steps" in proc.stdout
    assert str(out) in proc.stdout
    assert "Traceback" not in proc.stderr


def test_train_writes_checkpoint_plot_and_metrics(run):
    out, _, metrics = run
    assert (out / "cost.png").read_bytes()[:8] == PNG
    assert (out / "model.npz").read_bytes()[:4] == b"PK\x03\x04"
    assert metrics["dataset"] == "iris" and metrics["seed"] == 3
    assert metrics["sizes"] == [4, 8, 3] and metrics["loss"] == "categorical_cross_entropy"
    assert metrics["steps_run"] == 50 and metrics["stopped"] == "steps"
    assert 0.5 < metrics["test"]["accuracy"] <= 1  # 50 steps of Adam already beat chance (1/3)
    assert metrics["train"]["cost"] > 0


def test_checkpoint_records_the_data_set_and_the_history(run):
    import jaxnet

    ckpt = jaxnet.load_checkpoint(run[0] / "model.npz")
    assert ckpt.history["dataset"] == "iris" and ckpt.history["seed"] == 3
    assert ckpt.history["cost"].shape == (50,)
    assert ckpt.net.sizes == (4, 8, 3)


def test_evaluate_reproduces_the_test_metrics(run):
    out, _, metrics = run
    proc = jaxnet("evaluate", out / "model.npz")
    assert proc.returncode == 0, proc.stderr
    test = metrics["test"]
    assert (f"iris test split (seed 3, 30 examples): accuracy {100 * test['accuracy']:.2f}%  "
            f"cost {test['cost']:.4g}") in proc.stdout


def test_evaluate_on_a_data_set_of_another_size_is_a_usage_error(run):
    proc = jaxnet("evaluate", run[0] / "model.npz", "--dataset", "digits")
    assert_usage_error(proc)
    assert "4 inputs" in proc.stderr and "64 features" in proc.stderr


def test_evaluate_a_corrupt_checkpoint(run, tmp_path):
    blob = (run[0] / "model.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(blob[: len(blob) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a checkpoint at all")
    for proc in jaxnet_many(["evaluate", truncated], ["evaluate", garbage]):
        assert_usage_error(proc)


def test_gradcheck_prints_the_table():
    proc = jaxnet("gradcheck", "--dataset", "moons", "--hidden-sizes", "3", "--hidden", "tanh",
                  "--examples", "16")
    assert proc.returncode == 0, proc.stderr
    assert "gradient check (float64" in proc.stdout and ": OK" in proc.stdout
    for leaf in ("W[1]", "b[1]", "W[2]", "b[2]"):
        assert f"\n{leaf} " in proc.stdout
    assert "Taylor test" in proc.stdout


BAD = {
    "unknown flag": ["train", "--bogus"],
    "negative steps": ["train", "--steps", "-1"],
    "unknown activation": ["train", "--hidden", "nonsense"],
    "unknown data set": ["train", "--dataset", "nope"],
    "zero learning rate": ["train", "--learning-rate", "0"],
    "malformed sizes": ["train", "--hidden-sizes", "3,x"],
    "missing checkpoint": ["evaluate", "/no/such/model.npz"],
    "no command": [],
}


@pytest.fixture(scope="module")
def bad_runs():
    return dict(zip(BAD, jaxnet_many(*BAD.values())))


@pytest.mark.parametrize("case", BAD)
def test_bad_flags_are_one_line_errors(case, bad_runs):
    assert_usage_error(bad_runs[case])


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["gradcheck", "--help"],
                                  ["evaluate", "--help"]], ids=" ".join)
def test_help(argv, capsys):
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: jaxnet {argv[0] if len(argv) > 1 else ''}".rstrip())
    if argv == ["train", "--help"]:
        for flag in ("--dataset", "--hidden-sizes", "--optimizer", "--learning-rate", "--steps",
                     "--batch-size", "--gradients", "--tol", "--init", "--out", "--quiet",
                     "--no-gradcheck", "(default: adam)"):
            assert flag in text


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxnet {__version__}"


def test_python_m_jaxnet_help():
    proc = jaxnet("--help")
    assert proc.returncode == 0 and "train" in proc.stdout and "evaluate" in proc.stdout


def test_main_in_process_default_folder_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", "xor", "--hidden-sizes", "4", "--hidden", "tanh", "--steps",
            "20", "--quiet", "--no-gradcheck", "--learning-rate", "0.05"]
    assert main(argv) == 0
    (folder,) = (tmp_path / "jaxnet-out").iterdir()
    assert folder.name.startswith("xor-")
    assert {p.name for p in folder.iterdir()} == {"model.npz", "cost.png", "metrics.json"}
    assert "gradient check" not in capsys.readouterr().out
    # a value only the library can reject (two activations for one hidden layer)
    assert main([*argv, "--hidden", "tanh,relu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxnet: error: ") and err.count("\n") == 1


def test_divergence_is_reported_not_raised(tmp_path, capsys):
    argv = ["train", "--dataset", "diabetes", "--hidden-sizes", "", "--optimizer", "sgd",
            "--learning-rate", "10", "--steps", "50", "--quiet", "--no-gradcheck",
            "--out", tmp_path / "d"]
    assert main(list(map(str, argv))) == 0
    out = capsys.readouterr().out
    assert "DIVERGED" in out and "R² " in out
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["stopped"] == "diverged" and metrics["sizes"] == [10, 1]


def test_plot_history_without_validation(tmp_path):
    path = plot_history({"cost": [3.0, 2.0, 1.0]}, tmp_path / "sub" / "c.png", title="t")
    assert path.read_bytes()[:8] == PNG


def test_train_refuses_a_network_whose_gradients_are_wrong(monkeypatch, tmp_path, capsys):
    import jaxnet.backprop

    right = jaxnet.backprop.backprop

    def wrong(net, params, X, Y, **kwargs):  # dJ/dW^[1] off by a factor of 2
        grads = right(net, params, X, Y, **kwargs)
        return [{"W": 2 * grads[0]["W"], "b": grads[0]["b"]}, *grads[1:]]

    monkeypatch.setattr(jaxnet.backprop, "backprop", wrong)
    out_dir = tmp_path / "never"
    assert main(["train", "--dataset", "xor", "--hidden-sizes", "4", "--hidden", "tanh",
                 "--steps", "20", "--quiet", "--out", str(out_dir)]) == 1
    out = capsys.readouterr().out
    assert "gradient check: FAILED" in out  # the one-line summary, then the full table
    assert "FAILED: W[1]" in out and "\nb[1] " in out
    assert not out_dir.exists()
