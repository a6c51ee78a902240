"""Attention, multi-head attention, layer norm, embeddings, GELU and the transformer block:
forward against numpy loops written here, every hand-written backward against `jax.vjp`
(float64, <= 1e-10 relative per leaf), the three-way checker on a tiny decoder chained by hand,
planted bugs caught with the leaf named, bad input."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

import jaxnet as jn
import jaxnet.layers.attention as attention_module
from jaxnet import activations
from jaxnet.layers.attention import (
    MultiHeadAttention,
    TransformerBlock,
    scaled_dot_product_attention,
    scaled_dot_product_attention_backward,
    scaled_dot_product_attention_forward,
)
from jaxnet.layers.dense import Dense
from jaxnet.layers.embedding import Embedding, PositionalEmbedding
from jaxnet.layers.normalization import LayerNorm

TOL = 1e-10


def rel(a, b, floor=0.0):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), floor)
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def assert_tree_close(manual, auto, tol=TOL):
    """Structure first, then each leaf.  A leaf whose gradient is zero in exact arithmetic
    (`bk`: a shift of every score of a query leaves its softmax unchanged) holds round-off
    only; it is compared against 1e-3 of the largest leaf's norm instead of its own."""
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    floor = 1e-3 * max([float(np.linalg.norm(np.asarray(x))) for x in jax.tree.leaves(auto)],
                       default=0.0)
    for path, a, b in zip(jax.tree_util.tree_flatten_with_path(auto)[0],
                          jax.tree.leaves(manual), jax.tree.leaves(auto)):
        r = rel(a, b, floor)
        assert r <= tol, (jax.tree_util.keystr(path[0]), r)


def rng(seed):
    return np.random.default_rng(seed)


def make_params(layer, in_shape, seed):
    """float64 params of `layer` for `in_shape` (shapes from `init` without running it; values
    from numpy: no compilation per shape): weights N(0, 1/fan_in), gammas 1 + N(0, 0.09),
    biases, betas and embeddings N(0, 0.09); inside enable_x64."""
    box = {}

    def init():
        params, box["out"] = layer.init(jax.random.key(0), in_shape, jnp.float64)
        return params

    shapes, out_shape = jax.eval_shape(init), box["out"]
    r = rng(seed)
    params = {}
    for name, s in shapes.items():
        z = r.standard_normal(s.shape)
        if name.startswith("W"):
            z = z / math.sqrt(s.shape[1])
        elif name.endswith("gamma"):
            z = 1 + 0.3 * z
        else:
            z = 0.3 * z
        params[name] = jnp.asarray(z, jnp.float64)
    return params, tuple(out_shape)


@partial(jax.jit, static_argnums=0)
def apply(layer, params, x):
    return layer.forward(params, x)[0]


@partial(jax.jit, static_argnums=0)
def vjp_pair(layer, params, x, dy):
    """`(manual (dx, grads), autodiff (dx, grads))` for one layer, compiled once per shape."""
    y, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dy)
    _, vjp = jax.vjp(lambda p, x: layer.forward(p, x)[0], params, x)
    g_auto, dx_auto = vjp(dy)
    return (dx, grads), (dx_auto, g_auto)


def check_layer(layer, in_shape, m, seed=0):
    """The layer's backward equals jax.vjp of its forward, float64, every leaf and dx."""
    with jax.enable_x64(True):
        params, out_shape = make_params(layer, in_shape, seed)
        x = jnp.asarray(rng(seed + 1).standard_normal((*in_shape, m)))
        dy = jnp.asarray(rng(seed + 2).standard_normal((*out_shape, m)))
        (dx, grads), (dx_auto, g_auto) = vjp_pair(layer, params, x, dy)
        assert_tree_close(grads, g_auto)
        assert rel(dx, dx_auto) <= TOL
        return params, grads


