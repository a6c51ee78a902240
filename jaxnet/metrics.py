"""Predictions and the metrics users report: accuracy, mean squared error, R².

`predict` turns the network's output `Ŷ` `(n_y, m)` into what a user wants: class labels `(m,)`
for a softmax output (argmax over rows) or a single sigmoid unit (Ŷ ≥ ½), 0/1 labels `(n_y, m)`
for several sigmoid units (multi-label), and the values themselves for regression.
"""

from __future__ import annotations

import jax.numpy as jnp


def is_classifier(net) -> bool:
    return net.loss in ("binary_cross_entropy", "categorical_cross_entropy")


def labels_from_output(net, A):
    """Class labels from `A^[L]` (see the module docstring); regression outputs pass through."""
    if net.output == "softmax":
        return jnp.argmax(A, axis=0)
    if net.loss == "binary_cross_entropy":
        labels = (A >= 0.5).astype(jnp.int32)
        return labels[0] if A.shape[0] == 1 else labels
    return A


def accuracy_from_output(net, A, Y):
    """Fraction of correct predictions; `Y` one-hot (or integer class ids) for softmax, 0/1 for
    sigmoid outputs; for sequences, over every position of every example.

    With several sigmoid units (multi-label) this is the per-label accuracy: the fraction of
    the `n_y × m` labels predicted correctly."""
    if net.output == "softmax":
        if jnp.issubdtype(Y.dtype, jnp.integer) and Y.ndim == A.ndim - 1:
            return jnp.mean(jnp.argmax(A, axis=0) == Y)
        return jnp.mean(jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0))
    return jnp.mean((A >= 0.5) == (Y >= 0.5))


def predict(net, params, X):
    """Class labels (classification) or values `(n_y, m)` (regression) for `X` `(n_x, m)`."""
    return labels_from_output(net, net.forward(params, X))


def accuracy(net, params, X, Y) -> float:
    """Fraction of the m examples classified correctly (per label for several sigmoid units)."""
    if not is_classifier(net):
        raise ValueError(f"accuracy needs a classifier (a cross-entropy loss), got loss={net.loss!r}")
    X, Y = net._check(params, X, Y)
    return float(accuracy_from_output(net, net._forward(params, X)[1], Y))


def mse(net, params, X, Y) -> float:
    """Mean over the m examples of Σ_rows (y − ŷ)² (no ½, unlike the training loss)."""
    X, Y = net._check(params, X, Y)
    A = net._forward(params, X)[1]
    return float(jnp.mean(jnp.sum((Y - A) ** 2, axis=0)))


def r2(net, params, X, Y) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot, over all outputs together."""
    X, Y = net._check(params, X, Y)
    A = net._forward(params, X)[1]
    ss_res = jnp.sum((Y - A) ** 2)
    ss_tot = jnp.sum((Y - jnp.mean(Y, axis=-1, keepdims=True)) ** 2)
    return float(1.0 - ss_res / ss_tot)
