"""Fast, focused proofs of every hand-written backward pass (the mutation tool's first line).

For each layer family, at one or two tiny shapes in float64: the forward against a numpy
reference written here, and the hand-written `backward` against `jax.vjp` of the forward, leaf by
leaf and `dx` included (pooling ties, attention masks and the causal mask, the recurrent layers'
initial states).  `Sequential.backprop` against `jax.grad` of its cost for each output/loss
pairing, and the GAN losses' hand-written gradients against `jax.grad`.  Each case is one
compiled program, so the file runs in seconds: `tools/mutate.py` runs it first for the layer
modules, `sequential.py` and `gan.py` (see docs/mutation.md).  The families' own test files hold
the broader property tests; these are deliberately few, small and quick.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import gan as gan_mod
from jaxnet.layers import (
    GRU,
    LSTM,
    RNN,
    AvgPool2D,
    Conv2D,
    Dense,
    Embedding,
    Flatten,
    LayerNorm,
    MaxPool2D,
    MultiHeadAttention,
    PositionalEmbedding,
    TransformerBlock,
    scaled_dot_product_attention,
)
from jaxnet.layers.attention import (
    scaled_dot_product_attention_backward,
    scaled_dot_product_attention_forward,
)

TOL = 1e-10
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def compiled(fn, *args):
    """`jax.jit(fn)(*args)`, compiled with the cheap back-end settings (tiny programs)."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def rnd(seed, *shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape))


