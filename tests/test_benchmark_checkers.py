"""The checker benchmark (benchmarks/checkers.py): its corpus has what the issue asks for, and a
--quick run writes its table with jaxnet's checker passing its targets on the cases it runs.

The quick run takes three cases (a `dx` bug in a middle layer, a GAN loss without its 1/m, a
correct ReLU network at its kinks) through all four tools; `python benchmarks/checkers.py`
runs the whole corpus (benchmarks/results/checkers.md).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _corpus():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.checker_corpus import CASES
    finally:
        sys.path.remove(str(ROOT))
    return CASES


def test_corpus_covers_every_family_and_the_classic_bugs():
    cases = _corpus()
    wrong = [c for c in cases if c.wrong]
    assert len(wrong) >= 60 and len(cases) - len(wrong) >= 20
    assert len({c.name for c in cases}) == len(cases)
    families = {c.family for c in wrong}
    assert families >= {"Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "RNN", "LSTM", "GRU",
                        "Embedding", "LayerNorm", "MultiHeadAttention", "TransformerBlock",
                        "GAN losses"}
    classic = {c.classic for c in wrong}
    assert {"= instead of += for a node used twice", "a missing 1/m", "a transposed weight",
            "BPTT off by one step", "the softmax–cross-entropy derivative wrong",
            "LayerNorm's mean over the wrong axis", "a bug only at a ReLU kink",
            "a bug only at a max-pool tie", "a bug of relative size 1e-4 in one entry"} <= classic
    # a layer case names its wrong layer and leaves; correct cases name none
    assert all(c.leaves for c in wrong if c.layer is not None)
    assert all(c.layer is None and not c.leaves for c in cases if not c.wrong)


def test_quick_run_writes_the_table(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/checkers.py", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads((tmp_path / "checkers.json").read_text())
    assert report["quick"] is True and len(report["cases"]) == 3
    torch_tools = {"torch gradcheck", "torch gradcheck fast"}
    assert set(report["tools"]) == {"jaxnet", "jax check_grads"} | (torch_tools if HAS_TORCH
                                                                     else set())
    assert set(report["skipped"]) == (set() if HAS_TORCH else torch_tools)
    jaxnet = next(s for s in report["summary"] if s["tool"] == "jaxnet")
    assert jaxnet["false_passes"] == 0 and jaxnet["false_failures"] == 0
    assert jaxnet["layer_cases"] == 1 and jaxnet["layer_named"] == 1  # the dx bug's layer
    assert jaxnet["leaf_named"] == jaxnet["leaf_cases"] == 2
    md = (tmp_path / "checkers.md").read_text()
    assert "| tool | false passes (of wrong) | false failures (of correct) | wrong layer named" in md
    assert "| jaxnet | 0/2 | 0/1 | 1/1 (100 %)" in md


def test_help_and_no_smoke_run_over_the_committed_results():
    run = lambda *a: subprocess.run([sys.executable, "benchmarks/checkers.py", *a], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
    assert "--quick" in run("--help").stdout
    proc = run("--quick", "--out", "benchmarks/results")
    assert proc.returncode == 2 and "never writes over benchmarks/results" in proc.stderr
