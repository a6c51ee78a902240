"""MLP: construction, init, forward, cost, and every bad input named in the issue."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn


def test_init_shapes_dtypes_and_defaults(getkey):
    net = jn.MLP((4, 8, 3), hidden="tanh", output="softmax")
    assert net.loss == "categorical_cross_entropy" and net.hidden == ("tanh",)
    params = net.init(getkey())
    assert [(p["W"].shape, p["b"].shape) for p in params] == [((8, 4), (8, 1)), ((3, 8), (3, 1))]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert all(jnp.all(p["b"] == 0) for p in params)
    with jax.enable_x64(True):
        assert net.init(getkey(), dtype=jnp.float64)[0]["W"].dtype == jnp.float64


def test_he_and_glorot_scales():
    key = jax.random.key(0)
    W_he = jn.MLP((400, 300, 1), hidden="relu").init(key)[0]["W"]
    W_gl = jn.MLP((400, 300, 1), hidden="tanh").init(key)[0]["W"]
    assert float(jnp.std(W_he)) == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert float(jnp.std(W_gl)) == pytest.approx(np.sqrt(2 / 700), rel=0.05)
    W_n = jn.MLP((400, 300, 1)).init(key, method="normal")[0]["W"]
    assert float(jnp.std(W_n)) == pytest.approx(0.01, rel=0.05)


def test_forward_is_the_documents_formula(getkey):
    net = jn.MLP((3, 4, 2), hidden="relu", output="sigmoid")
    params = net.init(getkey(), bias="normal")
    X = jax.random.normal(getkey(), (3, 6))
    A1 = np.maximum(np.asarray(params[0]["W"]) @ np.asarray(X) + np.asarray(params[0]["b"]), 0)
    Z2 = np.asarray(params[1]["W"]) @ A1 + np.asarray(params[1]["b"])
    np.testing.assert_allclose(net.forward(params, X), 1 / (1 + np.exp(-Z2)), rtol=1e-5)
    Y_hat, cache = net.forward_cache(params, X)
    assert [c["Z"].shape for c in cache] == [(4, 6), (2, 6)] and cache[0]["A_prev"] is not None


def test_cost_is_the_mean_loss(getkey):
    net = jn.MLP((2, 3, 1), output="sigmoid")
    params = net.init(getkey(), bias="normal")
    X = jax.random.normal(getkey(), (2, 9))
    Y = (X[:1] > 0).astype(jnp.float32)
    y_hat = np.asarray(net.forward(params, X), np.float64)
    y = np.asarray(Y, np.float64)
    bce = -(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
    assert float(net.cost(params, X, Y)) == pytest.approx(bce.mean(), rel=1e-5)
    reg = jn.MLP((2, 2), output="identity")
    p = reg.init(getkey())
    T = jax.random.normal(getkey(), (2, 9))
    want = 0.5 * np.sum((np.asarray(T) - np.asarray(reg.forward(p, X))) ** 2, axis=0).mean()
    assert float(reg.cost(p, X, T)) == pytest.approx(want, rel=1e-5)


def test_perceptron_is_a_one_layer_mlp():
    assert jn.Perceptron(3, task="regression") == jn.MLP((3, 1), output="identity")
    assert jn.Perceptron(3, task="regression").loss == "squared_error"
    assert jn.Perceptron(3, task="classification") == jn.MLP((3, 1), output="sigmoid")
    assert jn.MLP((3, 1), output="linear") == jn.MLP((3, 1), output="identity")
    with pytest.raises(ValueError, match="unknown task"):
        jn.Perceptron(3, task="clustering")


def test_architecture_is_hashable_and_jit_static(getkey):
    net = jn.MLP((3, 4, 1), hidden=["relu"])
    assert hash(net) == hash(jn.MLP((3, 4, 1), hidden="relu"))
    params = net.init(getkey())
    X = jax.random.normal(getkey(), (3, 5))
    np.testing.assert_allclose(jax.jit(net.forward)(params, X), net.forward(params, X), rtol=1e-6)


# --- bad input: a clear error before any computation --------------------------------------
@pytest.fixture
def setup(getkey):
    net = jn.MLP((3, 4, 2), hidden="relu", output="sigmoid")
    params = net.init(getkey())
    X = jax.random.normal(getkey(), (3, 5))
    Y = jnp.zeros((2, 5))
    return net, params, X, Y


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": (3,)}, "at least 2 entries"),
    ({"sizes": (3, 0, 1)}, "positive"),
    ({"sizes": (3, -2, 1)}, "positive"),
    ({"sizes": (3, 2.5, 1)}, "int"),
    ({"sizes": (3, 4, 1), "hidden": "swish"}, r"unknown activation 'swish'.*relu"),
    ({"sizes": (3, 4, 1), "output": "nonsense"}, r"valid names are"),
    ({"sizes": (3, 4, 1), "loss": "hinge"}, r"unknown loss 'hinge'.*squared_error"),
    ({"sizes": (3, 4, 1), "hidden": ("relu", "tanh")}, "one activation per hidden layer"),
    ({"sizes": (3, 4, 2), "output": "identity", "loss": "binary_cross_entropy"}, "needs a 'sigmoid'"),
    ({"sizes": (3, 4, 1), "output": "softmax"}, "at least 2 units"),
])
def test_bad_architecture(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jn.MLP(**kwargs)


def test_bad_init_options(getkey):
    net = jn.MLP((3, 1))
    with pytest.raises(ValueError, match="unknown initializer"):
        net.init(getkey(), method="xavier")
    with pytest.raises(ValueError, match="bias"):
        net.init(getkey(), bias="ones")
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="enable_x64"):
            net.init(getkey(), dtype=jnp.float64)


def test_bad_X(setup):
    net, params, X, Y = setup
    with pytest.raises(ValueError, match="2-D"):
        net.forward(params, X[0])
    with pytest.raises(ValueError, match=r"3 rows.*transposed"):
        net.forward(params, X.T)
    with pytest.raises(ValueError, match="m = 0"):
        net.forward(params, jnp.zeros((3, 0)))
    with pytest.raises(ValueError, match="non-finite"):
        net.cost(params, X.at[0, 0].set(jnp.nan), Y)


def test_bad_Y(setup):
    net, params, X, Y = setup
    with pytest.raises(ValueError, match=r"Y must have shape \(n_y, m\) = \(2, 5\)"):
        net.cost(params, X, Y[:1])
    with pytest.raises(ValueError, match="non-finite"):
        net.cost(params, X, Y.at[0, 0].set(jnp.inf))
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        net.backprop(params, X, Y.at[0, 0].set(2.0))
    cce = jn.MLP((3, 3), output="softmax")
    p = cce.init(jax.random.key(0))
    with pytest.raises(ValueError, match="distribution"):
        cce.cost(p, X, jnp.ones((3, 5)))


def test_params_that_do_not_fit(setup):
    net, params, X, Y = setup
    with pytest.raises(ValueError, match="has 1 layers but"):
        net.forward(params[:1], X)
    with pytest.raises(ValueError, match=r"W\^\[1\] must have shape \(4, 3\)"):
        net.forward([{"W": params[0]["W"].T, "b": params[0]["b"]}, params[1]], X)
    with pytest.raises(ValueError, match=r"b\^\[2\] must have shape \(2, 1\)"):
        net.forward([params[0], {"W": params[1]["W"], "b": jnp.zeros(2)}], X)
    with pytest.raises(ValueError, match="keys 'W' and 'b'"):
        net.forward([params[0], {"w": 1}], X)
    with pytest.raises(TypeError, match="list"):
        net.forward({"W": 1}, X)
    with pytest.raises(TypeError, match=r"W\^\[1\] must be an array"):
        net.forward([{"W": [[0.1] * 3] * 4, "b": params[0]["b"]}, params[1]], X)
    with pytest.raises(TypeError, match="floating"):
        net.forward([{"W": jnp.ones((4, 3), jnp.int32), "b": params[0]["b"]}, params[1]], X)
    with pytest.raises(ValueError, match=r"W\^\[1\] holds 1 non-finite"):
        net.forward([{"W": params[0]["W"].at[0, 0].set(jnp.nan), "b": params[0]["b"]},
                     params[1]], X)


def test_shape_checks_happen_at_trace_time(setup):
    net, params, X, Y = setup
    with pytest.raises(ValueError, match="Y must have shape"):
        jax.jit(net.cost)(params, X, Y[:1])
