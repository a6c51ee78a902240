import os
import subprocess
import sys
from pathlib import Path

# The suite is compile-bound (hundreds of small programs, each run a few times), so it compiles
# with LLVM's optimisation level 0: the experiments' quick runs take about half the time, and
# XLA's own HLO passes (fusion, simplification), which decide the numbers, still run.  Set
# JAXNET_TEST_FULL_OPT=1 to test the code as users run it (XLA's default level).  Set before
# jax is imported; subprocesses (CLI, experiments, 8-device tests) inherit it.
O0 = "--xla_backend_optimization_level=0"
if os.environ.get("JAXNET_TEST_FULL_OPT") != "1":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {O0}".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def full_opt_env() -> dict:
    """The environment for a subprocess bound by run time, not compile time (where level 0 is
    slower): the suite's XLA_FLAGS without the optimisation level."""
    return dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace(O0, "").strip())


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


# --- comparing a hand-written backward with jax.vjp (float64) ------------------------------
def rel(a, b):
    """Relative error ‖a − b‖ / max(‖a‖, ‖b‖) of two arrays of the same shape (0 if both 0)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def assert_tree_close(manual, auto, tol=1e-10):
    """Same tree, and every leaf within `tol` relative error (the failing leaf's path named)."""
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for path, a, b in zip(jax.tree_util.tree_flatten_with_path(auto)[0],
                          jax.tree.leaves(manual), jax.tree.leaves(auto)):
        r = rel(a, b)
        assert r <= tol, (jax.tree_util.keystr(path[0]), r)
