"""Experiments 6–9 run with --quick, write their figures and results, and their claims hold."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["06_activations", "07_learning_rate", "08_gradient_verification", "09_autoencoder"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_runs_quick(name, tmp_path):
    proc = subprocess.run([sys.executable, f"experiments/{name}.py", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert list(tmp_path.glob("*.png")), "no figure written"
    assert (tmp_path / "results.md").read_text().startswith(f"### {name}")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == name and results["rows"]
    assert results["claims"], "the script checks no claims"
    failed = [c["claim"] for c in results["claims"] if not c["holds"]]
    assert not failed, failed
