"""The hand-written backward pass of the document ("Step3: Backward Propagation For Layer l").

    dZ^[L]   = A^[L] − Y                      (sigmoid + BCE, softmax + CCE)
             = dA^[L] ⊙ g'(Z^[L])             (any other pair; softmax applies its Jacobian)
    for l = L … 1:
        dW^[l]   = (1/m) dZ^[l] A^[l-1]ᵀ       (n^[l], n^[l-1])
        db^[l]   = (1/m) Σ_i dZ^[l]_i           (n^[l], 1)
        dA^[l-1] = W^[l]ᵀ dZ^[l]                (n^[l-1], m)
        dZ^[l-1] = dA^[l-1] ⊙ g'(Z^[l-1])        (n^[l-1], m)

No JAX autodiff is used here; the tests compare every leaf with `jax.grad(net.cost)`.
"""

from __future__ import annotations

from . import activations, losses
from .layers import dense
from .network import MLP, forward_cache
from .validation import binary_row


def output_dZ(net: MLP, Z_L, A_L, Y, *, shortcut: bool = True):
    """`dZ^[L]` of shape `(n_y, m)`: `A^[L] − Y` for a matching pair, else the general chain."""
    loss = losses.get(net.loss)
    Y = binary_row(Y, (net.sizes[-1],), net.loss)  # 0/1 labels (m,) of one sigmoid unit
    if shortcut and loss.output == net.output:
        return A_L - Y
    dA_L = loss.derivative(A_L, Y)
    return activations.get(net.output).backward(dA_L, Z_L, A_L)


def linear_backward(dZ, A_prev, W):
    """`dW`, `db`, `dA_prev` of one layer from its `dZ` `(n_l, m)` and cached `A_prev`:
    the dense layer's vector-Jacobian product with the document's `1/m` on `dW` and `db`."""
    m = A_prev.shape[1]
    dW, db, dA_prev = dense.linear_backward(dZ, A_prev, W)
    assert dA_prev.shape == A_prev.shape, (dA_prev.shape, A_prev.shape)
    return (1.0 / m) * dW, (1.0 / m) * db, dA_prev


def activation_backward(dA, Z, A, activation: str):
    """`dZ = dA ⊙ g'(Z)` (softmax: its Jacobian-vector product)."""
    return activations.get(activation).backward(dA, Z, A)


def backprop(net: MLP, params, X, Y, *, shortcut: bool = True) -> list[dict]:
    """Gradients of `J` with respect to every `W^[l]`, `b^[l]`, the same tree as `params`."""
    A_L, cache = forward_cache(net, params, X)
    return backward(net, params, cache, Y, shortcut=shortcut)


def backward(net: MLP, params, cache, Y, *, shortcut: bool = True) -> list[dict]:
    """The backward pass proper, from the forward pass's `cache`."""
    A_L = cache[-1]["A"]
    dZ = output_dZ(net, cache[-1]["Z"], A_L, Y, shortcut=shortcut)
    grads = [None] * net.L
    for l in reversed(range(net.L)):  # l indexes layer l+1 of the document
        dW, db, dA_prev = linear_backward(dZ, cache[l]["A_prev"], params[l]["W"])
        grads[l] = {"W": dW, "b": db}
        if l > 0:
            below = cache[l - 1]
            dZ = activation_backward(dA_prev, below["Z"], below["A"], net.activations[l - 1])
    return grads