# --- numpy references: direct loops over examples, queries and keys ---------------------------
def np_attention(Q, K, V, mask=None):
    """`(out, weights)` one example and one query at a time; masked keys are left out."""
    Q, K, V = (np.asarray(a, np.float64) for a in (Q, K, V))
    d_k, T_q, m = Q.shape
    T_k = K.shape[1]
    out, W = np.zeros((V.shape[0], T_q, m)), np.zeros((T_k, T_q, m))
    for i in range(m):
        for q in range(T_q):
            keys = [k for k in range(T_k) if mask is None or mask[k, q, i]]
            if not keys:
                continue
            s = [float(np.dot(K[:, k, i], Q[:, q, i])) / math.sqrt(d_k) for k in keys]
            e = [math.exp(v - max(s)) for v in s]
            for k, ek in zip(keys, e):
                W[k, q, i] = ek / sum(e)
                out[:, q, i] += W[k, q, i] * V[:, k, i]
    return out, W


def np_layernorm(x, gamma, beta, eps=1e-5):
    x = np.asarray(x, np.float64)
    y = np.zeros_like(x)
    for idx in np.ndindex(*x.shape[1:]):
        col = x[(slice(None), *idx)]
        mu = col.mean()
        var = ((col - mu) ** 2).mean()
        y[(slice(None), *idx)] = np.asarray(gamma)[:, 0] * (col - mu) / math.sqrt(var + eps) \
            + np.asarray(beta)[:, 0]
    return y


def np_mha(p, x, heads, causal):
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    d, T, m = x.shape
    d_k = d // heads
    proj = {n: np.einsum("ed,dtm->etm", p["W" + n], x) + p["b" + n][:, :, None] for n in "qkv"}
    mask = None
    if causal:
        mask = np.array([[[k <= q] * m for q in range(T)] for k in range(T)])
    heads_out = [np_attention(*(proj[n][h * d_k:(h + 1) * d_k] for n in "qkv"), mask)[0]
                 for h in range(heads)]
    O = np.concatenate(heads_out, axis=0)
    return np.einsum("ed,dtm->etm", p["Wo"], O) + p["bo"][:, :, None]


def np_gelu(z):
    return np.vectorize(lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))))(z)


def np_block(p, x, heads, causal):
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    h = x + np_mha(p, np_layernorm(x, p["ln1_gamma"], p["ln1_beta"]), heads, causal)
    b = np_layernorm(h, p["ln2_gamma"], p["ln2_beta"])
    z1 = np.einsum("fd,dtm->ftm", p["W1"], b) + p["b1"][:, :, None]
    return h + np.einsum("df,ftm->dtm", p["W2"], np_gelu(z1)) + p["b2"][:, :, None]


# --- scaled dot-product attention -----------------------------------------------------------------
def qkv(seed, d_k=3, d_v=2, T_q=4, T_k=5, m=2):
    r = rng(seed)
    return (jnp.asarray(r.standard_normal(s)) for s in
            ((d_k, T_q, m), (d_k, T_k, m), (d_v, T_k, m)))


def test_attention_forward_matches_loops_with_and_without_mask():
    with jax.enable_x64(True):
        Q, K, V = qkv(0)
        mask = jnp.asarray(rng(1).random((5, 4, 2)) < 0.6).at[:, 1, 0].set(False)  # one empty
        mask = mask.at[0, :, :].set(True).at[:, 1, 0].set(False)
        for msk in (None, mask):
            out, W = scaled_dot_product_attention(Q, K, V, msk)
            ref_out, ref_W = np_attention(Q, K, V, None if msk is None else np.asarray(msk))
            assert out.shape == (2, 4, 2) and W.shape == (5, 4, 2)
            np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(W, ref_W, rtol=1e-12, atol=1e-13)
        # The query with every key masked: zero weights and output, no NaN.
        assert np.all(np.asarray(W)[:, 1, 0] == 0) and np.all(np.asarray(out)[:, 1, 0] == 0)
        np.testing.assert_allclose(np.asarray(W).sum(0)[[0, 2, 3]], 1, rtol=1e-12)


