import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import perceptron_rule
from jaxnet.perceptron_rule import PerceptronResult, perceptron_learning, predict_perceptron

XOR_X = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
XOR_Y = jnp.array([[0.0, 1.0, 1.0, 0.0]])


def blobs(key, m=50, gap=3.0):
    """Two well-separated Gaussian blobs in 2-D, `X` `(2, 2m)`, labels `Y` `(1, 2m)`."""
    k1, k2 = jax.random.split(key)
    centre = jnp.full((2, 1), gap)
    X = jnp.concatenate([jax.random.normal(k1, (2, m)) + centre,
                         jax.random.normal(k2, (2, m)) - centre], axis=1)
    Y = jnp.concatenate([jnp.ones((1, m)), jnp.zeros((1, m))], axis=1)
    return X, Y


def linear_data(key, m=100):
    X = jax.random.normal(key, (2, m))
    return X, 2.0 * X[0:1] - 3.0 * X[1:2] + 0.5


def check_result(result, n_x, max_epochs):
    assert isinstance(result, PerceptronResult)
    assert isinstance(result.params, list) and len(result.params) == 1
    assert result.params[0]["W"].shape == (1, n_x) and result.params[0]["b"].shape == (1, 1)
    assert isinstance(result.epochs, int) and 1 <= result.epochs <= max_epochs
    assert isinstance(result.converged, bool)
    for name in ("loss", "max_delta"):
        assert result.history[name].shape == (result.epochs,)
        assert np.all(np.isfinite(result.history[name]))


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_linear_recovers_noise_free_plane(getkey, shuffle):
    X, Y = linear_data(getkey())
    result = perceptron_learning(X, Y, rule="linear", max_epochs=200, shuffle=shuffle,
                                 key=getkey())
    check_result(result, 2, 200)
    assert result.converged and result.epochs < 200
    np.testing.assert_allclose(result.params[0]["W"], [[2.0, -3.0]], atol=1e-3)
    np.testing.assert_allclose(result.params[0]["b"], [[0.5]], atol=1e-3)
    assert result.history["max_delta"][-1] < 1e-6
    assert result.history["loss"][-1] < 1e-8


def by_hand(X, Y, learning_rate, rule):
    """One epoch of the document's update, sample by sample, in float64 numpy."""
    w, b = np.zeros((1, X.shape[0])), np.zeros((1, 1))
    for i in range(X.shape[1]):
        x, y = X[:, i:i + 1], Y[0, i]
        z = (w @ x + b)[0, 0]
        y_hat = z if rule == "linear" else 1.0 / (1.0 + np.exp(-z))
        w = w - learning_rate * (-(y - y_hat) * x.T)   # w_j <- w_j - α(-x_j (y - ŷ))
        b = b - learning_rate * (-(y - y_hat))         # b <- b - α(-(y - ŷ))
    return w, b


@pytest.mark.parametrize("rule, Y", [("linear", [[1.5, -2.0]]), ("sigmoid", [[1.0, 0.0]])],
                         ids=["linear", "sigmoid"])
def test_one_epoch_matches_hand_computation(rule, Y):
    X = np.array([[1.0, -0.5], [2.0, 3.0]])
    Y = np.array(Y)
    result = perceptron_learning(X, Y, rule=rule, learning_rate=0.3, max_epochs=1)
    w, b = by_hand(X, Y, 0.3, rule)
    assert result.epochs == 1
    np.testing.assert_allclose(result.params[0]["W"], w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.params[0]["b"], b, rtol=1e-6, atol=1e-7)
    delta = max(np.abs(w).max(), np.abs(b).max())  # the start is zero
    np.testing.assert_allclose(result.history["max_delta"], [delta], rtol=1e-6)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_step_converges_on_separable_blobs(getkey, shuffle):
    X, Y = blobs(getkey())
    result = perceptron_learning(X, Y, rule="step", max_epochs=100, shuffle=shuffle,
                                 key=getkey())
    check_result(result, 2, 100)
    assert result.converged and result.epochs < 100
    assert result.history["loss"][-1] == 0 and result.history["max_delta"][-1] == 0
    np.testing.assert_array_equal(predict_perceptron(result.params, X, rule="step"), Y)


def test_step_does_not_converge_on_xor():
    result = perceptron_learning(XOR_X, XOR_Y, rule="step", max_epochs=100)
    check_result(result, 2, 100)
    assert not result.converged and result.epochs == 100
    wrong = np.sum(np.asarray(predict_perceptron(result.params, XOR_X, rule="step")) != XOR_Y)
    assert wrong >= 1
    assert result.history["loss"][-1] == wrong


def test_sigmoid_separates_blobs(getkey):
    X, Y = blobs(getkey())
    result = perceptron_learning(X, Y, rule="sigmoid", max_epochs=50)
    check_result(result, 2, 50)
    p = predict_perceptron(result.params, X, rule="sigmoid")
    assert p.shape == (1, 100) and np.all((p > 0) & (p < 1))
    np.testing.assert_array_equal(p > 0.5, Y == 1)
    loss = np.asarray(result.history["loss"])
    assert loss[-1] < loss[0] and loss[-1] < 0.01
    # The document's BCE, literally, in float64 where log(1 - ŷ) keeps its digits.
    W, b, X, Y = (np.asarray(a, np.float64) for a in (*result.params[0].values(), X, Y))
    y_hat = 1.0 / (1.0 + np.exp(-(W @ X + b)))
    bce = np.mean(-Y * np.log(y_hat) - (1 - Y) * np.log(1 - y_hat))
    np.testing.assert_allclose(loss[-1], bce, rtol=1e-5)