def close(name, got, want, tol=TOL):
    """`‖got − want‖ ≤ tol · max(‖got‖, ‖want‖, 1)`; a leaf that is round-off on both sides
    (MultiHeadAttention's `dbk`) passes on the absolute floor."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.all(np.isfinite(got)), (name, got)
    scale = max(np.linalg.norm(got), np.linalg.norm(want), 1.0)
    err = np.linalg.norm(got - want) / scale
    assert err <= tol, (name, err)


def check_vjp(layer, params, x, *, y_ref=None, diff_x=True, forward=None, backward=None,
              seed=99):
    """The hand-written backward of `layer` against `jax.vjp` of its forward for a random `dy`,
    every parameter leaf and `dx`; the forward against `y_ref` (numpy) when given."""
    forward = forward or layer.forward
    backward = backward or layer.backward
    y_shape = jax.eval_shape(lambda p, x: forward(p, x)[0], params, x).shape
    dy = rnd(seed, *y_shape)

    def run(params, x, dy):
        y, cache = forward(params, x)
        dx, grads = backward(params, cache, dy)
        if diff_x:
            _, pull = jax.vjp(lambda p, x: forward(p, x)[0], params, x)
            gp, gx = pull(dy)
        else:
            _, pull = jax.vjp(lambda p: forward(p, x)[0], params)
            (gp,), gx = pull(dy), None
        return y, dx, grads, gx, gp

    y, dx, grads, gx, gp = compiled(run, params, x, dy)
    if y_ref is not None:
        close("y", y, y_ref)
    assert set(grads) == set(params), (sorted(grads), sorted(params))
    for name in params:
        close(name, grads[name], gp[name])
    if diff_x:
        close("dx", dx, gx)
    else:
        assert dx is None
    return y, dx, grads


# --- dense --------------------------------------------------------------------------------------
def np_act(name, Z):
    if name == "tanh":
        return np.tanh(Z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-Z))
    if name == "relu":
        return np.maximum(Z, 0)
    if name == "softmax":
        E = np.exp(Z - Z.max(axis=0))
        return E / E.sum(axis=0)
    return Z


@pytest.mark.parametrize("n, act, x_shape", [
    (3, "tanh", (2, 4)),            # W (3, 2): the written-out products and the tiny dW
    (4, "softmax", (9, 2, 3)),      # n_prev 9 > 8: plain products; a sequence of positions
])
def test_dense(n, act, x_shape):
    layer = Dense(n, act)
    params = {"W": rnd(1, n, x_shape[0]), "b": rnd(2, n, 1)}
    x = rnd(3, *x_shape)
    Wx = np.einsum("ij,j...->i...", np.asarray(params["W"]), np.asarray(x))
    Z = Wx + np.asarray(params["b"]).reshape((n,) + (1,) * (len(x_shape) - 1))
    check_vjp(layer, params, x, y_ref=np_act(act, Z))
    # the output layer's shortcut: the same from dZ, against the vjp of Z
    check_vjp(layer, params, x, forward=lambda p, x: (layer.forward(p, x)[1]["Z"],
                                                      layer.forward(p, x)[1]),
              backward=layer.backward_from_dZ)


# --- convolution, pooling, flatten ---------------------------------------------------------------
def np_conv(W, b, x, stride, pads):
    W, x = np.asarray(W), np.asarray(x)
    F, C, kh, kw = W.shape
    (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    Ho, Wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    Z = np.zeros((F, Ho, Wo, x.shape[3]))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            Z[:, i, j, :] = np.einsum("fcij,cijm->fm", W, patch)
    return Z + np.asarray(b).reshape(F, 1, 1, 1)


@pytest.mark.parametrize("layer, x_shape, stride, pads", [
    # stride (2, 1), a (2, 3) kernel, one padded row past the last window (rh = 1)
    (Conv2D(2, (2, 3), stride=(2, 1), padding=1, activation="tanh"), (2, 5, 6, 2), (2, 1),
     ((1, 1), (1, 1))),
    # "same" with stride 2: the odd padding column at the right; (pads worked by hand)
    (Conv2D(3, 3, stride=2, padding="same"), (1, 5, 4, 2), (2, 2), ((1, 1), (0, 1))),
])
def test_conv2d(layer, x_shape, stride, pads):
    F, C = layer.out_channels, x_shape[0]
    params = {"W": rnd(1, F, C, *layer.kernel_size), "b": rnd(2, F, 1, 1, 1)}
    x = rnd(3, *x_shape)
    assert layer.pads(*x_shape[1:3]) == pads
    Z = np_conv(params["W"], params["b"], x, stride, pads)
    y, _, _ = check_vjp(layer, params, x, y_ref=np_act(layer.activation, Z))
    init_params, out_shape = layer.init(jax.random.key(0), x_shape[:3], dtype=jnp.float64)
    assert out_shape == y.shape[:3]  # the shape init announces is the one forward makes
    assert {k: v.shape for k, v in init_params.items()} == {k: v.shape for k, v in params.items()}
    check_vjp(layer, params, x, forward=lambda p, x: (layer.forward(p, x)[1]["Z"],
                                                      layer.forward(p, x)[1]),
              backward=layer.backward_from_dZ)


def test_same_padding_worked_by_hand():
    same_padding = jn.layers.conv.same_padding
    # total = max((ceil(size / s) − 1)·s + k − size, 0), the odd one at the bottom/right
    assert same_padding(5, 3, 2) == (1, 1)
    assert same_padding(4, 3, 2) == (0, 1)
    assert same_padding(6, 4, 1) == (1, 2)
    assert same_padding(4, 1, 2) == (0, 0)   # the formula gives −1: no padding, never negative
    assert same_padding(5, 1, 3) == (0, 0)


def np_pool(x, window, stride, kind, dA=None):
    """`A` and (given `dA`) `dA_prev` by loops: max routes to the first maximum (row-major)."""
    x = np.asarray(x)
    (kh, kw), (sh, sw) = window, stride
    C, H, W, m = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    A, dX = np.zeros((C, Ho, Wo, m)), np.zeros_like(x)
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                for n in range(m):
                    win = x[c, i * sh:i * sh + kh, j * sw:j * sw + kw, n]
                    if kind == "max":
                        r, s = divmod(int(np.argmax(win)), kw)
                        A[c, i, j, n] = win[r, s]
                        if dA is not None:
                            dX[c, i * sh + r, j * sw + s, n] += dA[c, i, j, n]
                    else:
                        A[c, i, j, n] = win.mean()
                        if dA is not None:
                            dX[c, i * sh:i * sh + kh, j * sw:j * sw + kw, n] += \
                                dA[c, i, j, n] / (kh * kw)
    return A, dX


@pytest.mark.parametrize("cls, size, stride, x_shape", [
    (MaxPool2D, (2, 3), None, (2, 5, 7, 2)),     # non-overlapping, rows/columns left over
    (MaxPool2D, (3, 2), (2, 1), (2, 7, 5, 2)),   # overlapping windows
    (AvgPool2D, (2, 3), None, (2, 5, 7, 2)),
    (AvgPool2D, (2, 3), (1, 2), (2, 4, 7, 2)),
])
def test_pooling_with_ties(cls, size, stride, x_shape):
    layer = cls(size, stride)
    # small integers: many ties inside the windows (the first maximum takes the gradient)
    x = jnp.asarray(np.random.default_rng(5).integers(0, 3, x_shape).astype(np.float64))
    kind = "max" if cls is MaxPool2D else "avg"
    A_ref, _ = np_pool(x, layer.window, layer.strides, kind)
    dA = rnd(6, *A_ref.shape)
    _, dX_ref = np_pool(x, layer.window, layer.strides, kind, np.asarray(dA))

    def run(x, dA):
        A, cache = layer.forward({}, x)
        return A, layer.backward({}, cache, dA)

    A, (dX, grads) = compiled(run, x, dA)
    assert grads == {}
    close("A", A, A_ref)
    close("dx", dX, dX_ref)
    check_vjp(layer, {}, x, seed=6)  # jax.vjp of the forward follows the same first-max rule


def test_flatten():
    layer = Flatten()
    x = rnd(1, 2, 3, 2, 5)  # C ≠ m: the examples axis is the last one
    check_vjp(layer, {}, x, y_ref=np.asarray(x).reshape(12, 5))


# --- recurrent ---------------------------------------------------------------------------------
def sig(z):
    return 1 / (1 + np.exp(-z))


def np_recurrent(kind, p, x, h0, c0):
    """All states `(H, T, m)` by a loop over time (PyTorch's gate orders)."""
    p = {k: np.asarray(v) for k, v in p.items()}
    x, h, c = np.asarray(x), np.asarray(h0), np.asarray(c0)
    H, out = h.shape[0], []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind == "rnn":
            h = np.tanh(p["Wx"] @ xt + p["Wh"] @ h + p["b"])
        elif kind == "lstm":
            z = p["Wx"] @ xt + p["Wh"] @ h + p["b"]
            i, f, g, o = sig(z[:H]), sig(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sig(z[3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            a, b = p["Wx"] @ xt + p["bx"], p["Wh"] @ h + p["bh"]
            r, z = sig(a[:H] + b[:H]), sig(a[H:2 * H] + b[H:2 * H])
            n = np.tanh(a[2 * H:] + r * b[2 * H:])
            h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


RECURRENT = {"rnn": (RNN, 1), "lstm": (LSTM, 4), "gru": (GRU, 3)}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("sequences", [True, False])
def test_recurrent_with_initial_states(kind, sequences):
    cls, gates = RECURRENT[kind]
    n_x, T, H, m = 2, 3, 2, 2
    layer = cls(H, return_sequences=sequences)
    params = {"Wx": rnd(1, gates * H, n_x, scale=0.7), "Wh": rnd(2, gates * H, H, scale=0.7)}
    if kind == "gru":
        params.update(bx=rnd(3, gates * H, 1, scale=0.5), bh=rnd(4, gates * H, 1, scale=0.5))
    else:
        params["b"] = rnd(3, gates * H, 1, scale=0.5)
    x, h0, c0 = rnd(5, n_x, T, m), rnd(6, H, m, scale=0.5), rnd(7, H, m, scale=0.5)
    states = {"h0": h0, "c0": c0} if kind == "lstm" else {"h0": h0}
    ref = np_recurrent(kind, params, x, h0, c0)
    y_ref = ref if sequences else ref[:, -1]
    y_shape = (H, T, m) if sequences else (H, m)
    dy = rnd(8, *y_shape)

    def run(params, x, states, dy):
        y, cache = layer.forward(params, x, **states)
        manual = layer.backward_with_state(params, cache, dy)
        _, pull = jax.vjp(lambda p, x, s: layer.forward(p, x, **s)[0], params, x, states)
        # one step from h0 (and c0), as `step` is used to generate a sequence
        stepped = layer.step(params, x[:, 0], *(states[k] for k in ("h0", "c0") if k in states))
        return y, manual, pull(dy), stepped

    y, manual, (gp, gx, gs), stepped = compiled(run, params, x, states, dy)
    close("y", y, y_ref)
    close("step", stepped[0] if kind == "lstm" else stepped, ref[:, 0])
    if kind == "lstm":
        dx, dh0, dc0, grads = manual
        close("dc0", dc0, gs["c0"])
    else:
        dx, dh0, grads = manual
    close("dx", dx, gx)
    close("dh0", dh0, gs["h0"])
    assert set(grads) == set(params)
    for name in params:
        close(name, grads[name], gp[name])
    if not sequences:  # `backward` is `backward_with_state` without the states; zeros by default
        check_vjp(layer, params, x, y_ref=np_recurrent(kind, params, x, 0 * h0, 0 * c0)[:, -1])


# --- embeddings and layer norm -----------------------------------------------------------------
def test_embedding_repeated_ids():
    layer = Embedding(5, 3)
    params = {"E": rnd(1, 3, 5)}
    ids = jnp.asarray([[0, 4], [2, 2], [4, 1], [2, 0]])  # (T 4, m 2); id 2 three times, 3 never
    y, dx, grads = check_vjp(layer, params, ids, diff_x=False,
                             y_ref=np.asarray(params["E"])[:, np.asarray(ids)])
    assert np.all(np.asarray(grads["E"])[:, 3] == 0)
    for bad, n, first in (([[0, 5], [-1, 4]], 2, 5), ([[0, 1], [5, 0]], 1, 5),
                          ([[1, -1]], 1, -1)):
        with pytest.raises(ValueError, match=rf"got {n} outside it \(e.g. {first}\)"):
            layer.forward(params, jnp.asarray(bad))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_positional_embedding(kind):
    layer = PositionalEmbedding(5, kind)
    d, T, m = 4, 3, 2
    params = {"P": rnd(1, d, 5)} if kind == "learned" else {}
    x = rnd(2, d, T, m)
    if kind == "learned":
        P = np.asarray(params["P"])[:, :T]
    else:
        t, j = np.arange(T)[None, :], np.arange(d)[:, None]
        angle = t / 10000.0 ** (2 * (j // 2) / d)
        P = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    check_vjp(layer, params, x, y_ref=np.asarray(x) + P[:, :, None])


def test_layernorm():
    layer = LayerNorm()
    d = 3
    params = {"gamma": rnd(1, d, 1), "beta": rnd(2, d, 1)}
    x = rnd(3, d, 2, 2)
    xn = np.asarray(x)
    mu, var = xn.mean(axis=0), xn.var(axis=0)
    y_ref = np.asarray(params["gamma"])[:, :, None] * (xn - mu) / np.sqrt(var + 1e-5) \
        + np.asarray(params["beta"])[:, :, None]
    check_vjp(layer, params, x, y_ref=y_ref)
    x2 = x[:, 0]  # (d, m): the smallest input, features and examples only
    close("y (d, m)", layer.forward(params, x2)[0], y_ref[:, 0])


# --- attention ---------------------------------------------------------------------------------
def np_softmax_rows(S, allowed):
    E = np.where(allowed, np.exp(S - np.where(allowed, S, -np.inf).max(axis=-1, keepdims=True)
                                 if allowed.any() else S), 0)
    total = E.sum(axis=-1, keepdims=True)
    return np.where(total > 0, E / np.where(total > 0, total, 1), 0)


def np_attention(Q, K, V, mask):
    """`out (d_v, T_q, m)` and weights `(T_k, T_q, m)` example by example, query by query."""
    Q, K, V = (np.asarray(a) for a in (Q, K, V))
    d_k, T_q, m = Q.shape
    T_k = K.shape[1]
    out, Wts = np.zeros((V.shape[0], T_q, m)), np.zeros((T_k, T_q, m))
    for n in range(m):
        for q in range(T_q):
            s = K[:, :, n].T @ Q[:, q, n] / math.sqrt(d_k)
            allowed = np.ones(T_k, bool) if mask is None else np.asarray(mask)[:, q, n]
            if allowed.any():
                e = np.where(allowed, np.exp(s - s[allowed].max()), 0)
                Wts[:, q, n] = e / e.sum()
            out[:, q, n] = V[:, :, n] @ Wts[:, q, n]
    return out, Wts


@pytest.mark.parametrize("masked", [False, True])
def test_scaled_dot_product_attention(masked):
    d_k, d_v, T_q, T_k, m = 2, 3, 4, 3, 2
    Q, K, V = rnd(1, d_k, T_q, m), rnd(2, d_k, T_k, m), rnd(3, d_v, T_k, m)
    mask = None
    if masked:  # query 2 of example 1 sees no key at all: zero weights, zero gradients
        mask = np.random.default_rng(4).random((T_k, T_q, m)) < 0.6
        mask[0, :, :] = True
        mask[:, 2, 1] = False
        mask = jnp.asarray(mask)
    out_ref, w_ref = np_attention(Q, K, V, mask)
    d_out = rnd(5, d_v, T_q, m)

    def run(Q, K, V, d_out):
        out, weights = scaled_dot_product_attention(Q, K, V, mask)
        _, cache = scaled_dot_product_attention_forward(Q, K, V, mask)
        manual = scaled_dot_product_attention_backward(cache, d_out)
        _, pull = jax.vjp(lambda *a: scaled_dot_product_attention(*a, mask)[0], Q, K, V)
        return out, weights, manual, pull(d_out)

    out, weights, manual, auto = compiled(run, Q, K, V, d_out)
    close("out", out, out_ref)
    close("weights", weights, w_ref)
    for name, a, b in zip("QKV", manual, auto):
        close("d" + name, a, b)
    if masked:
        assert np.all(np.asarray(manual[0])[:, 2, 1] == 0)


@pytest.mark.parametrize("masked", [False, True])
def test_attention_large_scores_stay_finite(masked):
    """Scores near 1000: exp overflows unless the row maximum is subtracted first."""
    d_k, T, m = 2, 3, 2
    Q, K, V = rnd(1, d_k, T, m, scale=30.0), rnd(2, d_k, T, m, scale=30.0), rnd(3, d_k, T, m)
    mask = jnp.asarray(np.tril(np.ones((T, T), bool)).T) if masked else None  # (T_k, T_q)
    out, weights = jax.jit(scaled_dot_product_attention)(Q, K, V, mask)
    out_ref, w_ref = np_attention(Q, K, V, None if mask is None
                                  else np.broadcast_to(np.asarray(mask)[:, :, None], (T, T, m)))
    S = np.einsum("dkm,dqm->kqm", np.asarray(K), np.asarray(Q)) / math.sqrt(d_k)
    assert S.max() > 800  # exp(S) alone would overflow
    close("out", out, out_ref)
    close("weights", weights, w_ref)


def np_mha(p, x, heads, causal):
    p = {k: np.asarray(v) for k, v in p.items()}
    x = np.asarray(x)
    d, T, m = x.shape
    d_k = d // heads
    y = np.zeros_like(x)
    for n in range(m):
        X = x[:, :, n]
        Q, K, V = (p["W" + c] @ X + p["b" + c] for c in "qkv")
        O = np.zeros((d, T))
        for h in range(heads):
            r = slice(h * d_k, (h + 1) * d_k)
            S = Q[r].T @ K[r] / math.sqrt(d_k)  # (T_q, T_k)
            if causal:
                S = np.where(np.tril(np.ones((T, T), bool)), S, -np.inf)
            P = np.exp(S - S.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            O[r] = V[r] @ P.T
        y[:, :, n] = p["Wo"] @ O + p["bo"]
    return y


def mha_params(d, seed=10):
    return {f"{w}{c}": rnd(seed + i, d, d if w == "W" else 1, scale=0.6)
            for i, (w, c) in enumerate((w, c) for w in "Wb" for c in "qkvo")}


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention(causal):
    d, T, m, heads = 4, 3, 2, 2
    layer = MultiHeadAttention(heads, causal)
    params, x = mha_params(d), rnd(1, d, T, m)
    check_vjp(layer, params, x, y_ref=np_mha(params, x, heads, causal))


def np_layernorm(g, b, x):
    mu, var = x.mean(axis=0), x.var(axis=0)
    return np.asarray(g)[:, :, None] * (x - mu) / np.sqrt(var + 1e-5) + np.asarray(b)[:, :, None]


def test_transformer_block_causal():
    d, T, m, heads, width = 4, 3, 2, 2, 5
    layer = TransformerBlock(heads, width, causal=True)
    params = {**mha_params(d), "ln1_gamma": rnd(20, d, 1), "ln1_beta": rnd(21, d, 1),
              "ln2_gamma": rnd(22, d, 1), "ln2_beta": rnd(23, d, 1), "W1": rnd(24, width, d),
              "b1": rnd(25, width, 1), "W2": rnd(26, d, width, scale=0.5), "b2": rnd(27, d, 1)}
    x = rnd(1, d, T, m)
    p = {k: np.asarray(v) for k, v in params.items()}
    xn = np.asarray(x)
    h = xn + np_mha(params, np_layernorm(p["ln1_gamma"], p["ln1_beta"], xn), heads, True)
    Z1 = np.einsum("wd,dtm->wtm", p["W1"], np_layernorm(p["ln2_gamma"], p["ln2_beta"], h)) \
        + p["b1"][:, :, None]
    gelu = 0.5 * Z1 * (1 + np.vectorize(math.erf)(Z1 / math.sqrt(2)))
    y_ref = h + np.einsum("dw,wtm->dtm", p["W2"], gelu) + p["b2"][:, :, None]
    check_vjp(layer, params, x, y_ref=y_ref)


# --- Sequential: backprop against jax.grad of the cost, each output/loss pairing ------------------
def seq_case(name):
    """`(net, X, Y, J_ref)`: J worked with numpy from the forward's output."""
    rng = np.random.default_rng(7)
    if name == "identity/squared_error":
        net = jn.Sequential([Dense(3, "relu"), Dense(2)], input_shape=(2,))
        X = rng.standard_normal((2, 4))
        Y = rng.standard_normal((2, 4))
        J = lambda A: 0.5 * np.sum((A - Y) ** 2) / 4
    elif name == "sigmoid/binary_cross_entropy":
        net = jn.Sequential([Dense(3, "tanh"), Dense(1, "sigmoid")], input_shape=(2,))
        X = rng.standard_normal((2, 5))
        Y = rng.random((1, 5))  # soft labels: Y ≠ 0, 1 exercises both terms
        J = lambda A: -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / 5
    elif name == "sigmoid/squared_error":  # not the document's pair: the general dA path
        net = jn.Sequential([Dense(2, "sigmoid")], input_shape=(3,), loss="squared_error")
        X = rng.standard_normal((3, 4))
        Y = rng.random((2, 4))
        J = lambda A: 0.5 * np.sum((A - Y) ** 2) / 4
    elif name == "softmax/categorical_cross_entropy":
        net = jn.Sequential([Dense(3, "relu"), Dense(3, "softmax")], input_shape=(2,))
        X = rng.standard_normal((2, 4))
        Y = np.eye(3)[:, [0, 2, 1, 2]] * 0.7 + 0.1  # soft targets, columns sum to 1
        J = lambda A: -np.sum(Y * np.log(A)) / 4
    else:  # "softmax/class ids over a sequence": J is the mean over T·m positions
        net = jn.Sequential([Embedding(5, 3), RNN(3, return_sequences=True),
                             Dense(4, "softmax")], input_shape=(3,))
        X = rng.integers(0, 5, (3, 2))
        Y = rng.integers(0, 4, (3, 2))
        J = lambda A: -np.mean(np.log(np.take_along_axis(A, Y[None], axis=0)))
    return net, jnp.asarray(X), jnp.asarray(Y), J


@pytest.mark.parametrize("name", ["identity/squared_error", "sigmoid/binary_cross_entropy",
                                  "sigmoid/squared_error", "softmax/categorical_cross_entropy",
                                  "softmax/class ids over a sequence"])
def test_sequential_backprop_equals_grad_of_cost(name):
    net, X, Y, J_ref = seq_case(name)
    params = net.init(jax.random.key(3), dtype=jnp.float64)
    params = jax.tree.map(lambda a: a + 0.1 * jnp.cos(jnp.arange(a.size).reshape(a.shape)),
                          params)  # nonzero biases
    ints = jnp.issubdtype(X.dtype, jnp.integer)

    def run(params, X, Y):
        A, caches = net.forward_cache(params, X)
        J = net.cost(params, X, Y)
        J2, A2, grads2 = net._cost_and_grads(params, X, Y)
        dA = jnp.cos(A)  # any upstream gradient: backward_chain's dX against vjp in X
        dX, _ = net.backward_chain(params, caches, dA)
        dX_auto = None if ints else jax.vjp(lambda X: net.forward(params, X), X)[1](dA)[0]
        return (A, J, net.backprop(params, X, Y), net.backprop(params, X, Y, shortcut=False),
                jax.grad(net.cost)(params, X, Y), J2, A2, grads2, dX, dX_auto)

    A, J, manual, general, auto, J2, A2, grads2, dX, dX_auto = compiled(run, params, X, Y)
    close("J", J, J_ref(np.asarray(A)))
    close("J (cost_and_grads)", J2, J)
    close("A (cost_and_grads)", A2, A)
    for l, (m_l, g_l, c_l, a_l) in enumerate(zip(manual, general, grads2, auto)):
        assert set(m_l) == set(a_l)
        for k in a_l:
            close(f"[{l}]{k}", m_l[k], a_l[k])
            close(f"[{l}]{k} (shortcut=False)", g_l[k], a_l[k], tol=1e-8)
            close(f"[{l}]{k} (cost_and_grads)", c_l[k], a_l[k])
    if ints:
        assert dX is None
    else:
        close("dX", dX, dX_auto)


def test_as_sequential_computes_the_mlp():
    net = jn.MLP((2, 3, 2), hidden="tanh", output="softmax")
    params = net.init(jax.random.key(0), dtype=jnp.float64)
    X = rnd(1, 2, 4)
    seq = jn.sequential.as_sequential(net)
    assert seq.loss == net.loss and seq.output == "softmax"
    got, want = compiled(lambda p, X: (seq.forward(p, X), net.forward(p, X)), params, X)
    close("forward", got, want)


# --- GAN: the losses beside their gradients, and both players' backprop ---------------------------
def test_gan_losses_and_their_gradients():
    l_r, l_f = rnd(1, 1, 3, scale=2.0), rnd(2, 1, 4, scale=2.0)  # m_r ≠ m_f
    r, f = np.asarray(l_r), np.asarray(l_f)
    sp = lambda v: np.log1p(np.exp(v))
    refs = {
        "discriminator_loss": (np.mean(sp(-r)) + np.mean(sp(f)), (l_r, l_f)),
        "generator_loss": (np.mean(sp(-f)), (l_f,)),
        "minimax_generator_loss": (-np.mean(sp(f)), (l_f,)),
        "ls_discriminator_loss": (0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                                  (l_r, l_f)),
        "ls_generator_loss": (0.5 * np.mean((f - 1) ** 2), (l_f,)),
    }
    names = list(refs)

    def run(l_r, l_f):
        out = {}
        for name in names:
            args = (l_r, l_f) if len(refs[name][1]) == 2 else (l_f,)
            loss, grad = getattr(gan_mod, name), getattr(gan_mod, name + "_grad")
            manual = grad(*args)
            manual = manual if isinstance(manual, tuple) else (manual,)
            out[name] = (loss(*args), manual,
                         jax.grad(loss, argnums=tuple(range(len(args))))(*args))
        return out

    for name, (J, manual, auto) in compiled(run, l_r, l_f).items():
        close(name, J, refs[name][0])
        assert len(manual) == len(auto) == len(refs[name][1])
        for i, (a, b) in enumerate(zip(manual, auto)):
            close(f"{name}_grad[{i}]", a, b)


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "least_squares"])
def test_gan_backprop_equals_grad(loss):
    G = jn.MLP((2, 3, 2), hidden="tanh", output="identity")
    D = jn.MLP((2, 3, 1), hidden="tanh",
               output="identity" if loss == "least_squares" else "sigmoid")
    gan = jn.GAN(G, D, loss=loss)
    params = gan.init(jax.random.key(1), dtype=jnp.float64)
    X, Z = rnd(3, 2, 5), rnd(4, 2, 3)  # m_r 5 ≠ m_f 3

    def run(params, X, Z):
        manual_d = gan.discriminator_backprop(params, X, Z)
        manual_g = gan.generator_backprop(params, Z)
        auto_d = jax.grad(gan.discriminator_cost)(params, X, Z)["discriminator"]
        auto_g = jax.grad(gan.generator_cost)(params, Z)["generator"]
        X_fake = gan.sample(params, Z)
        J_D, _, d_real, d_fake = gan._d_grads(params["discriminator"], X, X_fake)
        _, X_fake2, caches = gan._G._forward(params["generator"], Z)
        J_G, reuse_g = gan._g_grads(params, Z, forward=(X_fake2, caches))
        return (manual_d, manual_g, auto_d, auto_g, J_D, gan.discriminator_cost(params, X, Z),
                d_real, d_fake, gan.discriminate(params, X), gan.discriminate(params, X_fake),
                J_G, gan.generator_cost(params, Z), reuse_g)

    (manual_d, manual_g, auto_d, auto_g, J_D, J_D_ref, d_real, d_fake, D_real, D_fake, J_G,
     J_G_ref, reuse_g) = compiled(run, params, X, Z)
    for role, manual, auto in (("D", manual_d, auto_d), ("G", manual_g, auto_g),
                               ("G (reused forward)", reuse_g, auto_g)):
        for l, (m_l, a_l) in enumerate(zip(manual, auto)):
            for k in a_l:
                close(f"{role}[{l}]{k}", m_l[k], a_l[k])
    close("J_D", J_D, J_D_ref)
    close("J_G", J_G, J_G_ref)
    close("mean D(x)", d_real, np.mean(np.asarray(D_real)))
    close("mean D(G(z))", d_fake, np.mean(np.asarray(D_fake)))
