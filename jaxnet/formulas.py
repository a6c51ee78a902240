"""The document's worked formulas, literally, one example at a time.

Each function takes and returns scalars with the document's names, so a reader can hold it
next to the text.  The tests check every gradient here against `jax.grad` of the matching
loss.  Where the document has a slip the code does the right thing; ``docs/errata.md`` lists
each slip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# ----------------------------------------------------------------------------------------
# Regression with a perceptron:  ŷ = w1 x1 + w2 x2 + b,  L = ½ (y − ŷ)²
# ----------------------------------------------------------------------------------------


def regression_predict(w1, w2, b, x1, x2):
    """ŷ = w1 x1 + w2 x2 + b."""
    return w1 * x1 + w2 * x2 + b


def squared_error(y_hat, y):
    """L(ŷ, y) = ½ (y − ŷ)²."""
    return 0.5 * (y - y_hat) ** 2


def regression_gradients(w1, w2, b, x1, x2, y):
    """(dL/dw1, dL/dw2, dL/db) = (dL/dŷ·x1, dL/dŷ·x2, dL/dŷ) with dL/dŷ = −(y − ŷ).

    (The document writes dŷ/dw1 twice; the second is dŷ/dw2 = x2.)
    """
    y_hat = regression_predict(w1, w2, b, x1, x2)
    dL_dy_hat = -(y - y_hat)
    dy_hat_dw1, dy_hat_dw2, dy_hat_db = x1, x2, 1.0
    return dL_dy_hat * dy_hat_dw1, dL_dy_hat * dy_hat_dw2, dL_dy_hat * dy_hat_db


def regression_update(w1, w2, b, x1, x2, y, alpha):
    """One gradient-descent step: w1 − α(−x1(y − ŷ)), w2 − α(−x2(y − ŷ)), b − α(−(y − ŷ))."""
    y_hat = regression_predict(w1, w2, b, x1, x2)
    return (w1 - alpha * (-x1 * (y - y_hat)),
            w2 - alpha * (-x2 * (y - y_hat)),
            b - alpha * (-(y - y_hat)))


# ----------------------------------------------------------------------------------------
# Classification with a perceptron:  z = w1 x1 + w2 x2 + b,  ŷ = σ(z),  L = BCE
# ----------------------------------------------------------------------------------------


def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z))."""
    return jax.nn.sigmoid(z)


def classification_predict(w1, w2, b, x1, x2):
    """ŷ = σ(w1 x1 + w2 x2 + b)."""
    return sigmoid(w1 * x1 + w2 * x2 + b)


def binary_cross_entropy(y_hat, y):
    """L(ŷ, y) = −y log ŷ − (1 − y) log(1 − ŷ)."""
    return -y * jnp.log(y_hat) - (1 - y) * jnp.log(1 - y_hat)


def classification_gradients_chain(w1, w2, b, x1, x2, y):
    """The unsimplified chain dL/dw = dL/dŷ · dŷ/dw, factor by factor as the document writes:

    dL/dŷ = −(y − ŷ) / (ŷ (1 − ŷ)),  dŷ/dw1 = ŷ(1 − ŷ) x1,  dŷ/dw2 = ŷ(1 − ŷ) x2,
    dŷ/db = ŷ(1 − ŷ).
    """
    y_hat = classification_predict(w1, w2, b, x1, x2)
    dL_dy_hat = -(y - y_hat) / (y_hat * (1 - y_hat))
    dy_hat_dz = y_hat * (1 - y_hat)
    return (dL_dy_hat * dy_hat_dz * x1, dL_dy_hat * dy_hat_dz * x2, dL_dy_hat * dy_hat_dz)


def classification_gradients(w1, w2, b, x1, x2, y):
    """The simplified form: (−(y − ŷ) x1, −(y − ŷ) x2, −(y − ŷ)); the ŷ(1 − ŷ) cancels."""
    y_hat = classification_predict(w1, w2, b, x1, x2)
    return -(y - y_hat) * x1, -(y - y_hat) * x2, -(y - y_hat)