def test_attention_mask_without_examples_axis_is_shared_and_causal_matches_loops():
    with jax.enable_x64(True):
        Q, K, V = qkv(2, T_q=5, T_k=5, m=3)
        causal = np.tril(np.ones((5, 5), bool)).T  # [k, q]: key k allowed for query q >= k
        out, W = scaled_dot_product_attention(Q, K, V, jnp.asarray(causal))
        ref_out, ref_W = np_attention(Q, K, V, np.repeat(causal[:, :, None], 3, axis=2))
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(W, ref_W, rtol=1e-12, atol=1e-13)
        assert np.all(np.asarray(W)[1:, 0, :] == 0)  # query 0 sees key 0 only


@jax.jit
def attention_vjp_pair(Q, K, V, mask, d_out):
    _, cache = scaled_dot_product_attention_forward(Q, K, V, mask)
    manual = scaled_dot_product_attention_backward(cache, d_out)
    _, vjp = jax.vjp(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], Q, K, V)
    return manual, vjp(d_out)


def test_attention_backward_matches_vjp_through_mask_and_empty_rows():
    with jax.enable_x64(True):
        Q, K, V = qkv(3, d_k=4, d_v=3, T_q=6, T_k=7, m=3)
        mask = jnp.asarray(rng(4).random((7, 6, 3)) < 0.5).at[:, 2, 1].set(False)
        d_out = jnp.asarray(rng(5).standard_normal((3, 6, 3)))
        for msk in (None, mask):
            manual, auto = attention_vjp_pair(Q, K, V, msk, d_out)
            for name, a, b in zip("QKV", manual, auto):
                assert np.all(np.isfinite(b)), name
                assert rel(a, b) <= TOL, (name, rel(a, b))
        assert np.all(np.asarray(manual[0])[:, 2, 1] == 0)  # the empty query gets no gradient


# --- multi-head attention -------------------------------------------------------------------------
@pytest.mark.parametrize("heads,causal", [(1, False), (2, True), (4, False)])
def test_mha_forward_matches_loops(heads, causal):
    with jax.enable_x64(True):
        layer = MultiHeadAttention(heads, causal)
        params, _ = make_params(layer, (8, 5), 1)
        x = jnp.asarray(rng(2).standard_normal((8, 5, 2)))
        y = apply(layer, params, x)
        np.testing.assert_allclose(y, np_mha(params, x, heads, causal), rtol=1e-11, atol=1e-12)


def test_mha_heads_use_contiguous_row_blocks():
    """Changing row 2 of Wq (head 1 of 2 when d = 4) changes nothing of head 0's output."""
    with jax.enable_x64(True):
        layer = MultiHeadAttention(2)
        p, _ = make_params(layer, (4, 3), 3)
        p["Wo"] = jnp.eye(4)
        p["bo"] = jnp.zeros((4, 1))
        x = jnp.asarray(rng(4).standard_normal((4, 3, 2)))
        y0 = apply(layer, p, x)
        y1 = apply(layer, {**p, "Wq": p["Wq"].at[2].add(1.0)}, x)
        np.testing.assert_array_equal(y0[:2], y1[:2])
        assert not np.allclose(y0[2:], y1[2:])


# A handful of shapes across the ranges: d 4..64, T 1..64, heads 1, 2, 4, causal or not.
MHA_SHAPES = [(4, 1, 2, 1, False), (4, 3, 1, 4, True), (8, 5, 3, 2, True),
              (16, 64, 2, 4, True), (64, 9, 2, 4, False), (64, 2, 1, 1, True)]


@pytest.mark.parametrize("d,T,m,heads,causal", MHA_SHAPES,
                         ids=[f"d{d}-T{T}-m{m}-h{h}-{'causal' if c else 'full'}"
                              for d, T, m, h, c in MHA_SHAPES])
