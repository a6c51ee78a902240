"""Scaled dot-product attention, multi-head attention and the pre-LayerNorm transformer block,
each forward directly above its hand-written backward (as llm.c's `attention_forward` /
`attention_backward`).

Per example (`Q (d_k, T_q)`, `K (d_k, T_k)`, `V (d_v, T_k)`, the examples on a last axis `m`):

    S = Kᵀ Q / √d_k          (T_k, T_q)      scores, one column per query
    W = softmax(S) over k     (T_k, T_q)      each column sums to 1 over the allowed keys
    out = V W                 (d_v, T_q)

    dV = d_out Wᵀ,   dW = Vᵀ d_out,   dS = W ⊙ (dW − Σ_k W ⊙ dW),
    dQ = K dS / √d_k,   dK = Q dSᵀ / √d_k

A mask (True where attention is allowed) removes keys before the softmax: their weights are
exactly 0, so `dS` is 0 there too.  A query whose keys are *all* masked gets all-zero weights
(its output is 0, its gradients are 0): defined, never NaN.  The derivations are in
`docs/layers/attention.md`.

Internally the attention runs with the batch axes first, `(m, heads, T, d_k)`, so each product
is one batched matrix multiply and the softmax reduces over the contiguous last axis; the
layers transpose once on the way in and once on the way out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import activations, initializers
from .base import check_positive_int
from .dense import linear_backward, linear_forward
from .normalization import layernorm_backward, layernorm_forward

LN_EPS = 1e-5


# --- the core, batch axes first: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) ---------
def _softmax_keys(S, mask):
    """Softmax of `S (..., T_q, T_k)` over the keys (last axis), 0 where `mask` is False; a row
    with no allowed key is all zeros.  The max is only a shift: held constant (stop_gradient)."""
    if mask is None:
        E = jnp.exp(S - lax.stop_gradient(jnp.max(S, axis=-1, keepdims=True)))
        return E / jnp.sum(E, axis=-1, keepdims=True)
    shift = jnp.max(jnp.where(mask, S, -jnp.inf), axis=-1, keepdims=True)
    shift = lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0))
    E = jnp.where(mask, jnp.exp(jnp.where(mask, S - shift, 0)), 0)
    total = jnp.sum(E, axis=-1, keepdims=True)
    return E / jnp.where(total > 0, total, 1)


def _attend_forward(q, k, v, mask, scale):
    """`(out (..., T_q, d_v), P (..., T_q, T_k))`: `P = softmax(scale · q kᵀ)`, `out = P v`."""
    S = jnp.einsum("...qd,...kd->...qk", q, k) * scale
    P = _softmax_keys(S, mask)
    return jnp.einsum("...qk,...kd->...qd", P, v), P


def _attend_backward(q, k, v, P, scale, d_out):
    """`(dq, dk, dv)`: `dv = Pᵀ d_out`, `dP = d_out vᵀ`, `dS = P ⊙ (dP − Σ_k P ⊙ dP)`,
    `dq = scale · dS k`, `dk = scale · dSᵀ q` (the scale folded into dS once)."""
    dv = jnp.einsum("...qk,...qd->...kd", P, d_out)
    dP = jnp.einsum("...qd,...kd->...qk", d_out, v)
    dS = P * (dP - jnp.sum(P * dP, axis=-1, keepdims=True)) * scale
    dq = jnp.einsum("...qk,...kd->...qd", dS, k)
    dk = jnp.einsum("...qk,...qd->...kd", dS, q)
    return dq, dk, dv


# --- the public functional form, examples last ---------------------------------------------------
def _check_qkv(Q, K, V, mask):
    for name, X in (("Q", Q), ("K", K), ("V", V)):
        if jnp.ndim(X) != 3:
            raise ValueError(f"scaled_dot_product_attention expects {name} of shape "
                             f"(d, T, m), got shape {jnp.shape(X)}")
    (d_k, T_q, m), (d_k2, T_k, m_k), (_, T_v, m_v) = Q.shape, K.shape, V.shape
    if d_k2 != d_k or T_v != T_k or m_k != m or m_v != m:
        raise ValueError(f"scaled_dot_product_attention expects Q (d_k, T_q, m), K (d_k, T_k, m),"
                         f" V (d_v, T_k, m), got Q {Q.shape}, K {K.shape}, V {V.shape}")
    if mask is None:
        return None
    if jnp.result_type(mask) != jnp.bool_:
        raise ValueError(f"the attention mask must be boolean (True where allowed), got dtype "
                         f"{jnp.result_type(mask)}")
    shape = (T_k, T_q, m)
    ndim = jnp.ndim(mask)
    # A mask without the examples axis, (T_k, T_q), is shared by every example (m left out).
    if ndim == 2:
        mask = mask[:, :, None]
    if ndim not in (2, 3) or any(a not in (1, b) for a, b in zip(mask.shape, shape)):
        raise ValueError(f"the attention mask must broadcast to the weights' shape (T_k, T_q, m)"
                         f" = {shape} (or (T_k, T_q), shared by the examples), got shape "
                         f"{jnp.shape(mask)}")
    return jnp.broadcast_to(mask, shape)


def scaled_dot_product_attention(Q, K, V, mask=None):
    """Scaled dot-product attention over the keys, examples on the last axis.

    Arguments:
        Q: queries `(d_k, T_q, m)`; K: keys `(d_k, T_k, m)`; V: values `(d_v, T_k, m)`.
        mask: optional boolean, True where query q may attend to key k; broadcastable to
            `(T_k, T_q, m)`, or `(T_k, T_q)` shared by every example.

    Returns:
        `(out (d_v, T_q, m), weights (T_k, T_q, m))` with `S = Kᵀ Q / √d_k` per example,
        `weights = softmax(S)` over axis 0 (the keys; masked keys get weight 0) and
        `out = V weights`.  A query with every key masked gets zero weights and a zero output.
    """
    out, cache = scaled_dot_product_attention_forward(Q, K, V, mask)
    return out, cache["weights"].transpose(2, 1, 0)


def scaled_dot_product_attention_forward(Q, K, V, mask=None):
    """`(out, cache)` of `scaled_dot_product_attention`; `cache["weights"]` holds the weights
    in the batch-first layout `(m, T_q, T_k)`, with `q`, `k`, `v` and the scale."""
    mask = _check_qkv(Q, K, V, mask)
    scale = 1 / math.sqrt(Q.shape[0])
    q, k, v = (X.transpose(2, 1, 0) for X in (Q, K, V))
    out, P = _attend_forward(q, k, v, None if mask is None else mask.transpose(2, 1, 0), scale)
    return out.transpose(2, 1, 0), {"q": q, "k": k, "v": v, "weights": P, "scale": scale}


def scaled_dot_product_attention_backward(cache, d_out):
    """`(dQ, dK, dV)` of `Σ d_out ⊙ out` for `d_out (d_v, T_q, m)`, per example:

        dV = d_out Wᵀ,  dW = Vᵀ d_out,  dS = W ⊙ (dW − Σ_k W ⊙ dW),
        dQ = K dS / √d_k,  dK = Q dSᵀ / √d_k

    (masked keys have W = 0, hence dS = 0: the mask needs no separate term)."""
    dq, dk, dv = _attend_backward(cache["q"], cache["k"], cache["v"], cache["weights"],
                                  cache["scale"], d_out.transpose(2, 1, 0))
    return dq.transpose(2, 1, 0), dk.transpose(2, 1, 0), dv.transpose(2, 1, 0)


# --- multi-head attention ------------------------------------------------------------------------
def _causal_mask(T):
    """`(1, 1, T_q, T_k)`: query t may attend to keys 0 … t."""
    return jnp.asarray(np.tril(np.ones((T, T), bool))[None, None])


def _check_d(owner, d, heads):
    if d % heads != 0:
        raise ValueError(f"{owner}: the model width d={d} must be divisible by heads={heads} "
                         f"(each head takes d/heads rows of Wq, Wk, Wv)")


def _rows_first(Z):
    """`(d, T, m)` -> `(m·T, d)`: one row per position of every example (the one transpose)."""
    d, T, m = Z.shape
    return Z.transpose(2, 1, 0).reshape(m * T, d)


def _transposed(A):
    """`Aᵀ` materialized: XLA on CPU runs `Aᵀ B` (a product contracting the first axis of
    both) about 3x slower than copying `Aᵀ` first and multiplying plain row-major matrices;
    the barrier keeps XLA from folding the copy back into the product."""
    return lax.optimization_barrier(A.T)


def _rows_back(Zt, T, m):
    """Inverse of `_rows_first`: `(m·T, d)` -> `(d, T, m)`."""
    return Zt.reshape(m, T, -1).transpose(2, 1, 0)


@dataclass(frozen=True)
class MultiHeadAttention:
    """Self-attention with `heads` heads: `(d, T, m)` -> `(d, T, m)`.

        Q = Wq x + bq,  K = Wk x + bk,  V = Wv x + bv                      (d, T, m)
        head_h = attention(Q_h, K_h, V_h), Q_h = rows h·d_k … (h+1)·d_k − 1, d_k = d/heads
        y = Wo concat(head_1, …, head_heads) + bo

    Arguments:
        heads: number of heads; `d` must be divisible by it.
        causal: when True query t attends to keys 0 … t only.

    Parameters: `Wq Wk Wv Wo (d, d)` (Glorot), `bq bk bv bo (d, 1)` (zeros).
    """

    heads: int
    causal: bool = False

    def __post_init__(self):
        check_positive_int("MultiHeadAttention", "heads", self.heads)
        if not isinstance(self.causal, bool):
            raise ValueError(f"MultiHeadAttention: causal must be a bool, got {self.causal!r}")

    def init(self, key, in_shape, dtype=jnp.float32):
        """`(params, (d, T))` for `in_shape = (d, T)`."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 2:
            raise ValueError(f"MultiHeadAttention expects input of shape (d, T, m): in_shape "
                             f"(m left out) must be (d, T), got {in_shape}")
        d = in_shape[0]
        _check_d("MultiHeadAttention", d, self.heads)
        keys = jax.random.split(key, 4)
        params = {}
        for name, k in zip("qkvo", keys):
            params["W" + name] = initializers.glorot(k, d, d, dtype)
            params["b" + name] = jnp.zeros((d, 1), dtype)
        return params, in_shape

    def forward(self, params, x):
        """`(y, cache)`; `x (d, T, m)` -> `y (d, T, m)`.

        Computed on rows, one per position: `X (m·T, d)`, `[Q K V] = X [Wq; Wk; Wv]ᵀ + b`
        (one product), heads `(m, heads, T, d_k)`, `O (m·T, d)` the concatenated heads,
        `Y = O Woᵀ + boᵀ`.  Cache: `X`, the heads' `q k v`, the weights `P (m, heads, T_q,
        T_k)` and `O`."""
        d = params["Wq"].shape[1]
        if jnp.ndim(x) != 3 or x.shape[0] != d:
            raise ValueError(f"MultiHeadAttention expects input of shape ({d}, T, m), got shape "
                             f"{jnp.shape(x)}")
        _check_d("MultiHeadAttention", d, self.heads)
        _, T, m = x.shape
        h, d_k = self.heads, d // self.heads
        X = _rows_first(x)
        W3 = jnp.concatenate([params["Wq"], params["Wk"], params["Wv"]])  # (3d, d)
        b3 = jnp.concatenate([params["bq"], params["bk"], params["bv"]])
        QKV = (X @ W3.T + b3.reshape(1, 3 * d)).reshape(m, T, 3, h, d_k)
        q, k, v = (QKV[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        mask = _causal_mask(T) if self.causal else None
        o, P = _attend_forward(q, k, v, mask, 1 / math.sqrt(d_k))
        O = o.transpose(0, 2, 1, 3).reshape(m * T, d)
        Y = O @ params["Wo"].T + params["bo"].reshape(1, d)
        return _rows_back(Y, T, m), {"X": X, "q": q, "k": k, "v": v, "P": P, "O": O}

    def backward(self, params, cache, dy):
        """`(dx, grads)` from `dy (d, T, m)`, on rows `dY (m·T, d)`:

            dWo = dYᵀ O,  dbo = Σ_rows dY,  dO = dY Wo           (split into the heads' d_out)
            per head: dq, dk, dv from the attention backward (see the module docstring)
            dW_ = d_ᵀ X,  db_ = Σ_rows d_,  dX = dQ Wq + dK Wk + dV Wv     (_ = Q, K, V)

        (`dbk` is 0 up to round-off: adding a constant to every key's score of a query does
        not change its softmax.)"""
        d = params["Wq"].shape[1]
        _, T, m = dy.shape
        h, d_k = self.heads, d // self.heads
        dY = _rows_first(dy)
        dWo = _transposed(dY) @ cache["O"]
        dbo = jnp.sum(dY, axis=0).reshape(d, 1)
        do = (dY @ params["Wo"]).reshape(m, T, h, d_k).transpose(0, 2, 1, 3)
        dq, dk, dv = _attend_backward(cache["q"], cache["k"], cache["v"], cache["P"],
                                      1 / math.sqrt(d_k), do)
        dQKV = jnp.stack([dq, dk, dv], axis=2).transpose(0, 3, 2, 1, 4).reshape(m * T, 3 * d)
        W3 = jnp.concatenate([params["Wq"], params["Wk"], params["Wv"]])
        dW3 = _transposed(dQKV) @ cache["X"]
        db3 = jnp.sum(dQKV, axis=0).reshape(3 * d, 1)
        dx = _rows_back(dQKV @ W3, T, m)
        grads = {"Wq": dW3[:d], "Wk": dW3[d:2 * d], "Wv": dW3[2 * d:], "Wo": dWo,
                 "bq": db3[:d], "bk": db3[d:2 * d], "bv": db3[2 * d:], "bo": dbo}
        return dx, {name: grads[name] for name in params}


# --- the transformer block -----------------------------------------------------------------------
ATTENTION_KEYS = ("Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv", "bo")


@dataclass(frozen=True)
class TransformerBlock:
    """The pre-LayerNorm transformer block (GPT-2's), `(d, T, m)` -> `(d, T, m)`:

        h = x + MHA(LN1(x))
        y = h + W2 gelu(W1 LN2(h) + b1) + b2          (W1, W2 act on every position)

    Arguments:
        heads: attention heads (`d` divisible by it); mlp_width: the hidden width of the MLP;
        causal: causal self-attention (query t sees keys 0 … t).

    Parameters (one flat dict): `ln1_gamma ln1_beta (d, 1)`, `Wq Wk Wv Wo (d, d)`,
    `bq bk bv bo (d, 1)` (as `MultiHeadAttention`), `ln2_gamma ln2_beta (d, 1)`,
    `W1 (mlp_width, d)` (He), `b1 (mlp_width, 1)`, `W2 (d, mlp_width)` (Glorot), `b2 (d, 1)`.
    Both layer norms use eps = 1e-5.
    """

    heads: int
    mlp_width: int
    causal: bool = False

    def __post_init__(self):
        check_positive_int("TransformerBlock", "heads", self.heads)
        check_positive_int("TransformerBlock", "mlp_width", self.mlp_width)
        if not isinstance(self.causal, bool):
            raise ValueError(f"TransformerBlock: causal must be a bool, got {self.causal!r}")

    @property
    def attention(self) -> MultiHeadAttention:
        return MultiHeadAttention(self.heads, self.causal)

    def init(self, key, in_shape, dtype=jnp.float32):
        """`(params, (d, T))` for `in_shape = (d, T)`; the keys are listed in the class doc."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 2:
            raise ValueError(f"TransformerBlock expects input of shape (d, T, m): in_shape "
                             f"(m left out) must be (d, T), got {in_shape}")
        d = in_shape[0]
        _check_d("TransformerBlock", d, self.heads)
        k_att, k1, k2 = jax.random.split(key, 3)
        att, _ = self.attention.init(k_att, in_shape, dtype)
        ones, zeros = jnp.ones((d, 1), dtype), jnp.zeros((d, 1), dtype)
        params = {"ln1_gamma": ones, "ln1_beta": zeros, **att,
                  "ln2_gamma": ones, "ln2_beta": zeros,
                  "W1": initializers.he(k1, self.mlp_width, d, dtype),
                  "b1": jnp.zeros((self.mlp_width, 1), dtype),
                  "W2": initializers.glorot(k2, d, self.mlp_width, dtype), "b2": zeros}
        return params, in_shape

    def forward(self, params, x):
        """`(y, cache)`; `x (d, T, m)` -> `y (d, T, m)`."""
        d = params["ln1_gamma"].shape[0]
        if jnp.ndim(x) != 3 or x.shape[0] != d:
            raise ValueError(f"TransformerBlock expects input of shape ({d}, T, m), got shape "
                             f"{jnp.shape(x)}")
        a, xhat1, rstd1 = layernorm_forward(params["ln1_gamma"], params["ln1_beta"], x, LN_EPS)
        att, att_cache = self.attention.forward({k: params[k] for k in ATTENTION_KEYS}, a)
        h = x + att
        b, xhat2, rstd2 = layernorm_forward(params["ln2_gamma"], params["ln2_beta"], h, LN_EPS)
        Z1 = linear_forward(params["W1"], params["b1"], b)
        A1 = activations.gelu(Z1)
        y = h + linear_forward(params["W2"], params["b2"], A1)
        return y, {"xhat1": xhat1, "rstd1": rstd1, "att": att_cache, "xhat2": xhat2,
                   "rstd2": rstd2, "b": b, "Z1": Z1, "A1": A1}

    def backward(self, params, cache, dy):
        """`(dx, grads)` from `dy (d, T, m)`; each residual adds its gradient:

            dA1 = W2ᵀ dy,  dW2 = Σ dy A1ᵀ,  db2 = Σ dy
            dZ1 = dA1 ⊙ gelu'(Z1),  dW1 = Σ dZ1 bᵀ,  db1 = Σ dZ1,  db = W1ᵀ dZ1
            dh  = dy + LN2ᵀ(db)                  (the residual h -> y adds dy)
            da, MHA grads = MHAᵀ(dh)
            dx  = dh + LN1ᵀ(da)                  (the residual x -> h adds dh)
        """
        dW2, db2, dA1 = linear_backward(dy, cache["A1"], params["W2"])
        dZ1 = dA1 * activations.gelu_prime(cache["Z1"])
        dW1, db1, db = linear_backward(dZ1, cache["b"], params["W1"])
        dh2, dg2, dbeta2 = layernorm_backward(params["ln2_gamma"], cache["xhat2"],
                                              cache["rstd2"], db)
        dh = dy + dh2
        da, att_grads = self.attention.backward({k: params[k] for k in ATTENTION_KEYS},
                                                cache["att"], dh)
        dx1, dg1, dbeta1 = layernorm_backward(params["ln1_gamma"], cache["xhat1"],
                                              cache["rstd1"], da)
        grads = {"ln1_gamma": dg1, "ln1_beta": dbeta1, **att_grads, "ln2_gamma": dg2,
                 "ln2_beta": dbeta2, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
        return dh + dx1, {name: grads[name] for name in params}
