"""The layer protocol every network type of the document is built from.

A layer is a frozen, hashable dataclass (it holds no arrays) with three methods, written side by
side in its module:

    params, out_shape = layer.init(key, in_shape, dtype)  # params: a dict of dtype arrays
    y, cache = layer.forward(params, x)                   # pure; cache = what backward needs
    dx, grads = layer.backward(params, cache, dy)         # hand-written vector-Jacobian product

Examples are the **last axis** of `x` and `y` (a batch of vectors is `(n, m)`, of images
`(C, H, W, m)`, of sequences `(n, T, m)`); `in_shape` and `out_shape` leave `m` out.
`backward` returns the gradients of `sum(dy * y)` with respect to `x` and to each parameter:
it has no `1/m` (the cost brings it in through `dY = ∂J/∂Ŷ`) and never calls `jax.grad`,
`jax.vjp` or `jax.linear_transpose`.  `dx` is `None` for integer inputs (token ids).
An output layer may add `backward_from_dZ(params, cache, dZ)` (the `A − Y` shortcut; optional).
`protocol` checks these rules where `Sequential` meets a layer; `registry.register` lets
checkpoints rebuild a layer of your own (docs/layers.md, "Write your own layer").
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .. import activations


def check_rank(layer, x, rank: int, layout: str):
    """Raise a ValueError unless `x` has `rank` axes (`layout` names them, e.g. "(C, H, W, m)")."""
    if jnp.ndim(x) != rank:
        raise ValueError(f"{type(layer).__name__} expects input of shape {layout}, got shape "
                         f"{jnp.shape(x)}")


def check_positive_int(owner: str, name: str, value, least: int = 1) -> int:
    """`value` as an int >= `least`, or a ValueError naming `owner.name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{owner}: {name} must be an int >= {least}, got {value!r}")
    return value


def activation_forward(name: str, Z):
    """`A = g(Z)`; softmax normalizes axis 0 (the features) at every position and example."""
    return activations.get(name).forward(Z)


def activation_backward(name: str, dA, Z, A):
    """`dZ = dA ⊙ g'(Z)` (softmax: its Jacobian-vector product along axis 0)."""
    return activations.get(name).backward(dA, Z, A)


def size(shape) -> int:
    """Number of entries of one example of this shape."""
    return math.prod(shape)
