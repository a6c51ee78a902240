"""Smoke test of benchmarks/layers.py: a --quick run writes its report, and the implementations
the script checks reached the same final cost (its own check held).  Speed is never asserted.

Only the RNN workload runs here: every workload costs about five XLA compiles, and the CI
budget is shared; `python benchmarks/layers.py --quick --out DIR` runs all four.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layers_quick_writes_report(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/layers.py", "--quick", "--workloads", "RNN",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads((tmp_path / "layers.json").read_text())
    assert report["quick"] is True
    rows = report["workloads"]["RNN"]["results"]
    assert {"fit manual", "fit autodiff", "plain JAX jit step loop", "plain JAX scan"} <= set(rows)
    costs = [r["final_cost"] for r in rows.values() if r["checked"]]
    assert max(costs) - min(costs) <= 2e-3 * abs(min(costs))
    assert {t["target"] for t in report["targets"]} >= {"fit manual ≥ 1.0× best plain JAX"}
    md = (tmp_path / "layers.md").read_text()
    assert "| RNN |" in md and "load average" in md
