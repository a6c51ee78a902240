"""Experiment 14 (generative networks) runs end to end with --quick, and the GAN benchmark's
smoke mode writes its report: exit 0, figures, tables, claims that hold (quick-aware forms)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import full_opt_env

ROOT = Path(__file__).resolve().parents[1]


def run(args, timeout=300):
    # the GAN quick runs are bound by run time: XLA's default optimisation level is faster
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_opt_env())
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_generative_experiment_quick(tmp_path):
    proc = run(["experiments/14_generative.py", "--quick", "--out", str(tmp_path)])
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["denoising.png", "digits_samples.png", "ring_gradients.png",
                     "ring_samples.png"], names
    assert (tmp_path / "results.md").read_text().startswith("### 14_generative")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == "14_generative" and results["quick"] is True
    parts = {r["part"] for r in results["rows"]}
    assert parts == {"A ring", "B digits", "C denoising"}, parts
    failed = [c["claim"] for c in results["claims"] if not c["holds"]]
    assert len(results["claims"]) >= 6 and not failed, failed
    assert "| " in proc.stdout


def test_gan_benchmark_quick(tmp_path):
    run(["benchmarks/gan.py", "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gan_quick.json").read_text())
    assert {"jaxnet manual", "plain JAX scan", "plain JAX jit step"} <= set(report["results"])
    assert all(err <= 1e-3 for err in report["check"].values())  # the script's own check held
    assert {t["target"] for t in report["targets"]} >= {"jaxnet manual ≥ 1.0× best plain JAX"}
    assert "| jaxnet manual |" in (tmp_path / "gan_quick.md").read_text()
