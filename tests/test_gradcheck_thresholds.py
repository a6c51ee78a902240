"""The checker's thresholds: pinned, justified from float64 round-off, and tested right where
they bite (a bug just above a threshold fails, just below passes), so that loosening or
tightening any of them fails a test."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import gradcheck
from jaxnet.backprop import backprop
from jaxnet.network import cost

E64 = float(np.finfo(np.float64).eps)  # 2.2e-16
NET = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")
NAMES = [f"{w}[{l}]" for l in (1, 2, 3) for w in ("W", "b")]


def normal(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.fixture(scope="module")
def problem():
    X = normal(0, 3, 40)
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(X.dtype)
    params = [{"W": normal(10 + l, n, p) * np.sqrt(2 / p), "b": 0.1 * normal(20 + l, n, 1)}
              for l, (p, n) in enumerate(zip(NET.sizes[:-1], NET.sizes[1:]))]
    return params, X, Y


def test_default_tolerances_are_pinned():
    """The defaults, and why (float64: ε = 2.2e-16).

    * ``EPS = 1e-6``, the central-difference step: truncation ~eps²·J'''/6 ≈ 1e-13 and
      round-off ~ε·|J|/eps ≈ 2e-10·|J|; both far below TOL_FD (the total is smallest near
      eps = ε^(1/3) ≈ 6e-6; 1e-6 keeps the step small next to the distance to a kink).
    * ``TOL_FD = 1e-6``: ~500× that round-off (with ``ROUNDOFF = 8``: 8ε|J|/eps ≈ 2e-9·|J|)
      and ~1e7× the truncation, so a correct autodiff does not fail, while an autodiff wrong by
      3e-6 (a custom derivative off by that) does.
    * ``TOL_MANUAL = 1e-10``: the hand-written gradient and autodiff are both exact up to
      round-off, a few hundred ε (~1e-14) even for deep networks: 1e4 of margin; and a bug of
      relative size 1e-7 in one entry still exceeds it by 100×.
    * ``ROUNDOFF = 8``: one loss evaluation (a mean of m terms, a few ops each) errs by a few ε·|J|.
    """
    assert (gradcheck.TOL_MANUAL, gradcheck.TOL_FD, gradcheck.EPS) == (1e-10, 1e-6, 1e-6)
    assert (gradcheck.ROUNDOFF, gradcheck.PERTURB, gradcheck.TAYLOR_DIRECTIONS) == (8, 1e-3, 4)
    for fn in (jn.check_grad,):
        defaults = {k: v.default for k, v in inspect.signature(fn).parameters.items()}
        assert (defaults["eps"], defaults["tol_manual"], defaults["tol_fd"]) == (1e-6, 1e-10, 1e-6)
    eps = gradcheck.EPS
    assert eps ** 2 < 1e-5 * gradcheck.TOL_FD  # truncation
    assert gradcheck.ROUNDOFF * E64 / eps < 1e-2 * gradcheck.TOL_FD  # round-off, |J| ~ 1
    assert 300 * E64 < 1e-3 * gradcheck.TOL_MANUAL  # round-off far below
    assert gradcheck.TOL_MANUAL <= 1e-2 * 1e-7  # a 1e-7 bug far above


def scaled_entry(p, X, Y, factor):
    """jaxnet's backprop with dW[2][1, 2] multiplied by `factor` (an argument: one compile)."""
    g = backprop(NET, p, X, Y)
    g[1] = {"W": g[1]["W"].at[1, 2].multiply(factor), "b": g[1]["b"]}
    return g


def scaled_leaf(p, X, Y, factor):
    g = backprop(NET, p, X, Y)
    g[1] = {"W": g[1]["W"] * factor, "b": g[1]["b"]}
    return g


def net_cost(p, X, Y, factor):
    return cost(NET, p, X, Y)


def test_a_bug_of_relative_size_1e7_in_one_entry_fails(problem):
    """... and the Taylor test cannot see it: relative errors this small are the job of the
    entry-by-entry comparison, not of the Taylor test (module docstring)."""
    params, X, Y = problem
    report = jn.check_grad(net_cost, scaled_entry, params, X, Y, 1 + 1e-7, names=NAMES)
    assert report.failing == ["W[2]"] and report["W[2]"].worst_index == (1, 2)
    assert 1e-10 < report["W[2]"].manual_vs_autodiff < 1e-7
    assert report["W[2]"].ok_fd and report.taylor.ok  # FD checks autodiff; Taylor is blind here
    assert jn.check_grad(net_cost, scaled_entry, params, X, Y, 1 + 1e-13).ok  # round-off level


def test_manual_threshold_sits_at_1e10(problem):
    params, X, Y = problem
    above = jn.check_grad(net_cost, scaled_leaf, params, X, Y, 1 + 1e-9, names=NAMES,
                          taylor=False)
    below = jn.check_grad(net_cost, scaled_leaf, params, X, Y, 1 + 3e-11, names=NAMES,
                          taylor=False)
    assert above.failing == ["W[2]"] and not above["W[2]"].ok_manual
    assert above["W[2]"].manual_vs_autodiff == pytest.approx(1e-9, rel=1e-3)
    assert below.ok and below["W[2]"].manual_vs_autodiff == pytest.approx(3e-11, rel=1e-2)


@jax.custom_jvp
def skewed_tanh(z, skew):
    return jnp.tanh(z)


@skewed_tanh.defjvp
def _skewed_tanh_jvp(primals, tangents):
    """tanh with a derivative off by the factor (1 + skew): a wrong custom rule."""
    (z, skew), (dz, _) = primals, tangents
    t = jnp.tanh(z)
    return t, (1 - t ** 2) * (1 + skew) * dz


def skewed_loss(p, x, y, skew):
    return 0.5 * jnp.mean((skewed_tanh(p["w"] @ x + p["b"], skew) - y) ** 2)


def skewed_autodiff(p, x, y, skew):
    return jax.grad(skewed_loss)(p, x, y, skew)


XS, YS = normal(30, 2, 12), normal(31, 1, 12)
PS = {"w": jnp.array([[0.3, -0.2]]), "b": jnp.array([[0.1]])}


def test_an_autodiff_that_disagrees_with_differences_fails_and_is_named():
    """A `jax.custom_jvp` with a wrong derivative inside the loss: the hand-written gradient
    (here: autodiff itself) agrees with autodiff, so only autodiff~FD can fail, and it names
    the leaves.  Every entry's gradient runs through tanh', so the relative error is `skew`:
    3e-6 fails, 3e-7 passes (finite differences resolve ~1e-9 here)."""
    for skew in (1e-4, 3e-6):
        report = jn.check_grad(skewed_loss, skewed_autodiff, PS, XS, YS, np.float64(skew),
                               taylor=False)
        assert report.failing == ["['b']", "['w']"], (skew, str(report))
        for leaf in report.leaves:
            assert leaf.ok_manual and not leaf.ok_fd
            assert leaf.autodiff_vs_fd == pytest.approx(skew, rel=1e-2)
    report = jn.check_grad(skewed_loss, skewed_autodiff, PS, XS, YS, np.float64(3e-7))
    assert report.ok and max(leaf.autodiff_vs_fd for leaf in report.leaves) < 5e-7
    exact = jn.check_grad(skewed_loss, skewed_autodiff, PS, XS, YS, np.float64(0.0))
    assert exact.ok and max(leaf.autodiff_vs_fd for leaf in exact.leaves) < 1e-8


def tiny_loss(p, x):
    """A loss of size ~1 with one leaf whose gradient is ~1e-9: below what differences of J
    resolve (round-off ~ε|J|/eps ≈ 2e-10 per entry)."""
    return jnp.sum(jnp.cos(p["a"] * x)) + 1e-9 * jnp.sum(jnp.sin(p["t"]))


def tiny_grad(p, x):
    return {"a": -jnp.sum(jnp.sin(p["a"] * x) * x, keepdims=True).reshape(1),
            "t": 1e-9 * jnp.cos(p["t"])}


def test_gradients_below_the_differences_resolution_are_not_failed_on_noise():
    p = {"a": jnp.array([0.4]), "t": jnp.array([0.3, -1.1, 2.0])}
    x = jnp.linspace(-2.0, 2.0, 9)
    report = jn.check_grad(tiny_loss, tiny_grad, p, x)
    assert report.ok, str(report)
    # The hand-written side is held to 1e-10 of max(‖leaf‖, 1e-4·‖∇J‖): 1 % off fails here
    # (the floor keeps a leaf whose true gradient is 0 from failing on round-off).
    wrong = lambda p, x: {**tiny_grad(p, x), "t": 1e-9 * jnp.cos(p["t"]) * 1.01}
    report = jn.check_grad(tiny_loss, wrong, p, x)
    assert report.failing == ["['t']"] and report["['t']"].manual_vs_autodiff > 1e-8


def one_layer_cost(p, X, Y, prime0, bump):
    return cost(ONE, p, X, Y)


def one_layer_grad(p, X, Y, prime0, bump):
    """Backprop of ONE by hand, with ReLU'(0) = `prime0`, and db[1] × (1 + bump)."""
    Z1 = p[0]["W"] @ X + p[0]["b"]
    A1 = jnp.maximum(Z1, 0)
    A2 = jax.nn.sigmoid(p[1]["W"] @ A1 + p[1]["b"])
    dZ2 = (A2 - Y) / X.shape[1]
    g_prime = jnp.where(Z1 > 0, 1.0, jnp.where(Z1 < 0, 0.0, prime0))
    dZ1 = (p[1]["W"].T @ dZ2) * g_prime
    return [{"W": dZ1 @ X.T, "b": jnp.sum(dZ1, 1, keepdims=True) * (1 + bump)},
            {"W": dZ2 @ A1.T, "b": jnp.sum(dZ2, 1, keepdims=True)}]


ONE = jn.MLP((3, 5, 1), hidden="relu", output="sigmoid")


def test_the_kink_excuse_is_tight():
    """At a kink a formula taking the other one-sided slope passes; the same slope off by a
    relative 1e-5 does not: a slope is measured to its error estimate (Richardson
    extrapolation, typically ~1e-9 of it), and excused within 4× that, never looser than
    ~4e-7·‖leaf‖ + 7e-8·|J| (module docstring)."""
    X = normal(40, 3, 24).at[:, :4].set(0.0)
    Y = (X[0:1] > 0).astype(X.dtype)
    params = [{"W": normal(41, 5, 3), "b": jnp.zeros((5, 1))},
              {"W": normal(42, 1, 5), "b": jnp.zeros((1, 1))}]
    run = lambda prime0, bump: jn.check_grad(one_layer_cost, one_layer_grad, params, X, Y,
                                             np.float64(prime0), np.float64(bump),
                                             names=NAMES[:4], taylor=False)
    assert run(0.0, 0.0).ok and run(0.0, 0.0)["b[1]"].excused == 0  # jaxnet's own
    other = run(1.0, 0.0)
    assert other.ok and other["b[1]"].excused == 5, str(other)
    off = run(1.0, 1e-5)
    assert off.failing == ["b[1]"] and off["b[1]"].kink_violations == 5, str(off)


def test_taylor_test_limits(problem):
    """The Taylor test sees a relative error of the whole gradient of 1e-3, not one of 1e-7."""
    params, X, Y = problem
    scaled = lambda p, X, Y, factor: jax.tree.map(lambda g: g * factor, backprop(NET, p, X, Y))
    for factor, failed in ((1 + 1e-3, True), (1 + 1e-7, False)):
        result = jn.taylor_test(net_cost, scaled, params, X, Y, np.float64(factor))
        assert result.failed == failed and result.ok != failed, (factor, str(result))
