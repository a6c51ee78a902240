"""The fit_many sweep experiment runs with --quick and its claims hold at that size."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_lr_seed_sweep_quick(tmp_path):
    result = subprocess.run([sys.executable, "experiments/10_lr_seed_sweep.py", "--quick",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["claims"] and all(c["holds"] for c in data["claims"])
    assert (tmp_path / "results.md").exists()
