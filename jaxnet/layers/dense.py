"""The fully connected layer of the document, forward beside backward.

    Z = W A_prev + b,   A = g(Z)                      A_prev (n_prev, ..., m) -> A (n, ..., m)

    dZ      = dA ⊙ g'(Z)                              (softmax: its Jacobian-vector product)
    dW      = Σ_positions dZ A_prevᵀ                  (n, n_prev)
    db      = Σ_positions dZ                           (n, 1)
    dA_prev = Wᵀ dZ                                    (n_prev, ..., m)

As a vector-Jacobian product it has no `1/m`: the document's `dW^[l] = (1/m) dZ^[l] A^[l-1]ᵀ`
is this `dW` with `dZ^[L] = A^[L] − Y` scaled by `1/m` (the cost's mean), which is how
`MLP.backprop` (`jaxnet.backprop`) uses it.  Any axes between the features and the examples
(time steps, positions) are treated like more examples: a `Dense` after a sequence acts on every
position.  This module is the only implementation of the dense layer; `MLP` uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from .. import activations, initializers
from .base import activation_backward, activation_forward, check_positive_int

SMALL_DOT = 8  # contraction lengths up to this are written as fused multiply-adds


def matmul(W, A):
    """`W @ A` for `A` `(n_prev, m)`; for a short contraction (at most SMALL_DOT inputs) the same
    sum of products written out, which XLA fuses with the elementwise work around it: on tiny
    networks every separate dot kernel costs more than its arithmetic."""
    n = W.shape[1]
    if n > SMALL_DOT:
        return W @ A
    Z = W[:, :1] * A[:1]
    for k in range(1, n):
        Z = Z + W[:, k:k + 1] * A[k:k + 1]
    return Z


def _as_matrix(A):
    """`(n, ..., m)` -> `(n, positions·m)`: extra axes are more columns."""
    return A if A.ndim == 2 else A.reshape(A.shape[0], -1)


def linear_forward(W, b, A_prev):
    """`Z = W A_prev + b`: `W (n, n_prev)`, `b (n, 1)`, `A_prev (n_prev, ..., m)` -> `(n, ..., m)`."""
    Z = matmul(W, _as_matrix(A_prev)) + b
    return Z.reshape((W.shape[0], *A_prev.shape[1:]))


def linear_backward(dZ, A_prev, W):
    """`(dW, db, dA_prev)` of `Z = W A_prev + b` for the upstream `dZ` `(n, ..., m)`:
    `dW = dZ A_prevᵀ`, `db = Σ dZ` over the columns, `dA_prev = Wᵀ dZ` (no 1/m)."""
    dZ2, A2 = _as_matrix(dZ), _as_matrix(A_prev)
    if W.size <= SMALL_DOT:  # a tiny dW: one fused multiply-reduce over the columns
        dW = jnp.sum(dZ2[:, None, :] * A2[None, :, :], axis=2)
    else:
        dW = dZ2 @ A2.T
    db = jnp.sum(dZ2, axis=1, keepdims=True)
    dA_prev = matmul(W.T, dZ2).reshape(A_prev.shape)
    assert dW.shape == W.shape, (dW.shape, W.shape)
    assert db.shape == (W.shape[0], 1), db.shape
    return dW, db, dA_prev


@dataclass(frozen=True)
class Dense:
    """`A = g(W A_prev + b)` on the first axis; any further axes (positions, examples) pass through.

    Arguments:
        n: output units `n^[l]`.
        activation: a name from `jaxnet.activations` (default ``identity``).
        init: weight initializer (``he``, ``glorot``, ``normal``, ``zeros``); default He for the
            ReLU family and Glorot otherwise, as `MLP`.

    Parameters: `W (n, n_prev)`, `b (n, 1)`.
    """

    n: int
    activation: str = "identity"
    init_method: str | None = None

    def __post_init__(self):
        check_positive_int("Dense", "n", self.n)
        object.__setattr__(self, "activation", activations.canonical_name(self.activation))
        if self.init_method is not None:
            initializers.get(self.init_method)

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({"W": (n, n_prev), "b": (n, 1)}, (n, *rest))` for `in_shape = (n_prev, *rest)`."""
        n_prev = in_shape[0]
        method = self.init_method or initializers.default_for(self.activation)
        W = initializers.get(method)(key, self.n, n_prev, dtype)
        return {"W": W, "b": jnp.zeros((self.n, 1), dtype)}, (self.n, *in_shape[1:])

    def forward(self, params, A_prev):
        """`(A, cache)`; `A_prev (n_prev, ..., m)` -> `A (n, ..., m)`; cache: `A_prev`, `Z`, `A`."""
        W = params["W"]
        if jnp.ndim(A_prev) < 2 or A_prev.shape[0] != W.shape[1]:
            raise ValueError(f"Dense({self.n}) expects input of shape ({W.shape[1]}, ..., m), "
                             f"got shape {jnp.shape(A_prev)}")
        Z = linear_forward(W, params["b"], A_prev)
        A = activation_forward(self.activation, Z)
        return A, {"A_prev": A_prev, "Z": Z, "A": A}

    def backward(self, params, cache, dA):
        """`(dA_prev, {"W": dW, "b": db})` from `dA = ∂(Σ dA ⊙ A)/∂A` `(n, ..., m)`."""
        dZ = activation_backward(self.activation, dA, cache["Z"], cache["A"])
        dW, db, dA_prev = linear_backward(dZ, cache["A_prev"], params["W"])
        return dA_prev, {"W": dW, "b": db}

    def backward_from_dZ(self, params, cache, dZ):
        """The same from `dZ` directly (the output layer's `A − Y` shortcut)."""
        dW, db, dA_prev = linear_backward(dZ, cache["A_prev"], params["W"])
        return dA_prev, {"W": dW, "b": db}

