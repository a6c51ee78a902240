"""Character-level text that ships with Python itself, and the baselines a language model must beat.

The corpus is the help-topic texts of the standard library (`pydoc_data.topics`, about 465k
characters): nothing is downloaded.  Characters are mapped to ids `0 … V−1`; a model reads a
window of `T` ids `(T, m)` and predicts, at every position, the next character: targets are the
same windows shifted by one.  Quality is measured in **bits per character** (the mean negative
log₂-likelihood of the held-out text), against a unigram and a bigram model counted on the
training text (add-one smoothing).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Corpus(NamedTuple):
    """A text split into training and held-out ids, with its vocabulary."""

    train: np.ndarray  # (n_train,) int32 ids
    val: np.ndarray  # (n_val,) int32 ids
    vocab: str  # vocab[i] is the character with id i

    @property
    def V(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.vocab)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return np.array([index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).ravel())


def python_help_text() -> str:
    """The standard library's help-topic texts, in sorted topic order (~465k characters)."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))


def load_corpus(text: str | None = None, *, val_fraction: float = 0.1) -> Corpus:
    """Split `text` (default `python_help_text()`) into the first `1 − val_fraction` for
    training and the rest held out; the vocabulary is every character of the whole text."""
    text = python_help_text() if text is None else text
    if not isinstance(text, str) or len(text) < 4:
        raise ValueError(f"text must be a str of at least 4 characters, got {text!r:.40}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    all_ids = np.fromiter((index[c] for c in text), np.int32, len(text))
    cut = int(len(text) * (1 - val_fraction))
    return Corpus(all_ids[:cut], all_ids[cut:], vocab)


def windows(ids, T: int, m: int, *, key) -> tuple[jax.Array, jax.Array]:
    """`m` random windows of length `T`: inputs `(T, m)` and next-character targets `(T, m)`."""
    ids = jnp.asarray(ids)
    if T < 1 or m < 1:
        raise ValueError(f"T and m must be >= 1, got T={T}, m={m}")
    if ids.shape[0] < T + 1:
        raise ValueError(f"the text has {ids.shape[0]} ids, fewer than T + 1 = {T + 1}")
    starts = jax.random.randint(key, (m,), 0, ids.shape[0] - T)
    idx = starts[None, :] + jnp.arange(T)[:, None]  # (T, m)
    return ids[idx], ids[idx + 1]


def unigram_bits(train, val, V: int) -> float:
    """Bits per character of `val` under add-one-smoothed character frequencies of `train`."""
    counts = np.bincount(np.asarray(train), minlength=V) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log2(p[np.asarray(val)])))


def bigram_bits(train, val, V: int) -> float:
    """Bits per character of `val[1:]` given the previous character (add-one smoothing)."""
    train, val = np.asarray(train), np.asarray(val)
    counts = np.ones((V, V))
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log2(p[val[:-1], val[1:]])))


def bits_per_char(cost_nats: float) -> float:
    """A mean cross-entropy in nats as bits per character."""
    return cost_nats / math.log(2)


def sample(net, params, corpus: Corpus, prompt: str, n: int, *, key, temperature: float = 1.0):
    """`prompt` followed by `n` characters drawn one at a time from a next-character model.

    `net` maps ids `(T, m)` to per-position probabilities `(V, T, m)`; each step feeds the last
    `T` characters (a shorter context is left-padded with spaces, or the first character of the
    vocabulary) and draws from the last position's distribution sharpened by `temperature`.
    """
    T = net.input_shape[0]
    if not n >= 0 or not temperature > 0:
        raise ValueError(f"n must be >= 0 and temperature > 0, got n={n}, "
                         f"temperature={temperature}")
    ids = list(corpus.encode(prompt))
    pad = corpus.vocab.index(" ") if " " in corpus.vocab else 0

    @jax.jit
    def next_id(params, window, key):
        A = net._forward(params, window[:, None])[1]  # (V, T, 1)
        logits = jnp.log(jnp.maximum(A[:, -1, 0], 1e-30)) / temperature
        return jax.random.categorical(key, logits)

    for k in jax.random.split(key, n):
        window = ([pad] * T + ids)[-T:]
        ids.append(int(next_id(params, jnp.asarray(window, jnp.int32), k)))
    return corpus.decode(ids)