def test_mha_backward_matches_vjp(d, T, m, heads, causal):
    _, grads = check_layer(MultiHeadAttention(heads, causal), (d, T), m)
    # dbk is zero in exact arithmetic: round-off only.
    scale = max(float(np.linalg.norm(g)) for g in grads.values())
    assert float(np.linalg.norm(grads["bk"])) <= 1e-12 * scale


@settings(max_examples=8, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), d_k=st.integers(1, 4), T=st.integers(1, 7),
       m=st.integers(1, 3), causal=st.booleans())
def test_mha_backward_matches_vjp_hypothesis(heads, d_k, T, m, causal):
    check_layer(MultiHeadAttention(heads, causal), (heads * d_k, T), m)


# --- layer norm -----------------------------------------------------------------------------------
def test_layernorm_forward_matches_loops_and_normalizes_features():
    with jax.enable_x64(True):
        layer = LayerNorm()
        for shape in ((6, 4, 3), (5, 7)):
            params, _ = make_params(layer, shape[:-1], 0)
            x = jnp.asarray(3 + 2 * rng(1).standard_normal(shape))
            y = apply(layer, params, x)
            ref = np_layernorm(x, params["gamma"], params["beta"])
            np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
        plain, _ = LayerNorm(eps=1e-12).forward({"gamma": jnp.ones((5, 1)),
                                                 "beta": jnp.zeros((5, 1))}, x)
        np.testing.assert_allclose(np.mean(plain, 0), 0, atol=1e-12)
        np.testing.assert_allclose(np.mean(np.square(plain), 0), 1, rtol=1e-9)  # population var


@pytest.mark.parametrize("in_shape,m", [((4,), 3), ((16, 9), 2), ((64, 1), 4)])
def test_layernorm_backward_matches_vjp(in_shape, m):
    check_layer(LayerNorm(), in_shape, m)


# --- embeddings -----------------------------------------------------------------------------------
def test_embedding_forward_and_scatter_add_backward():
    with jax.enable_x64(True):
        layer = Embedding(7, 3)
        params, out_shape = layer.init(jax.random.key(0), (4,), jnp.float64)
        assert params["E"].shape == (3, 7) and out_shape == (3, 4)
        ids = jnp.asarray([[0, 6, 2], [6, 6, 1], [3, 0, 0], [5, 2, 6]])
        y, cache = layer.forward(params, ids)
        E = np.asarray(params["E"])
        for t in range(4):
            for i in range(3):
                np.testing.assert_array_equal(y[:, t, i], E[:, int(ids[t, i])])
        dy = jnp.asarray(rng(0).standard_normal((3, 4, 3)))
        dx, grads = layer.backward(params, cache, dy)
        assert dx is None
        ref = np.zeros((3, 7))
        for t in range(4):
            for i in range(3):
                ref[:, int(ids[t, i])] += np.asarray(dy)[:, t, i]
        np.testing.assert_allclose(grads["E"], ref, rtol=1e-13, atol=1e-14)
        _, vjp = jax.vjp(lambda p: layer.forward(p, ids)[0], params)
        assert_tree_close(grads, vjp(dy)[0])
        assert np.all(ref[:, 4] == 0)  # token 4 never occurs


