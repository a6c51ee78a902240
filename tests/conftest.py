import subprocess
import sys
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Catch implicit rank broadcasting (a (n,) bias against (n, m) activations) as an error.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """Return a function that hands out a fresh PRNG key on every call."""
    state = {"key": jax.random.key(0)}

    def _getkey():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _getkey


def run_experiment_quick(name: str, out: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `experiments/<name>.py --quick --out <out>` and require exit 0 (its output shown if not)."""
    proc = subprocess.run([sys.executable, f"experiments/{name}.py", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc
