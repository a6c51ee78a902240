"""Ready-made architectures: the networks the experiments, benchmarks and the command line share.

Each returns a `Sequential` (an architecture, no arrays); `net.init(key)` gives its parameters.
"""

from __future__ import annotations

from . import layers as L
from .sequential import Sequential


def digits_cnn(n_classes: int = 10, widths: tuple[int, int] = (16, 32)) -> Sequential:
    """The digits CNN: `(1, 8, 8, m)` → conv 3×3 (same, ReLU) → max-pool 2 → conv 3×3 (same,
    ReLU) → max-pool 2 → flatten → dense softmax `(n_classes, m)`."""
    f1, f2 = widths
    return Sequential((L.Conv2D(f1, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                       L.Conv2D(f2, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                       L.Flatten(), L.Dense(n_classes, "softmax")), input_shape=(1, 8, 8))


def char_lstm(vocab: int, T: int, hidden: int = 128, d: int = 32, layers: int = 1) -> Sequential:
    """A character model: ids `(T, m)` → embedding `d` → `layers` LSTMs of `hidden` units
    (every state) → dense softmax over the vocabulary at every position `(vocab, T, m)`."""
    stack = [L.Embedding(vocab, d)]
    stack += [L.LSTM(hidden, return_sequences=True) for _ in range(layers)]
    return Sequential((*stack, L.Dense(vocab, "softmax")), input_shape=(T,))


def char_transformer(vocab: int, T: int, d: int = 64, heads: int = 4, blocks: int = 2,
                     mlp_width: int | None = None) -> Sequential:
    """A decoder-only character model: ids `(T, m)` → embedding `d` + learned positions →
    `blocks` causal pre-LayerNorm transformer blocks → LayerNorm → dense softmax
    `(vocab, T, m)`."""
    mlp_width = 4 * d if mlp_width is None else mlp_width
    stack = [L.Embedding(vocab, d), L.PositionalEmbedding(T)]
    stack += [L.TransformerBlock(heads, mlp_width, causal=True) for _ in range(blocks)]
    return Sequential((*stack, L.LayerNorm(), L.Dense(vocab, "softmax")), input_shape=(T,))
