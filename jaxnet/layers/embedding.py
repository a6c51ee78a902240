"""Token and position embeddings, forward beside backward.

Token ids are integers `(T, m)` (positions, examples last); a sequence of vectors is `(d, T, m)`.

    Embedding:            y[:, t, i] = E[:, ids[t, i]]                E (d, vocab)
                          dE[:, v]   = Σ_{(t, i): ids[t, i] = v} dy[:, t, i]   (a scatter-add)
    PositionalEmbedding:  y[:, t, i] = x[:, t, i] + P[:, t]           P (d, max_len)
                          dx = dy,   dP[:, t] = Σ_i dy[:, t, i] for t < T, 0 beyond

The ids are not differentiable: `Embedding.backward` returns `dx = None`.  The sinusoidal
position table (Vaswani et al. 2017) is fixed, `P[2j, t] = sin(t / 10000^(2j/d))`,
`P[2j+1, t] = cos(t / 10000^(2j/d))`, and has no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..validation import concrete
from .base import check_positive_int


@dataclass(frozen=True)
class Embedding:
    """`ids (T, m)` integers in `[0, vocab)` -> `(d, T, m)`: column `E[:, v]` embeds token `v`.

    Arguments:
        vocab: number of tokens.
        d: embedding size.

    Parameters: `E (d, vocab)`, drawn from `N(0, 1)` as PyTorch's `nn.Embedding`.
    """

    vocab: int
    d: int

    def __post_init__(self):
        check_positive_int("Embedding", "vocab", self.vocab)
        check_positive_int("Embedding", "d", self.d)

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({"E": (d, vocab)}, (d, T))` for `in_shape = (T,)`."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 1:
            raise ValueError(f"Embedding expects token ids of shape (T, m): in_shape (m left "
                             f"out) must be (T,), got {in_shape}")
        E = jax.random.normal(key, (self.d, self.vocab), dtype)
        return {"E": E}, (self.d, *in_shape)

    def forward(self, params, ids):
        """`(y, cache)`; `ids (T, m)` ints -> `y (d, T, m)`; cache: `ids`.

        Ids outside `[0, vocab)` raise a ValueError when they are concrete (under `jit` they
        cannot be inspected; the gather then fills with NaN)."""
        if jnp.ndim(ids) != 2:
            raise ValueError(f"Embedding expects token ids of shape (T, m), got shape "
                             f"{jnp.shape(ids)}")
        if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
            raise ValueError(f"Embedding expects integer token ids, got dtype "
                             f"{jnp.result_type(ids)}")
        E = params["E"]
        if E.shape[1] != self.vocab:
            raise ValueError(f"Embedding({self.vocab}, {self.d}) expects E of shape "
                             f"({self.d}, {self.vocab}), got {E.shape}")
        values = concrete(ids)
        if values is not None and values.size and (values.min() < 0
                                                    or values.max() >= self.vocab):
            bad = values[(values < 0) | (values >= self.vocab)]
            raise ValueError(f"Embedding: token ids must lie in [0, {self.vocab}), got "
                             f"{bad.size} outside it (e.g. {int(bad.flat[0])})")
        y = jnp.take(E, ids, axis=1, mode="fill", fill_value=jnp.nan)
        return y, {"ids": ids}

    def backward(self, params, cache, dy):
        """`(None, {"E": dE})`: `dE[:, v] = Σ dy[:, t, i]` over the positions holding token
        `v` (a scatter-add; no 1/m)."""
        E = params["E"]
        dE = jnp.zeros(E.shape, dy.dtype).at[:, cache["ids"]].add(dy, mode="drop")
        return None, {"E": dE}


def sinusoidal_table(d: int, T: int, dtype=jnp.float32):
    """`P (d, T)`: `P[2j, t] = sin(t ω_j)`, `P[2j+1, t] = cos(t ω_j)`, `ω_j = 10000^(−2j/d)`."""
    t = np.arange(T, dtype=np.float64)[None, :]
    j = np.arange(d)[:, None] // 2
    angle = t / 10000.0 ** (2 * j / d)
    table = np.where(np.arange(d)[:, None] % 2 == 0, np.sin(angle), np.cos(angle))
    return jnp.asarray(table, dtype)


KINDS = ("learned", "sinusoidal")


@dataclass(frozen=True)
class PositionalEmbedding:
    """`y = x + P[:, :T]` for `x (d, T, m)`, `T ≤ max_len`.

    Arguments:
        max_len: the longest sequence the table covers.
        kind: ``"learned"`` (parameter `P (d, max_len)`, drawn from `N(0, 1)`) or
            ``"sinusoidal"`` (Vaswani's fixed table; no parameters).
    """

    max_len: int
    kind: str = "learned"

    def __post_init__(self):
        check_positive_int("PositionalEmbedding", "max_len", self.max_len)
        if self.kind not in KINDS:
            raise ValueError(f"PositionalEmbedding: kind must be one of {list(KINDS)}, got "
                             f"{self.kind!r}")

    def _check_length(self, T):
        if T > self.max_len:
            raise ValueError(f"PositionalEmbedding(max_len={self.max_len}) got a sequence of "
                             f"length T={T} > max_len")

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({"P": (d, max_len)} or {}, in_shape)` for `in_shape = (d, T)`."""
        in_shape = tuple(in_shape)
        if len(in_shape) != 2:
            raise ValueError(f"PositionalEmbedding expects input of shape (d, T, m): in_shape "
                             f"(m left out) must be (d, T), got {in_shape}")
        d, T = in_shape
        self._check_length(T)
        if self.kind == "sinusoidal":
            return {}, in_shape
        return {"P": jax.random.normal(key, (d, self.max_len), dtype)}, in_shape

    def forward(self, params, x):
        """`(y, cache)`; `x (d, T, m)` -> `y (d, T, m)`; the cache is empty."""
        if jnp.ndim(x) != 3:
            raise ValueError(f"PositionalEmbedding expects input of shape (d, T, m), got shape "
                             f"{jnp.shape(x)}")
        d, T, _ = x.shape
        self._check_length(T)
        if self.kind == "sinusoidal":
            P = sinusoidal_table(d, T, x.dtype)
        else:
            if params["P"].shape != (d, self.max_len):
                raise ValueError(f"PositionalEmbedding expects P of shape ({d}, "
                                 f"{self.max_len}) for input {x.shape}, got {params['P'].shape}")
            P = params["P"][:, :T]
        return x + P[:, :, None], {}

    def backward(self, params, cache, dy):
        """`(dx, grads)`: `dx = dy`; learned: `dP[:, t] = Σ_i dy[:, t, i]` for `t < T`, zero
        for the unused columns `t ≥ T` (no 1/m)."""
        del cache
        if self.kind == "sinusoidal":
            return dy, {}
        T = dy.shape[1]
        dP = jnp.pad(jnp.sum(dy, axis=2), ((0, 0), (0, self.max_len - T)))
        return dy, {"P": dP.astype(params["P"].dtype)}
