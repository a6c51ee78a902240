"""Smoke test: the fit_many benchmark runs at a tiny size (no speed is asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_many_benchmark_tiny(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/many.py", "--tiny", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "many.json").read_text())
    assert data["K"] == 8 and data["ratio"] > 0
    assert "fit_many speed-up" in (tmp_path / "many.md").read_text()