def classification_update(w1, w2, b, x1, x2, y, alpha):
    """One step: w1 − α(−x1(y − ŷ)), w2 − α(−x2(y − ŷ)), b − α(−(y − ŷ))."""
    dw1, dw2, db = classification_gradients(w1, w2, b, x1, x2, y)
    return w1 - alpha * dw1, w2 - alpha * dw2, b - alpha * db


# ----------------------------------------------------------------------------------------
# The two-layer network:  a1 = g(w11 x1 + w21 x2 + b1),  a2 = g(w12 x1 + w22 x2 + b2),
#                         ŷ = σ(w1 a1 + w2 a2 + b),  L = BCE.
# w_ij joins input i to hidden node j (the document's gloss says "training example" for j).
# ----------------------------------------------------------------------------------------


def relu(z):
    # jax.nn.relu, not jnp.maximum(z, 0): autodiff through maximum gives ½ at z = 0 (a tie),
    # which would disagree with relu_prime(0) = 0 below at every kink.
    return jax.nn.relu(z)


def relu_prime(z):
    """g'(z) = 1 for z > 0, else 0 (g'(0) = 0, the choice jax.grad makes through relu)."""
    return jnp.where(z > 0, 1.0, 0.0)


def two_layer_predict(p, x1, x2, g=relu):
    """ŷ of the two-layer network; `p` is a dict with the document's names
    (w11, w21, w12, w22, b1, b2, w1, w2, b)."""
    a1 = g(p["w11"] * x1 + p["w21"] * x2 + p["b1"])
    a2 = g(p["w12"] * x1 + p["w22"] * x2 + p["b2"])
    return sigmoid(p["w1"] * a1 + p["w2"] * a2 + p["b"])


def two_layer_loss(p, x1, x2, y, g=relu):
    """L(ŷ, y), binary cross-entropy of the two-layer network for one example."""
    return binary_cross_entropy(two_layer_predict(p, x1, x2, g), y)


def two_layer_gradients(p, x1, x2, y, g=relu, g_prime=relu_prime):
    """dL/d(each parameter) of the two-layer network, by the chain rule; a dict like `p`.

    Output layer: dL/dz = ŷ − y, so dL/dw1 = (ŷ − y) a1, dL/dw2 = (ŷ − y) a2, dL/db = ŷ − y.
    First layer:  dL/dz1 = (ŷ − y) w1 g'(z1), then dL/dw11 = dL/dz1 x1, dL/dw21 = dL/dz1 x2,
    dL/db1 = dL/dz1; node 2 likewise with w2, z2, w12, w22, b2.
    """
    z1 = p["w11"] * x1 + p["w21"] * x2 + p["b1"]
    z2 = p["w12"] * x1 + p["w22"] * x2 + p["b2"]
    a1, a2 = g(z1), g(z2)
    y_hat = sigmoid(p["w1"] * a1 + p["w2"] * a2 + p["b"])
    dz = y_hat - y
    dz1 = dz * p["w1"] * g_prime(z1)
    dz2 = dz * p["w2"] * g_prime(z2)
    return {
        "w11": dz1 * x1, "w21": dz1 * x2, "b1": dz1,
        "w12": dz2 * x1, "w22": dz2 * x2, "b2": dz2,
        "w1": dz * a1, "w2": dz * a2, "b": dz,
    }


def two_layer_update(p, x1, x2, y, alpha, g=relu, g_prime=relu_prime):
    """One step for all nine parameters: θ = θ − α dL/dθ."""
    grads = two_layer_gradients(p, x1, x2, y, g, g_prime)
    return {name: p[name] - alpha * grads[name] for name in p}


def two_layer_to_params(p):
    """The nine scalars as jaxnet parameters of `MLP((2, 2, 1))`.

    `W^[1][j, i] = w_ij` (node j, input i), which is the transpose of the matrix the document
    prints ("Remember that we take transpose of W").
    """
    W1 = jnp.array([[p["w11"], p["w21"]], [p["w12"], p["w22"]]])
    b1 = jnp.array([[p["b1"]], [p["b2"]]])
    W2 = jnp.array([[p["w1"], p["w2"]]])
    b2 = jnp.array([[p["b"]]])
    return [{"W": W1, "b": b1}, {"W": W2, "b": b2}]
