"""Weight initializers: zeros, small normal, He and Glorot.

Each takes `key` and the layer's fan (`n_l` outputs, `n_prev` inputs) and returns `W` of shape
`(n_l, n_prev)`.  He (std √(2/n_prev)) keeps the variance of ReLU activations constant from layer
to layer; Glorot (std √(2/(n_prev+n_l))) does the same for tanh and sigmoid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SMALL = 0.01


def zeros(key, n_l, n_prev, dtype=jnp.float32):
    del key
    return jnp.zeros((n_l, n_prev), dtype)


def small_normal(key, n_l, n_prev, dtype=jnp.float32):
    return SMALL * jax.random.normal(key, (n_l, n_prev), dtype)


def he(key, n_l, n_prev, dtype=jnp.float32):
    return jnp.sqrt(2.0 / n_prev).astype(dtype) * jax.random.normal(key, (n_l, n_prev), dtype)


def glorot(key, n_l, n_prev, dtype=jnp.float32):
    std = jnp.sqrt(2.0 / (n_prev + n_l)).astype(dtype)
    return std * jax.random.normal(key, (n_l, n_prev), dtype)


INITIALIZERS = {"zeros": zeros, "normal": small_normal, "he": he, "glorot": glorot}
BIAS_INITS = ("zeros", "normal")


def get(name: str):
    """Look up a weight initializer by name or raise a ValueError listing the valid ones."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; valid names are {sorted(INITIALIZERS)}")
    return INITIALIZERS[name]


def default_for(activation: str) -> str:
    """He for the ReLU family, Glorot otherwise."""
    return "he" if activation in ("relu", "leaky_relu") else "glorot"
