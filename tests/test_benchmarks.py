"""Smoke tests of the benchmark scripts: they run end to end and write their reports.

Not timed tests: speed is judged by the benchmarks' own ratios, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a benchmark script with this interpreter from the project root; fail with its output."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.parametrize("script", ["cpu.py", "gpu.py"])
def test_help(script):
    assert "usage" in run_script([f"benchmarks/{script}", "--help"], timeout=60).stdout


def test_cpu_tiny_writes_report(tmp_path):
    proc = run_script(["benchmarks/cpu.py", "--tiny", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpu_tiny.json").read_text())
    assert set(report["workloads"]) == {"T", "M", "L"}
    for work in report["workloads"].values():
        costs = [r["final_cost"] for r in work["results"].values()]
        assert max(costs) - min(costs) <= 1e-3 * abs(min(costs))  # the script's own check held
    names = {t["target"] for t in report["targets"]}
    assert "second fit call compiles nothing" in names
    assert "| T |" in (tmp_path / "cpu_tiny.md").read_text()
    assert "matmul" in proc.stdout


def test_cpu_rejects_unknown_workload(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/cpu.py", "--tiny", "--workloads", "X",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown workloads" in proc.stderr


def test_gpu_small_writes_report(tmp_path):
    run_script(["benchmarks/gpu.py", "--small", "--repeats", "2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_small.json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert names[:2] == ["plain JAX bfloat16", "plain JAX float32"]
    assert all(r["tflops"] > 0 for r in report["rows"])