@pytest.mark.parametrize("init", ["zeros", "random"])
def test_zeros_and_random_init_both_learn(getkey, init):
    X, Y = blobs(getkey())
    result = perceptron_learning(X, Y, rule="step", init=init, key=getkey())
    assert result.converged
    np.testing.assert_array_equal(predict_perceptron(result.params, X, rule="step"), Y)


def test_random_init_is_small_and_reproducible(getkey):
    X, Y = XOR_X, XOR_Y
    key = getkey()
    first = perceptron_learning(X, Y, rule="linear", init="random", key=key, max_epochs=1,
                                learning_rate=1e-9)
    again = perceptron_learning(X, Y, rule="linear", init="random", key=key, max_epochs=1,
                                learning_rate=1e-9)
    W = np.asarray(first.params[0]["W"])
    assert np.all(W != 0) and np.all(np.abs(W) < 0.1)
    np.testing.assert_array_equal(W, again.params[0]["W"])


def test_second_call_does_not_recompile(getkey, monkeypatch):
    traces = []
    update = perceptron_rule._sample_update

    def counting_update(*args, **kwargs):
        traces.append(1)  # Python runs only while jax traces
        return update(*args, **kwargs)

    monkeypatch.setattr(perceptron_rule, "_sample_update", counting_update)
    X, Y = linear_data(getkey(), m=37)  # a shape no other test compiles
    perceptron_learning(X, Y, rule="linear", learning_rate=0.1)
    traced, cached = len(traces), perceptron_rule._train._cache_size()
    assert traced >= 1
    X2, Y2 = linear_data(getkey(), m=37)
    perceptron_learning(X2, Y2, rule="linear", learning_rate=0.05, tol=1e-5)
    assert len(traces) == traced and perceptron_rule._train._cache_size() == cached


BAD_INPUTS = {
    "X-1d": (dict(X=np.ones(3), Y=np.ones((1, 3))), "X must be 2-D"),
    "Y-wrong-shape": (dict(Y=np.ones((4,))), "Y must have shape"),
    "Y-wrong-m": (dict(Y=np.ones((1, 3))), "Y must have shape"),
    "no-examples": (dict(X=np.ones((2, 0)), Y=np.ones((1, 0))), "m >= 1"),
    "X-nan": (dict(X=np.array([[0.0, np.nan, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])), "finite"),
    "Y-inf": (dict(rule="linear", Y=np.array([[0.0, np.inf, 1.0, 0.0]])), "finite"),
    "unknown-rule": (dict(rule="relu"), "'linear', 'sigmoid', 'step'"),
    "unknown-init": (dict(init="ones"), "'zeros', 'random'"),
    "step-labels": (dict(rule="step", Y=np.array([[0.0, 2.0, 1.0, 0.0]])), "labels in {0, 1}"),
    "sigmoid-labels": (dict(Y=np.array([[-1.0, 1.0, 1.0, -1.0]])), "labels in {0, 1}"),
    "lr-zero": (dict(learning_rate=0.0), "learning_rate must be"),
    "lr-negative": (dict(learning_rate=-0.1), "learning_rate must be"),
    "lr-nan": (dict(learning_rate=float("nan")), "learning_rate must be"),
    "epochs-zero": (dict(max_epochs=0), "max_epochs must be"),
    "epochs-float": (dict(max_epochs=2.5), "max_epochs must be"),
    "tol-negative": (dict(tol=-1e-3), "tol must be"),
    "tol-nan": (dict(tol=float("nan")), "tol must be"),
    "random-no-key": (dict(init="random"), "needs a PRNG key"),
    "shuffle-no-key": (dict(shuffle=True), "needs a PRNG key"),
}


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_raise(kwargs, message):
    kwargs = dict(X=XOR_X, Y=XOR_Y) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        perceptron_learning(kwargs.pop("X"), kwargs.pop("Y"), **kwargs)


def test_predict_checks_rule_and_shapes():
    params = [{"W": jnp.zeros((1, 2)), "b": jnp.zeros((1, 1))}]
    np.testing.assert_array_equal(predict_perceptron(params, XOR_X, rule="step"), np.ones((1, 4)))
    with pytest.raises(ValueError, match="rule must be one of"):
        predict_perceptron(params, XOR_X, rule="tanh")
    with pytest.raises(ValueError, match="expected X"):
        predict_perceptron(params, jnp.ones((3, 4)), rule="linear")


def test_step_converges_with_a_small_margin(getkey):
    # Separable by x1 - 2 x2 + 0.3 = 0 with a margin: Rosenblatt's theorem bounds the mistakes.
    X = jax.random.uniform(getkey(), (2, 400), minval=-1.0, maxval=1.0)
    s = X[0:1] - 2.0 * X[1:2] + 0.3
    keep = np.flatnonzero(np.abs(np.asarray(s[0])) > 0.05)
    X, Y = X[:, keep], (s[:, keep] > 0).astype(X.dtype)
    result = perceptron_learning(X, Y, rule="step", max_epochs=1000)
    assert result.converged and 1 < result.epochs < 1000
    assert result.history["loss"][-1] == 0
    np.testing.assert_array_equal(predict_perceptron(result.params, X, rule="step"), Y)
