"""Every loss in both forms (probabilities, logits) and dL/dA against independent oracles.

Oracles are numpy formulas written here, numbers worked by hand (literals), and numpy central
differences of the numpy formulas; nothing is compared with jaxnet's own functions.  The last
tests pin the default loss of every output activation and `MLP.cost` against a numpy forward.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import losses


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def f64(x):
    return jnp.asarray(x, jnp.float64)


# numpy oracles: per-example losses, shape (m,), summed over the n_y rows
def se_np(A, Y):
    return 0.5 * np.sum((np.asarray(Y) - np.asarray(A)) ** 2, axis=0)


def bce_np(A, Y):
    A, Y = np.asarray(A), np.asarray(Y)
    return -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A), axis=0)


def cce_np(A, Y):
    return -np.sum(np.asarray(Y) * np.log(np.asarray(A)), axis=0)


def bce_logits_np(Z, Y):  # log(1 + e^z) − y z, with log1p/exp kept in range
    Z, Y = np.asarray(Z), np.asarray(Y)
    softplus = np.maximum(Z, 0) + np.log1p(np.exp(-np.abs(Z)))
    return np.sum(softplus - Y * Z, axis=0)


def cce_logits_np(Z, Y):
    Z, Y = np.asarray(Z), np.asarray(Y)
    top = Z.max(axis=0, keepdims=True)
    log_softmax = Z - top - np.log(np.sum(np.exp(Z - top), axis=0, keepdims=True))
    return -np.sum(Y * log_softmax, axis=0)


def numeric_dL_dA(loss_np, A, Y, h=1e-6):
    """Central differences of the numpy loss: entry (k, i) is ∂L_i/∂A_ki."""
    A = np.asarray(A, np.float64)
    out = np.empty_like(A)
    for idx in np.ndindex(A.shape):
        up, down = A.copy(), A.copy()
        up[idx] += h
        down[idx] -= h
        out[idx] = (loss_np(up, Y)[idx[1]] - loss_np(down, Y)[idx[1]]) / (2 * h)
    return out


def test_the_table_and_its_pairings():
    assert set(losses.LOSSES) == {"squared_error", "binary_cross_entropy",
                                  "categorical_cross_entropy"}
    assert losses.get("squared_error").output is None
    assert losses.get("squared_error").from_logits is None
    assert losses.get("binary_cross_entropy").output == "sigmoid"
    assert losses.get("categorical_cross_entropy").output == "softmax"
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*'binary_cross_entropy'"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="must be a str"):
        losses.get(3)


# --- ½ squared error --------------------------------------------------------------------
def test_squared_error_hand_worked():
    A = f64([[0.5, 2.0], [1.0, -1.0]])
    Y = f64([[1.0, 0.0], [1.0, 1.0]])
    se = losses.get("squared_error")
    # column 0: ½(0.5² + 0²) = 0.125; column 1: ½(2² + 2²) = 4
    np.testing.assert_allclose(np.asarray(se.forward(A, Y)), [0.125, 4.0], rtol=1e-15)
    # dL/dA = −(Y − A) = A − Y
    np.testing.assert_allclose(np.asarray(se.derivative(A, Y)), [[-0.5, 2.0], [0.0, -2.0]],
                               rtol=1e-15)


# --- binary cross-entropy ---------------------------------------------------------------
def test_bce_probability_form_hand_worked():
    bce = losses.get("binary_cross_entropy")
    A, Y = f64([[0.8, 0.1, 0.2]]), f64([[1.0, 0.0, 0.25]])
    # −log 0.8, −log 0.9, −(¼ log 0.2 + ¾ log 0.8)   (soft label in the last column)
    np.testing.assert_allclose(np.asarray(bce.forward(A, Y)),
                               [0.2231435513142097, 0.10536051565782628, 0.5697171415941824],
                               rtol=1e-14)
    # dL/dA = −(y − a) / (a (1 − a)): −0.2/0.16 = −1.25, 0.1/0.09 = 1.111…, −0.05/0.16 = −0.3125
    np.testing.assert_allclose(np.asarray(bce.derivative(A, Y)), [[-1.25, 1 / 0.9, -0.3125]],
                               rtol=1e-14)


def test_bce_from_logits_hand_worked_and_saturated():
    bce = losses.get("binary_cross_entropy")
    # z = 0, y = 1: log 2;  z = 2, y = 0: log(1 + e²);  z = −3, y = 1: log(1 + e³)
    Z, Y = f64([[0.0, 2.0, -3.0]]), f64([[1.0, 0.0, 1.0]])
    np.testing.assert_allclose(np.asarray(bce.from_logits(Z, Y)),
                               [math.log(2.0), 2.1269280110429727, 3.048587351573742], rtol=1e-14)
    # |z| = 1000: σ(z) is 0 or 1 in floating point, yet the loss is finite: 1000, 1000, 0, 0
    Z, Y = f64([[1000.0, -1000.0, 1000.0, -1000.0]]), f64([[0.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(np.asarray(bce.from_logits(Z, Y)), [1000.0, 1000.0, 0.0, 0.0],
                               rtol=1e-15, atol=1e-300)
    Z32 = jnp.asarray([[1e4, -1e4]], jnp.float32)
    out = bce.from_logits(Z32, jnp.asarray([[0.0, 1.0]], jnp.float32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), [1e4, 1e4], rtol=1e-6)


def test_bce_both_forms_against_numpy():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(2, 7)) * 3.0
    Y = (rng.uniform(size=(2, 7)) > 0.5).astype(np.float64)
    Y[0, 0] = 0.3  # a soft label
    A = 1.0 / (1.0 + np.exp(-Z))
    bce = losses.get("binary_cross_entropy")
    np.testing.assert_allclose(np.asarray(bce.forward(f64(A), f64(Y))), bce_np(A, Y), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(bce.from_logits(f64(Z), f64(Y))), bce_logits_np(Z, Y),
                               rtol=1e-13)
    np.testing.assert_allclose(bce_np(A, Y), bce_logits_np(Z, Y), rtol=1e-12)  # same quantity
    np.testing.assert_allclose(np.asarray(bce.derivative(f64(A), f64(Y))),
                               -Y / A + (1 - Y) / (1 - A), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(bce.derivative(f64(A), f64(Y))),
                               numeric_dL_dA(bce_np, A, Y), rtol=1e-6)


# --- categorical cross-entropy ----------------------------------------------------------
def test_cce_probability_form_hand_worked():
    cce = losses.get("categorical_cross_entropy")
    A = f64([[0.7, 0.2], [0.2, 0.5], [0.1, 0.3]])
    Y = f64([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(np.asarray(cce.forward(A, Y)),
                               [0.35667494393873245, 1.2039728043259361], rtol=1e-14)  # −log .7, .3
    np.testing.assert_allclose(np.asarray(cce.derivative(A, Y)),
                               [[-1 / 0.7, 0.0], [0.0, 0.0], [0.0, -1 / 0.3]], rtol=1e-14)


def test_cce_from_logits_hand_worked_and_saturated():
    cce = losses.get("categorical_cross_entropy")
    # z = (0, ln 2, ln 3): softmax = (1/6, 2/6, 3/6); class 3 costs −log ½ = log 2,
    # the soft label (¼, ¼, ½) costs −(¼ log ⅙ + ¼ log ⅓ + ½ log ½)
    z = [0.0, math.log(2.0), math.log(3.0)]
    Z = f64([z, z]).T
    Y = f64([[0.0, 0.0, 1.0], [0.25, 0.25, 0.5]]).T
    soft = -(0.25 * math.log(1 / 6) + 0.25 * math.log(1 / 3) + 0.5 * math.log(0.5))
    np.testing.assert_allclose(np.asarray(cce.from_logits(Z, Y)), [math.log(2.0), soft],
                               rtol=1e-14)
    Z = f64([[1000.0], [0.0], [-1000.0]])
    np.testing.assert_allclose(np.asarray(cce.from_logits(Z, f64([[0.0], [0.0], [1.0]]))),
                               [2000.0], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(cce.from_logits(Z, f64([[1.0], [0.0], [0.0]]))),
                               [0.0], atol=1e-300)


def test_cce_both_forms_against_numpy():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(4, 6)) * 2.0
    Y = np.eye(4)[:, rng.integers(0, 4, 6)]
    Y[:, 0] = [0.1, 0.2, 0.3, 0.4]  # a soft label
    A = np.exp(Z) / np.exp(Z).sum(axis=0, keepdims=True)
    cce = losses.get("categorical_cross_entropy")
    np.testing.assert_allclose(np.asarray(cce.forward(f64(A), f64(Y))), cce_np(A, Y), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(cce.from_logits(f64(Z), f64(Y))), cce_logits_np(Z, Y),
                               rtol=1e-13)
    np.testing.assert_allclose(cce_np(A, Y), cce_logits_np(Z, Y), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cce.derivative(f64(A), f64(Y))), -Y / A, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(cce.derivative(f64(A), f64(Y))),
                               numeric_dL_dA(cce_np, A, Y), rtol=1e-6)


def test_squared_error_against_numpy_and_differences():
    rng = np.random.default_rng(3)
    A, Y = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    se = losses.get("squared_error")
    np.testing.assert_allclose(np.asarray(se.forward(f64(A), f64(Y))), se_np(A, Y), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(se.derivative(f64(A), f64(Y))),
                               numeric_dL_dA(se_np, A, Y), rtol=1e-7)


# --- the default loss of each output, and the network's cost ------------------------------
DEFAULTS = {
    "identity": "squared_error", "linear": "squared_error", "tanh": "squared_error",
    "relu": "squared_error", "leaky_relu": "squared_error",
    "sigmoid": "binary_cross_entropy", "softmax": "categorical_cross_entropy",
}


@pytest.mark.parametrize("output", list(DEFAULTS))
def test_default_loss_of_every_output(output):
    assert jn.MLP((2, 3), output=output).loss == DEFAULTS[output]


G = {"identity": lambda Z: Z, "tanh": np.tanh, "relu": lambda Z: np.maximum(Z, 0),
     "leaky_relu": lambda Z: np.where(Z >= 0, Z, 0.01 * Z),
     "sigmoid": lambda Z: 1 / (1 + np.exp(-Z)),
     "softmax": lambda Z: np.exp(Z) / np.exp(Z).sum(axis=0, keepdims=True)}
LOSS_NP = {"squared_error": se_np, "binary_cross_entropy": bce_np,
           "categorical_cross_entropy": cce_np}


@pytest.mark.parametrize("output,loss", [
    ("identity", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
    ("sigmoid", None), ("softmax", None), ("sigmoid", "squared_error"),
    ("softmax", "squared_error")])
def test_mlp_cost_is_the_mean_of_the_numpy_loss(output, loss):
    """One layer, `J = mean_i L(g(W x_i + b), y_i)` computed in numpy from the same numbers."""
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(3, 2)), rng.normal(size=(3, 1))
    X = rng.normal(size=(2, 5))
    A = G[output](W @ X + b)
    Y = np.eye(3)[:, [0, 2, 1, 1, 0]] if output in ("sigmoid", "softmax") else rng.normal(
        size=(3, 5))
    net = jn.MLP((2, 3), output=output, loss=loss)
    J = float(net.cost([{"W": f64(W), "b": f64(b)}], f64(X), f64(Y)))
    want = LOSS_NP[loss or DEFAULTS[output]](A, Y).mean()
    assert J == pytest.approx(want, rel=1e-13)


def test_squared_error_of_a_sigmoid_is_not_convex_but_cross_entropy_is():
    """The convexity the document's argument for cross-entropy rests on (errata item 10): along
    a line in w, the second differences of J are ≥ 0 for BCE and change sign for ½ squared error."""
    X = f64([[-2.0, -0.5, 1.0, 3.0]])
    Y = f64([[0.0, 1.0, 1.0, 0.0]])
    ws = np.linspace(-8.0, 8.0, 161)

    def costs(loss):
        net = jn.MLP((1, 1), output="sigmoid", loss=loss)
        J = jax.vmap(lambda w: net.cost([{"W": w.reshape(1, 1), "b": f64([[0.3]])}], X, Y))
        return np.asarray(J(f64(ws)))

    second = {loss: np.diff(costs(loss), 2) for loss in ("binary_cross_entropy", "squared_error")}
    assert second["binary_cross_entropy"].min() >= -1e-12
    assert second["squared_error"].min() < -1e-4 and second["squared_error"].max() > 1e-4
