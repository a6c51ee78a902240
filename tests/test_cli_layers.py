"""`jaxnet train --model cnn | transformer`, `evaluate` on their checkpoints, and `jaxnet sample`."""

import json
import re
import subprocess
import sys

from test_cli import assert_usage_error, jaxnet


def jaxnet_many(*commands, timeout=900):
    """As test_cli's, with room for compiling convolutions and attention on a loaded machine."""
    procs = [subprocess.Popen([sys.executable, "-m", "jaxnet", *map(str, args)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_cnn_and_character_model_train_evaluate_and_sample(tmp_path):
    cnn, char = tmp_path / "cnn", tmp_path / "char"
    p_cnn, p_char, p_bad, p_lstm = jaxnet_many(
        ("train", "--model", "cnn", "--steps", "5", "--quiet", "--out", cnn),
        ("train", "--model", "transformer", "--steps", "3", "--seq-len", "16", "--width", "16",
         "--heads", "2", "--blocks", "1", "--quiet", "--out", char, "--examples", "3",
         "--entries", "2"),
        ("train", "--model", "lstm", "--dataset", "digits"),
        ("gradcheck", "--model", "lstm", "--seq-len", "8", "--width", "8", "--examples", "2",
         "--entries", "3"))
    assert p_cnn.returncode == 0, p_cnn.stderr
    assert "network 1x8x8 -> Conv2D(relu) 16x8x8" in p_cnn.stdout
    assert "gradient check: ok" in p_cnn.stdout
    metrics = json.loads((cnn / "metrics.json").read_text())
    assert metrics["model"] == "cnn" and metrics["steps_run"] == 5
    assert p_char.returncode == 0, p_char.stderr
    assert "gradient check: ok" in p_char.stdout and "bits/char" in p_char.stdout
    assert re.search(r"gradient check: ok \(.*Taylor order \d\.\d\d, \d+\.\d s\)", p_char.stdout)
    assert p_lstm.returncode == 0, p_lstm.stderr  # every --model checks its gradients
    assert "gradient check (float64" in p_lstm.stdout and ": OK" in p_lstm.stdout
    assert "Taylor test" in p_lstm.stdout
    assert re.fullmatch(r"checked in \d+\.\d s", p_lstm.stdout.splitlines()[-1])
    assert_usage_error(p_bad)
    assert "--model lstm needs --dataset text" in p_bad.stderr

    p_eval, p_sample, p_not_text = jaxnet_many(
        ("evaluate", cnn / "model.npz"),
        ("sample", char / "model.npz", "--prompt", "The ", "--length", "20"),
        ("sample", cnn / "model.npz"))
    assert p_eval.returncode == 0, p_eval.stderr
    assert "digits test split" in p_eval.stdout and "accuracy" in p_eval.stdout
    assert p_sample.returncode == 0, p_sample.stderr
    assert p_sample.stdout.startswith("The ") and len(p_sample.stdout.rstrip("\n")) >= 24
    assert_usage_error(p_not_text)
    assert "not a character model" in p_not_text.stderr


def test_sample_help():
    proc = jaxnet("sample", "--help")
    assert proc.returncode == 0 and "--temperature" in proc.stdout
