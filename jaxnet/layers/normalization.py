"""Layer normalization over the features (axis 0), forward beside backward, as llm.c pairs them.

    μ = mean_i x_i,   σ = √(mean_i (x_i − μ)² + eps),   x̂ = (x − μ)/σ,   y = γ ⊙ x̂ + β

at every position of every example (`x (d, ..., m)`; the mean runs over the `d` features only,
with the population variance).  The backward pass, with `dx̂ = γ ⊙ dy`:

    dγ = Σ_positions dy ⊙ x̂          (d, 1)
    dβ = Σ_positions dy              (d, 1)
    dx = (1/σ) (dx̂ − mean_i dx̂ − x̂ ⊙ mean_i (dx̂ ⊙ x̂))

(the three terms: the direct path through x̂, the path through μ, the path through σ; the
derivation is in `docs/layers/attention.md`).  The cache holds what the backward reuses, the
mean-free `x̂` and `1/σ`, so the backward needs no second pass over `x`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp


def _column(v, ndim):
    """`(d, 1)` -> `(d, 1, ..., 1)` with `ndim` axes, to broadcast over `(d, ..., m)`."""
    return v.reshape((v.shape[0],) + (1,) * (ndim - 1))


def layernorm_forward(gamma, beta, x, eps):
    """`(y, x̂, 1/σ)` for `x (d, ..., m)`, `gamma`, `beta` `(d, 1)`; `1/σ` is `(1, ..., m)`."""
    mu = jnp.mean(x, axis=0, keepdims=True)
    xc = x - mu
    rstd = 1 / jnp.sqrt(jnp.mean(xc * xc, axis=0, keepdims=True) + eps)
    xhat = xc * rstd
    y = _column(gamma, x.ndim) * xhat + _column(beta, x.ndim)
    return y, xhat, rstd


def layernorm_backward(gamma, xhat, rstd, dy):
    """`(dx, dγ, dβ)`: `dx = (1/σ)(dx̂ − mean dx̂ − x̂ ⊙ mean(dx̂ ⊙ x̂))`, `dx̂ = γ ⊙ dy`,
    `dγ = Σ dy ⊙ x̂`, `dβ = Σ dy` over every axis but the first (shapes `(d, 1)`)."""
    d = xhat.shape[0]
    dxhat = _column(gamma, dy.ndim) * dy
    mean_dxhat = jnp.mean(dxhat, axis=0, keepdims=True)
    mean_dxhat_xhat = jnp.mean(dxhat * xhat, axis=0, keepdims=True)
    dx = rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)
    rest = tuple(range(1, dy.ndim))
    dgamma = jnp.sum(dy * xhat, axis=rest).reshape(d, 1)
    dbeta = jnp.sum(dy, axis=rest).reshape(d, 1)
    return dx, dgamma, dbeta


@dataclass(frozen=True)
class LayerNorm:
    """`y = γ ⊙ (x − μ)/σ + β`, normalizing the features (axis 0) at every position and example.

    Arguments:
        eps: added to the (population) variance, default `1e-5` as PyTorch's `nn.LayerNorm`.

    Parameters: `gamma (d, 1)` (ones), `beta (d, 1)` (zeros).  Input `(d, ..., m)`, at least
    `(d, m)`; output the same shape.
    """

    eps: float = 1e-5

    def __post_init__(self):
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) \
                or not self.eps > 0:
            raise ValueError(f"LayerNorm: eps must be a positive number, got {self.eps!r}")
        object.__setattr__(self, "eps", float(self.eps))

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({"gamma": (d, 1), "beta": (d, 1)}, in_shape)` for `in_shape = (d, ...)`."""
        del key
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("LayerNorm expects input of shape (d, ..., m): in_shape (m left "
                             "out) needs at least the feature axis d, got ()")
        d = in_shape[0]
        return {"gamma": jnp.ones((d, 1), dtype), "beta": jnp.zeros((d, 1), dtype)}, in_shape

    def forward(self, params, x):
        """`(y, cache)`; `x (d, ..., m)` -> `y (d, ..., m)`; cache: `xhat` (x̂), `rstd` (1/σ)."""
        d = params["gamma"].shape[0]
        if jnp.ndim(x) < 2 or x.shape[0] != d:
            raise ValueError(f"LayerNorm expects input of shape ({d}, ..., m), got shape "
                             f"{jnp.shape(x)}")
        y, xhat, rstd = layernorm_forward(params["gamma"], params["beta"], x, self.eps)
        return y, {"xhat": xhat, "rstd": rstd}

    def backward(self, params, cache, dy):
        """`(dx, {"gamma": dγ, "beta": dβ})` from `dy (d, ..., m)` (no 1/m)."""
        dx, dgamma, dbeta = layernorm_backward(params["gamma"], cache["xhat"], cache["rstd"], dy)
        return dx, {"gamma": dgamma, "beta": dbeta}
