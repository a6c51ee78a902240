"""The three-way checker passes correct formulas, catches planted bugs, and survives kinks."""

import jax
import jax.numpy as jnp
import pytest

import jaxnet as jn
from jaxnet.backprop import backprop
from jaxnet.network import cost


@pytest.fixture
def problem():
    key = jax.random.key(0)
    X = jax.random.normal(key, (3, 40))
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(X.dtype)
    net = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")
    return net, net.init(jax.random.key(1), bias="normal"), X, Y


def loss_of(net):
    return lambda p, X, Y: cost(net, p, X, Y)


def test_correct_backprop_passes_and_reports(problem):
    net, params, X, Y = problem
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    assert [leaf.name for leaf in report.leaves] == ["W[1]", "b[1]", "W[2]", "b[2]", "W[3]", "b[3]"]
    assert all(leaf.manual_vs_autodiff <= 1e-10 for leaf in report.leaves)
    assert all(leaf.autodiff_vs_fd <= 1e-6 for leaf in report.leaves)
    assert report.taylor.order == pytest.approx(2.0, abs=0.2)
    text = str(report)
    assert "W[1]" in text and "OK" in text and "Taylor" in text


def test_leaves_global_x64_setting_alone(problem):
    net, params, X, Y = problem
    before = jax.config.jax_enable_x64
    jn.check_gradients(net, params, X, Y)
    assert jax.config.jax_enable_x64 == before
    assert jnp.zeros(1).dtype == (jnp.float64 if before else jnp.float32)


def drop_one_over_m(net):
    def grads(p, X, Y):
        g = backprop(net, p, X, Y)
        g[1] = {"W": g[1]["W"] * X.shape[1], "b": g[1]["b"]}
        return g
    return grads


def transposed_product(net):
    # dA_prev computed with W instead of Wᵀ only type-checks when W is square: use W^[2] (4, 4).
    square = jn.MLP((3, 4, 4, 1), hidden="tanh", output="sigmoid")

    def grads(p, X, Y):
        from jaxnet.backprop import activation_backward, linear_backward, output_dZ
        from jaxnet.network import forward_cache
        A_L, cache = forward_cache(square, p, X)
        dZ = output_dZ(square, cache[-1]["Z"], A_L, Y)
        out = [None] * 3
        for l in reversed(range(3)):
            W = p[l]["W"]
            dW, db, _ = linear_backward(dZ, cache[l]["A_prev"], W)
            out[l] = {"W": dW, "b": db}
            if l > 0:
                dA_prev = (W if l == 1 else W.T) @ dZ  # the bug: no transpose at layer 2
                dZ = activation_backward(dA_prev, cache[l - 1]["Z"], cache[l - 1]["A"], "tanh")
        return out
    return square, grads


def wrong_derivative(net):
    def grads(p, X, Y):
        from jaxnet import activations
        table = dict(activations.ACTIVATIONS)
        relu = table["relu"]
        # sigmoid's derivative where ReLU's belongs
        activations.ACTIVATIONS["relu"] = relu._replace(
            backward=lambda dA, Z, A: dA * jax.nn.sigmoid(Z) * (1 - jax.nn.sigmoid(Z)))
        try:
            return backprop(net, p, X, Y)
        finally:
            activations.ACTIVATIONS["relu"] = relu
    return grads


def test_catches_missing_one_over_m(problem):
    net, params, X, Y = problem
    report = jn.check_grad(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert not report.ok
    assert report.failing == ["[1]['W']"]
    assert report.taylor.order < 1.5


def test_catches_transposed_product():
    key = jax.random.key(3)
    X = jax.random.normal(key, (3, 30))
    Y = (X[0:1] > 0).astype(X.dtype)
    square, grads = transposed_product(None)
    params = square.init(jax.random.key(4), bias="normal")
    report = jn.check_grad(loss_of(square), grads, params, X, Y)
    assert not report.ok
    assert set(report.failing) == {"[0]['W']", "[0]['b']"}


def test_catches_wrong_derivative(problem):
    net, params, X, Y = problem
    report = jn.check_grad(loss_of(net), wrong_derivative(net), params, X, Y)
    assert not report.ok
    assert {"[0]['W']", "[1]['W']"} <= set(report.failing)


def test_zero_bias_dead_units_are_kinks_not_failures():
    """All-zero input columns with zero biases put pre-activations exactly at the ReLU kink."""
    net = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")
    params = net.init(jax.random.key(0))  # zero biases
    X = jax.random.normal(jax.random.key(1), (3, 40)).at[:, :6].set(0.0)
    Y = jnp.ones((1, 40), jnp.float32)
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    assert report["b[1]"].kink_entries > 0 and report["b[1]"].kinks >= 30
    # ... and a wrong formula at the same point still fails.
    bad = jn.check_grad(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert not bad.ok and "[1]['W']" in bad.failing


def test_user_formula_on_any_pytree():
    """The README example: check a hand-derived gradient of a user's own function."""
    def loss(p, x):
        return jnp.sum(jnp.sin(p["a"] * x) ** 2) + p["c"] ** 3

    def grad(p, x):
        s = jnp.sin(p["a"] * x)
        return {"a": jnp.sum(2 * s * jnp.cos(p["a"] * x) * x), "c": 3 * p["c"] ** 2}

    p = {"a": jnp.array(0.7), "c": jnp.array(-1.3)}
    x = jnp.linspace(-1, 1, 5)
    assert jn.check_grad(loss, grad, p, x).ok
    wrong = lambda p, x: {**grad(p, x), "c": 3 * p["c"]}
    report = jn.check_grad(loss, wrong, p, x)
    assert report.failing == ["['c']"]


def test_structure_mismatch_is_a_clear_error(problem):
    net, params, X, Y = problem
    with pytest.raises(ValueError, match="tree structure"):
        jn.check_grad(loss_of(net), lambda p, X, Y: backprop(net, p, X, Y)[:2], params, X, Y)


def test_taylor_test_orders(problem):
    net, params, X, Y = problem
    good = jn.taylor_test(loss_of(net), lambda p, X, Y: backprop(net, p, X, Y), params, X, Y)
    bad = jn.taylor_test(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert good.order == pytest.approx(2.0, abs=0.2) and good.ok
    assert bad.order == pytest.approx(1.0, abs=0.2) and not bad.ok


def test_sampled_entries(problem):
    net, params, X, Y = problem
    report = jn.check_gradients(net, params, X, Y, entries=3, key=jax.random.key(5))
    assert report.ok
    assert report["W[2]"].fd_entries == 3
