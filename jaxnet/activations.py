"""Activation functions g, each beside its derivative g'.

Every activation maps `Z` of shape `(n, m)` to `A = g(Z)` of the same shape.  The backward
step needs `dZ = dA ⊙ g'(Z)` for element-wise activations; softmax is not element-wise, so each
activation carries a ``backward(dA, Z, A) -> dZ`` that applies its Jacobian (for softmax:
``dZ = A ⊙ (dA − Σ_k A_k dA_k)``, column by column).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    """One activation: `forward(Z) -> A`, `derivative(Z) -> g'(Z)` (element-wise ones only),
    and `backward(dA, Z, A) -> dZ`."""

    name: str
    forward: Callable
    derivative: Callable | None
    backward: Callable
    kinked: bool  # True where g has a kink at 0 (finite differences unreliable there)


# --- identity / linear -------------------------------------------------------------------
def identity(Z):
    return Z


def identity_prime(Z):
    return jnp.ones_like(Z)


# --- sigmoid -------------------------------------------------------------------------------
def sigmoid(Z):
    return jax.nn.sigmoid(Z)


def sigmoid_prime(Z):
    A = jax.nn.sigmoid(Z)
    return A * (1 - A)


# --- tanh ----------------------------------------------------------------------------------
def tanh(Z):
    return jnp.tanh(Z)


def tanh_prime(Z):
    return 1 - jnp.tanh(Z) ** 2


# --- ReLU ----------------------------------------------------------------------------------
def relu(Z):
    # jax.nn.relu's derivative at 0 is 0; jnp.maximum(Z, 0) would give ½ there (a tie).
    return jax.nn.relu(Z)


def relu_prime(Z):
    # g'(0) = 0, the same choice jax.grad makes through jax.nn.relu.
    return (Z > 0).astype(Z.dtype)


# --- leaky ReLU ----------------------------------------------------------------------------
def leaky_relu(Z):
    return jnp.where(Z >= 0, Z, LEAKY_SLOPE * Z)


def leaky_relu_prime(Z):
    # g'(0) = 1, matching the `Z >= 0` branch that autodiff takes through `leaky_relu`.
    return jnp.where(Z >= 0, 1.0, LEAKY_SLOPE).astype(Z.dtype)


# --- GELU (exact: z Φ(z) with Φ the standard normal CDF) -----------------------------------
def gelu(Z):
    """`g(z) = ½ z (1 + erf(z/√2)) = z Φ(z)` (the exact form, not the tanh approximation)."""
    return 0.5 * Z * (1 + erf(Z * (1 / math.sqrt(2))))


def gelu_prime(Z):
    """`g'(z) = Φ(z) + z φ(z)`, `φ(z) = exp(−z²/2)/√(2π)` the standard normal density."""
    Phi = 0.5 * (1 + erf(Z * (1 / math.sqrt(2))))
    return Phi + Z * jnp.exp(-0.5 * Z * Z) * (1 / math.sqrt(2 * math.pi))


# --- softmax (over the n rows of each column) ---------------------------------------------
def softmax(Z):
    return jax.nn.softmax(Z, axis=0)


def softmax_backward(dA, Z, A):
    """Softmax Jacobian-vector product, per column: `dZ = A ⊙ (dA − Σ_k A_k dA_k)`."""
    return A * (dA - jnp.sum(A * dA, axis=0, keepdims=True))


def _elementwise(name, g, g_prime, kinked=False):
    return Activation(name, g, g_prime, lambda dA, Z, A: dA * g_prime(Z), kinked)


ACTIVATIONS: dict[str, Activation] = {
    "identity": _elementwise("identity", identity, identity_prime),
    "sigmoid": _elementwise("sigmoid", sigmoid, sigmoid_prime),
    "tanh": _elementwise("tanh", tanh, tanh_prime),
    "relu": _elementwise("relu", relu, relu_prime, kinked=True),
    "leaky_relu": _elementwise("leaky_relu", leaky_relu, leaky_relu_prime, kinked=True),
    "gelu": _elementwise("gelu", gelu, gelu_prime),
    "softmax": Activation("softmax", softmax, None, softmax_backward, False),
}
ALIASES = {"linear": "identity"}


def canonical_name(name: str) -> str:
    """Return the table's name for `name` (resolving aliases) or raise a ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"an activation name must be a str, got {type(name).__name__}: {name!r}")
    name = ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        valid = sorted([*ACTIVATIONS, *ALIASES])
        raise ValueError(f"unknown activation {name!r}; valid names are {valid}")
    return name


def get(name: str) -> Activation:
    """Look up an activation by name (``linear`` is an alias of ``identity``)."""
    return ACTIVATIONS[canonical_name(name)]
