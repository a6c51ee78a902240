"""The character corpus and its baselines, against counts done by hand on tiny texts."""

import math

import jax
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import text


def test_corpus_from_python_itself():
    corpus = text.load_corpus()
    assert len(corpus.train) + len(corpus.val) > 400_000
    assert corpus.decode(corpus.encode("def f(x):")) == "def f(x):"
    assert corpus.train.dtype == np.int32 and corpus.V == len(set(corpus.vocab))


def test_windows_are_shifted_by_one():
    corpus = text.load_corpus("abcdefghij" * 3, val_fraction=0.2)
    X, Y = text.windows(corpus.train, 5, 4, key=jax.random.key(0))
    assert X.shape == Y.shape == (5, 4)
    for i in range(4):
        x, y = corpus.decode(X[:, i]), corpus.decode(Y[:, i])
        assert x[1:] == y[:-1] and x in "abcdefghij" * 3
    with pytest.raises(ValueError, match="fewer than T"):
        text.windows(corpus.train[:3], 5, 1, key=jax.random.key(0))


def test_baselines_by_hand():
    # train "aab": unigram counts a:2 b:1, +1 smoothing -> p(a) = 3/5, p(b) = 2/5
    assert text.unigram_bits([0, 0, 1], [0, 1], 2) == pytest.approx(
        -(math.log2(3 / 5) + math.log2(2 / 5)) / 2)
    # bigrams of "aab": aa, ab; +1 -> p(b|a) = 2/4, p(a|b) = 1/2
    assert text.bigram_bits([0, 0, 1], [0, 1, 0], 2) == pytest.approx(
        -(math.log2(2 / 4) + math.log2(1 / 2)) / 2)


def test_sample_extends_the_prompt():
    corpus = text.load_corpus("hello world " * 5)
    net = jn.Sequential([jn.Embedding(corpus.V, 8), jn.Dense(corpus.V, "softmax")],
                        input_shape=(6,))
    params = net.init(jax.random.key(0))
    out = text.sample(net, params, corpus, "hel", 10, key=jax.random.key(1))
    assert out.startswith("hel") and len(out) == 13
    with pytest.raises(ValueError, match="not in the vocabulary"):
        text.sample(net, params, corpus, "xyz", 1, key=jax.random.key(1))
