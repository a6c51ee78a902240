"""Each worked formula of the document, checked against jax.grad (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import formulas as F

POINTS = [(0.3, -1.2, 0.1, 0.7, -0.4, 1.0), (-0.8, 0.5, -0.3, -1.1, 2.0, 0.0),
          (1.5, 0.2, 0.4, 0.9, 0.6, 1.0)]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("w1,w2,b,x1,x2,y", POINTS)
def test_regression_gradients(w1, w2, b, x1, x2, y):
    loss = lambda w1, w2, b: F.squared_error(F.regression_predict(w1, w2, b, x1, x2), y)
    auto = jax.grad(loss, argnums=(0, 1, 2))(w1, w2, b)
    np.testing.assert_allclose(F.regression_gradients(w1, w2, b, x1, x2, y), auto, rtol=1e-12)


@pytest.mark.parametrize("w1,w2,b,x1,x2,y", POINTS)
def test_regression_update_is_one_gradient_step(w1, w2, b, x1, x2, y):
    alpha = 0.05
    g = F.regression_gradients(w1, w2, b, x1, x2, y)
    want = (w1 - alpha * g[0], w2 - alpha * g[1], b - alpha * g[2])
    np.testing.assert_allclose(F.regression_update(w1, w2, b, x1, x2, y, alpha), want, rtol=1e-12)


@pytest.mark.parametrize("w1,w2,b,x1,x2,y", POINTS)
def test_classification_chain_and_simplified_form(w1, w2, b, x1, x2, y):
    loss = lambda w1, w2, b: F.binary_cross_entropy(F.classification_predict(w1, w2, b, x1, x2), y)
    auto = jax.grad(loss, argnums=(0, 1, 2))(w1, w2, b)
    np.testing.assert_allclose(F.classification_gradients_chain(w1, w2, b, x1, x2, y), auto,
                               rtol=1e-10)
    np.testing.assert_allclose(F.classification_gradients(w1, w2, b, x1, x2, y), auto, rtol=1e-10)
    alpha = 0.1
    new = F.classification_update(w1, w2, b, x1, x2, y, alpha)
    np.testing.assert_allclose(new, [p - alpha * g for p, g in zip((w1, w2, b), auto)], rtol=1e-10)


def two_layer_params(seed):
    names = ["w11", "w21", "w12", "w22", "b1", "b2", "w1", "w2", "b"]
    values = jax.random.normal(jax.random.key(seed), (9,), jnp.float64)
    return {n: values[i] for i, n in enumerate(names)}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("x1,x2,y", [(0.5, -1.0, 1.0), (1.3, 0.8, 0.0), (-0.2, 2.1, 1.0)])
def test_two_layer_gradients(seed, x1, x2, y):
    p = two_layer_params(seed)
    auto = jax.grad(F.two_layer_loss)(p, x1, x2, y)
    manual = F.two_layer_gradients(p, x1, x2, y)
    assert set(manual) == set(auto)
    for name in auto:
        np.testing.assert_allclose(manual[name], auto[name], rtol=1e-10, atol=1e-14, err_msg=name)
    updated = F.two_layer_update(p, x1, x2, y, 0.1)
    for name in p:
        np.testing.assert_allclose(updated[name], p[name] - 0.1 * auto[name], rtol=1e-12)


@pytest.mark.parametrize("g,g_prime", [(jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2),
                                       (jax.nn.sigmoid, lambda z: jax.nn.sigmoid(z)
                                        * (1 - jax.nn.sigmoid(z)))])
def test_two_layer_gradients_with_other_hidden_activations(g, g_prime):
    p = two_layer_params(9)
    auto = jax.grad(F.two_layer_loss)(p, 0.4, -0.9, 1.0, g)
    manual = F.two_layer_gradients(p, 0.4, -0.9, 1.0, g, g_prime)
    for name in auto:
        np.testing.assert_allclose(manual[name], auto[name], rtol=1e-10, err_msg=name)


def test_two_layer_network_is_the_general_mlp():
    """The nine scalars laid out as W^[1] (node, input) give the same ŷ and gradients as MLP."""
    p = two_layer_params(3)
    net = jn.MLP((2, 2, 1), hidden="relu", output="sigmoid")
    params = F.two_layer_to_params(p)
    X, Y = jnp.array([[0.7], [-0.3]]), jnp.array([[1.0]])
    np.testing.assert_allclose(net.forward(params, X)[0, 0], F.two_layer_predict(p, 0.7, -0.3),
                               rtol=1e-12)
    grads = net.backprop(params, X, Y)
    manual = F.two_layer_gradients(p, 0.7, -0.3, 1.0)
    np.testing.assert_allclose(F.two_layer_to_params(manual)[0]["W"], grads[0]["W"], rtol=1e-12)
    np.testing.assert_allclose(F.two_layer_to_params(manual)[1]["W"], grads[1]["W"], rtol=1e-12)