def test_positional_embedding_sinusoidal_matches_formula_and_learned_uses_first_columns():
    with jax.enable_x64(True):
        x = jnp.asarray(rng(0).standard_normal((6, 5, 2)))
        sin = PositionalEmbedding(8, "sinusoidal")
        assert sin.init(None, (6, 5), jnp.float64) == ({}, (6, 5))
        y, _ = sin.forward({}, x)
        for t in range(5):
            for j in range(6):
                angle = t / 10000 ** (2 * (j // 2) / 6)
                pe = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                np.testing.assert_allclose(y[j, t] - x[j, t], pe, rtol=1e-12, atol=1e-13)
        learned = PositionalEmbedding(8)
        params, _ = make_params(learned, (6, 5), 1)
        assert params["P"].shape == (6, 8)
        y, _ = learned.forward(params, x)
        np.testing.assert_allclose(y, x + np.asarray(params["P"])[:, :5, None], rtol=1e-14)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_positional_embedding_backward_matches_vjp(kind):
    _, grads = check_layer(PositionalEmbedding(8, kind), (6, 5), 3)
    if kind == "learned":
        assert np.all(np.asarray(grads["P"])[:, 5:] == 0)  # columns past T get no gradient


# --- GELU -----------------------------------------------------------------------------------------
def test_gelu_and_derivative_against_independent_numbers():
    z = np.array([-6.0, -2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 2.0, 7.0])
    with jax.enable_x64(True):
        g = np.asarray(activations.gelu(jnp.asarray(z)))
        gp = np.asarray(activations.gelu_prime(jnp.asarray(z)))
    np.testing.assert_allclose(g, np_gelu(z), rtol=1e-14, atol=1e-15)
    phi = np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(gp, special.ndtr(z) + z * phi, rtol=1e-13, atol=1e-15)
    # gelu'(0) = 1/2 and gelu(1) = Φ(1) = 0.8413447460685429 (tables of the normal CDF).
    assert gp[4] == pytest.approx(0.5, abs=1e-15)
    assert g[6] == pytest.approx(0.8413447460685429, abs=1e-15)
    # Central differences of math.erf's gelu.
    h = 1e-6
    np.testing.assert_allclose(gp, (np_gelu(z + h) - np_gelu(z - h)) / (2 * h), atol=1e-8)
    assert activations.get("gelu").kinked is False
    assert "gelu" in activations.ACTIVATIONS


# --- the transformer block ------------------------------------------------------------------------
def test_block_params_layout():
    box = {}

    def init():
        params, box["out"] = TransformerBlock(2, 12).init(jax.random.key(0), (8, 5))
        return params

    shapes = {k: v.shape for k, v in jax.eval_shape(init).items()}
    assert tuple(box["out"]) == (8, 5)
    assert shapes == {"ln1_gamma": (8, 1), "ln1_beta": (8, 1), "Wq": (8, 8), "Wk": (8, 8),
                      "Wv": (8, 8), "Wo": (8, 8), "bq": (8, 1), "bk": (8, 1), "bv": (8, 1),
                      "bo": (8, 1), "ln2_gamma": (8, 1), "ln2_beta": (8, 1), "W1": (12, 8),
                      "b1": (12, 1), "W2": (8, 12), "b2": (8, 1)}


@pytest.mark.parametrize("heads,causal", [(1, True), (4, False)])
def test_block_forward_matches_loops(heads, causal):
    with jax.enable_x64(True):
        layer = TransformerBlock(heads, 6, causal)
        params, _ = make_params(layer, (4, 5), 1)
        x = jnp.asarray(rng(2).standard_normal((4, 5, 2)))
        y = apply(layer, params, x)
        np.testing.assert_allclose(y, np_block(params, x, heads, causal), rtol=1e-11,
                                   atol=1e-12)


BLOCK_SHAPES = [(4, 1, 2, 1, 3, True), (8, 6, 3, 2, 16, False), (32, 64, 2, 4, 40, True)]


@pytest.mark.parametrize("d,T,m,heads,width,causal", BLOCK_SHAPES,
                         ids=[f"d{d}-T{T}-h{h}-{'causal' if c else 'full'}"
                              for d, T, m, h, w, c in BLOCK_SHAPES])
def test_block_backward_matches_vjp(d, T, m, heads, width, causal):
    check_layer(TransformerBlock(heads, width, causal), (d, T), m)


# --- a tiny decoder chained by hand, through the three-way checker --------------------------------
VOCAB, D, T_SEQ, M, HEADS, WIDTH = 7, 8, 5, 3, 2, 12
DECODER = {"embed": Embedding(VOCAB, D), "pos": PositionalEmbedding(T_SEQ),
           "block": TransformerBlock(HEADS, WIDTH, causal=True), "ln": LayerNorm(),
           "out": Dense(VOCAB, "softmax")}
ORDER = ("embed", "pos", "block", "ln", "out")


def decoder_params(seed=0):
    params, shape = {}, (T_SEQ,)
    for i, name in enumerate(ORDER):
        params[name], shape = make_params(DECODER[name], shape, seed + i)
    return params


def decoder_loss(params, ids, targets):
    """Mean over every position of every example of the cross-entropy of the next token."""
    A = ids
    for name in ORDER[:-1]:
        A, _ = DECODER[name].forward(params[name], A)
    Z = params["out"]["W"] @ A.reshape(D, -1) + params["out"]["b"]
    logp = jax.nn.log_softmax(Z, axis=0)
    return -jnp.mean(jnp.take_along_axis(logp, targets.reshape(1, -1), axis=0))


def decoder_grads(params, ids, targets, block=None):
    caches, A = {}, ids
    layers = {**DECODER, "block": block or DECODER["block"]}
    for name in ORDER:
        A, caches[name] = layers[name].forward(params[name], A)
    Y = jax.nn.one_hot(targets, VOCAB, axis=0, dtype=A.dtype)
    dZ = (A - Y) / targets.size  # softmax + cross-entropy, mean over T·m positions
    grads = {}
    dA, grads["out"] = layers["out"].backward_from_dZ(params["out"], caches["out"], dZ)
    for name in ORDER[-2::-1]:
        dA, grads[name] = layers[name].backward(params[name], caches[name], dA)
    return grads


@pytest.fixture(scope="module")
def decoder_problem():
    r = rng(7)
    ids = jnp.asarray(r.integers(0, VOCAB, (T_SEQ, M)))
    targets = jnp.asarray(np.roll(np.asarray(ids), -1, axis=0))
    with jax.enable_x64(True):
        return decoder_params(), ids, targets


def check(grad_fn, problem):
    """The three-way check of `grad_fn` on the decoder.  `check_grad` caches its compilations
    by function, so each call gets a fresh wrapper: a planted bug is traced anew."""
    params, ids, targets = problem
    return jn.check_grad(decoder_loss, lambda *a: grad_fn(*a), params, ids, targets, entries=12)


def test_tiny_decoder_passes_check_grad(decoder_problem):
    report = check(decoder_grads, decoder_problem)
    assert report.ok, str(report)


def block(*names):
    return ["['block']['" + n + "']" for n in names]


EMBEDDINGS = ["['embed']['E']", "['pos']['P']"]


def assert_caught(report, expected):
    """The check fails on exactly the leaves the bug reaches: those whose gradient flows
    through the wrong step; every leaf after it (nearer the loss) still passes."""
    assert not report.ok
    assert sorted(report.failing) == sorted(expected), report.failing


def test_planted_missing_scale_in_attention_backward(decoder_problem, monkeypatch):
    def backward_without_scale(q, k, v, P, scale, d_out):
        dv = jnp.einsum("...qk,...qd->...kd", P, d_out)
        dP = jnp.einsum("...qd,...kd->...qk", d_out, v)
        dS = P * (dP - jnp.sum(P * dP, axis=-1, keepdims=True))  # BUG: no * scale
        return jnp.einsum("...qk,...kd->...qd", dS, k), jnp.einsum("...qk,...qd->...kd", dS, q), dv

    monkeypatch.setattr(attention_module, "_attend_backward", backward_without_scale)
    report = check(decoder_grads, decoder_problem)
    # dq and dk scale by √d_k: Wq, Wk, bq and everything before the attention (ln1, the
    # embeddings) are wrong; dv, Wv, bv, Wo and the MLP are not (bk's gradient stays 0).
    assert_caught(report, block("Wq", "Wk", "bq", "ln1_gamma", "ln1_beta") + EMBEDDINGS)


def test_planted_mask_after_softmax_in_attention_backward(decoder_problem, monkeypatch):
    def backward_mask_after_softmax(q, k, v, P, scale, d_out):
        # BUG: recomputes the weights from the scores, masking after the softmax.
        T = q.shape[-2]
        P = jax.nn.softmax(jnp.einsum("...qd,...kd->...qk", q, k) * scale, axis=-1) \
            * jnp.tril(jnp.ones((T, T)))[None, None]
        dv = jnp.einsum("...qk,...qd->...kd", P, d_out)
        dP = jnp.einsum("...qd,...kd->...qk", d_out, v)
        dS = P * (dP - jnp.sum(P * dP, axis=-1, keepdims=True)) * scale
        return jnp.einsum("...qk,...kd->...qd", dS, k), jnp.einsum("...qk,...qd->...kd", dS, q), dv

    monkeypatch.setattr(attention_module, "_attend_backward", backward_mask_after_softmax)
    report = check(decoder_grads, decoder_problem)
    # Unnormalized weights: dv and dS are wrong (and Σ_k dS ≠ 0, so bk too); Wo is not.
    assert_caught(report, block("Wq", "Wk", "Wv", "bq", "bk", "bv", "ln1_gamma", "ln1_beta")
                  + EMBEDDINGS)


def test_planted_layernorm_mean_term_dropped(decoder_problem, monkeypatch):
    def layernorm_backward_no_mean(gamma, xhat, rstd, dy):
        dxhat = gamma.reshape((-1,) + (1,) * (dy.ndim - 1)) * dy
        dx = rstd * (dxhat - xhat * jnp.mean(dxhat * xhat, axis=0, keepdims=True))  # BUG
        rest = tuple(range(1, dy.ndim))
        return dx, jnp.sum(dy * xhat, rest)[:, None], jnp.sum(dy, rest)[:, None]

    monkeypatch.setattr(attention_module, "layernorm_backward", layernorm_backward_no_mean)
    report = check(decoder_grads, decoder_problem)
    # LN2's dx is wrong: everything before it (attention, LN1, embeddings) fails; LN2's own
    # gamma and beta, the MLP after it and the final LayerNorm (the module's own, unpatched
    # backward) do not.  (bk's gradient is 0 whatever dh is.)
    assert_caught(report, block("Wq", "Wk", "Wv", "Wo", "bq", "bv", "bo", "ln1_gamma",
                                "ln1_beta") + EMBEDDINGS)


class BlockWithoutResidualGradient(TransformerBlock):
    """The block with one planted bug: the residual x -> h does not add its gradient."""

    def backward(self, params, cache, dy):
        dx, grads = super().backward(params, cache, dy)
        # Rebuild dh to subtract it again: dx = dh + LN1ᵀ(da)  ->  BUG: dx = LN1ᵀ(da).
        dW2, db2, dA1 = attention_module.linear_backward(dy, cache["A1"], params["W2"])
        dZ1 = dA1 * activations.gelu_prime(cache["Z1"])
        _, _, db = attention_module.linear_backward(dZ1, cache["b"], params["W1"])
        dh2, _, _ = attention_module.layernorm_backward(params["ln2_gamma"], cache["xhat2"],
                                                        cache["rstd2"], db)
        return dx - (dy + dh2), grads


def test_planted_residual_gradient_not_added(decoder_problem):
    block = BlockWithoutResidualGradient(HEADS, WIDTH, causal=True)
    report = check(lambda p, i, t: decoder_grads(p, i, t, block), decoder_problem)
    # Only what lies before the block fails: the embeddings.
    assert_caught(report, EMBEDDINGS)


# --- bad input ------------------------------------------------------------------------------------
def test_bad_options_and_shapes_raise_clear_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="divisible by heads=3"):
        MultiHeadAttention(3).init(key, (8, 5))
    with pytest.raises(ValueError, match="divisible by heads=3"):
        TransformerBlock(3, 8).init(key, (8, 5))
    with pytest.raises(ValueError, match="heads must be an int >= 1"):
        MultiHeadAttention(0)
    with pytest.raises(ValueError, match="mlp_width"):
        TransformerBlock(2, 0)
    with pytest.raises(ValueError, match="causal must be a bool"):
        MultiHeadAttention(2, causal="yes")
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(eps=0.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        PositionalEmbedding(8, "rotary")
    with pytest.raises(ValueError, match=r"in_shape .* must be \(d, T\)"):
        MultiHeadAttention(2).init(key, (8,))
    params, _ = MultiHeadAttention(2).init(key, (8, 5))
    with pytest.raises(ValueError, match=r"expects input of shape \(8, T, m\), got shape "
                                         r"\(6, 5, 2\)"):
        MultiHeadAttention(2).forward(params, jnp.zeros((6, 5, 2)))
    with pytest.raises(ValueError, match=r"\(8, T, m\), got shape \(8, 5\)"):
        MultiHeadAttention(2).forward(params, jnp.zeros((8, 5)))
    ln, _ = LayerNorm().init(key, (8, 5))
    with pytest.raises(ValueError, match=r"LayerNorm expects input of shape \(8, \.\.\., m\)"):
        LayerNorm().forward(ln, jnp.zeros((6, 5, 2)))


def test_bad_attention_inputs_raise_clear_errors():
    Q, K, V = jnp.zeros((3, 4, 2)), jnp.zeros((3, 5, 2)), jnp.zeros((2, 5, 2))
    with pytest.raises(ValueError, match="Q of shape"):
        scaled_dot_product_attention(jnp.zeros((3, 4)), K, V)
    with pytest.raises(ValueError, match="got Q"):
        scaled_dot_product_attention(Q, jnp.zeros((2, 5, 2)), V)
    with pytest.raises(ValueError, match="got Q"):
        scaled_dot_product_attention(Q, K, jnp.zeros((2, 6, 2)))
    with pytest.raises(ValueError, match="must be boolean"):
        scaled_dot_product_attention(Q, K, V, jnp.ones((5, 4, 2)))
    with pytest.raises(ValueError, match=r"broadcast to the weights' shape"):
        scaled_dot_product_attention(Q, K, V, jnp.ones((4, 5, 2), bool))
    with pytest.raises(ValueError, match=r"broadcast to the weights' shape"):
        scaled_dot_product_attention(Q, K, V, jnp.ones((5,), bool))
    out, W = scaled_dot_product_attention(Q, K, V, jnp.ones((5, 1, 1), bool))
    assert out.shape == (2, 4, 2) and W.shape == (5, 4, 2)


def test_bad_embedding_inputs_raise_clear_errors():
    layer = Embedding(5, 3)
    params, _ = layer.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\), got 2 outside"):
        layer.forward(params, jnp.asarray([[0, 5], [1, -1]]))
    with pytest.raises(ValueError, match="integer token ids"):
        layer.forward(params, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"shape \(T, m\), got shape \(4,\)"):
        layer.forward(params, jnp.zeros((4,), int))
    with pytest.raises(ValueError, match=r"must be \(T,\)"):
        layer.init(jax.random.key(0), (4, 2))
    with pytest.raises(ValueError, match="vocab must be an int >= 1"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match=r"length T=9 > max_len"):
        PositionalEmbedding(8).init(jax.random.key(0), (3, 9))
    with pytest.raises(ValueError, match=r"length T=9 > max_len"):
        PositionalEmbedding(8, "sinusoidal").forward({}, jnp.zeros((3, 9, 2)))
    # Under jit the ids cannot be inspected: no error, the shape checks still run.
    y = jax.jit(lambda p, i: layer.forward(p, i)[0])(params, jnp.asarray([[0, 1], [4, 2]]))
    assert y.shape == (3, 2, 2)
