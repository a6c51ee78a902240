"""Losses L(A, Y), each beside its derivative dL/dA, and the stable cost from logits.

`A` and `Y` have shape `(n_y, m)`; a loss returns the per-example loss of shape `(m,)` (summed
over the `n_y` rows), and the cost `J` is its mean over the `m` columns.

Cross-entropy computed from `A = σ(Z)` or `A = softmax(Z)` overflows to ``log(0)`` once the
pre-activation saturates, so the network computes those two costs from `Z^[L]` instead:
``BCE = softplus(Z) − Y Z`` (= −Y log σ(Z) − (1−Y) log(1−σ(Z))) and
``CCE = −Σ_k Y_k log_softmax(Z)_k``; both are finite for any finite `Z`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Loss(NamedTuple):
    """One loss: `forward(A, Y) -> (m,)`, `derivative(A, Y) -> dL/dA` of shape `(n_y, m)`,
    `from_logits(Z, Y) -> (m,)` (the stable form for its matching output), and the output
    activation it pairs with for the shortcut `dZ^[L] = A^[L] − Y` (None: any output)."""

    name: str
    forward: Callable
    derivative: Callable
    from_logits: Callable | None
    output: str | None


# --- ½ squared error (regression) ----------------------------------------------------------
def squared_error(A, Y):
    return 0.5 * jnp.sum((Y - A) ** 2, axis=0)


def squared_error_prime(A, Y):
    return -(Y - A)


# --- binary cross-entropy ------------------------------------------------------------------
def binary_cross_entropy(A, Y):
    return -jnp.sum(Y * jnp.log(A) + (1 - Y) * jnp.log(1 - A), axis=0)


def binary_cross_entropy_prime(A, Y):
    return -(Y - A) / (A * (1 - A))


def binary_cross_entropy_from_logits(Z, Y):
    # softplus(Z) − Y Z: finite for |Z| up to the float range; its gradient σ(Z) − Y too.
    return jnp.sum(jax.nn.softplus(Z) - Y * Z, axis=0)


# --- categorical cross-entropy -------------------------------------------------------------
def categorical_cross_entropy(A, Y):
    return -jnp.sum(Y * jnp.log(A), axis=0)


def categorical_cross_entropy_prime(A, Y):
    return -Y / A


def categorical_cross_entropy_from_logits(Z, Y):
    return -jnp.sum(Y * jax.nn.log_softmax(Z, axis=0), axis=0)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss("squared_error", squared_error, squared_error_prime, None, None),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", binary_cross_entropy, binary_cross_entropy_prime,
        binary_cross_entropy_from_logits, "sigmoid"),
    "categorical_cross_entropy": Loss(
        "categorical_cross_entropy", categorical_cross_entropy, categorical_cross_entropy_prime,
        categorical_cross_entropy_from_logits, "softmax"),
}

# The document's pairing: identity -> ½ squared error, sigmoid -> BCE, softmax -> CCE.
DEFAULT_LOSS = {
    "identity": "squared_error",
    "sigmoid": "binary_cross_entropy",
    "softmax": "categorical_cross_entropy",
    "tanh": "squared_error",
    "relu": "squared_error",
    "leaky_relu": "squared_error",
}


def get(name: str) -> Loss:
    """Look up a loss by name or raise a ValueError listing the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"a loss name must be a str, got {type(name).__name__}: {name!r}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {sorted(LOSSES)}")
    return LOSSES[name]
