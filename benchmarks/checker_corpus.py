"""The corpus of `benchmarks/checkers.py`: wrong and correct hand-written gradients.

Each wrong case plants one bug (a single token where the bug allows) in a copy of a built-in
layer's `backward`: a subclass of the layer with a `bug` field whose `backward` is the library's,
copied, with that one change where `bug` names it (no monkeypatching: the library is untouched,
and `bug=""` is the library's formula).  The layer sits in a small `jn.Sequential`, so a checker
sees a whole network and its localisation can be judged: each case records the index of the wrong
layer and which of its gradients (`dx`, `W`, ...) are wrong.  Bugs in the loss's derivative (the
network's `dŶ`, a GAN loss) record no layer.  Correct cases are the library's own layers and
losses at points where checkers stumble: ReLU kinks with zero biases, max-pool ties, saturated
sigmoids, a loss of magnitude 1e6, integer inputs.

A case's `build()` returns a `Problem` in float64 (it runs under `jax.enable_x64(True)`).

    from benchmarks.checker_corpus import CASES
    len([c for c in CASES if c.wrong]), len([c for c in CASES if not c.wrong])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxnet as jn
from jaxnet import activations, gan
from jaxnet.layers import recurrent as rec
from jaxnet.layers.attention import _rows_back, _rows_first
from jaxnet.layers.attention import _transposed as _att_transposed
from jaxnet.layers.conv import CANONICAL, _untile, _window_place, _window_slice
from jaxnet.layers.normalization import layernorm_backward
from jaxnet.sequential import Sequential

F64 = jnp.float64
REL = 1e-4  # the size of the one-entry bugs


# --- the problem a checker is given ------------------------------------------------------------
@dataclass
class Problem:
    """A network problem (`net`, `params`, `X`, `Y`) or a loss problem (`loss_fn`, `grad_fn`,
    `params`, `args`).  `loss(p)` and `grad(p)` are the scalar loss and the hand-written
    gradient as functions of the parameter tree alone (what the peers are given)."""

    params: Any
    net: Any = None
    X: Any = None
    Y: Any = None
    loss_fn: Callable | None = None
    grad_fn: Callable | None = None
    args: tuple = ()

    def loss(self, p):
        if self.net is not None:
            return self.net._cost(p, self.X, self.Y)
        return self.loss_fn(p, *self.args)

    def grad(self, p):
        if self.net is not None:
            return self.net._backprop(p, self.X, self.Y)
        return self.grad_fn(p, *self.args)


@dataclass(frozen=True)
class Case:
    """One corpus entry.  `layer`: 0-based index of the wrong layer in `net.layers` (None for a
    correct case or a bug in the loss); `leaves`: the wrong gradients of that layer (`dx` and
    parameter names) or, for a loss problem, the wrong leaves of its parameter tree."""

    name: str
    family: str
    wrong: bool
    bug: str
    build: Callable[[], Problem] = field(repr=False, compare=False)
    layer: int | None = None
    leaves: tuple = ()
    classic: str = ""  # which classic bug of the issue this is, if one


# --- Dense -------------------------------------------------------------------------------------
def _dense_backward(bug, activation, params, cache, d, from_dZ):
    W, A_prev, Z, A = params["W"], cache["A_prev"], cache["Z"], cache["A"]
    if from_dZ:  # the output layer's shortcut: d is dZ = (A − Y)/m
        dZ = d * A * (1 - A) if bug == "softmax_ce_jacobian" else d
    elif activation == "relu":
        dZ = d * jnp.heaviside(Z, 0.5 if bug == "relu_kink_half" else 0.0)
    elif bug == "tanh_prime_of_Z":
        dZ = d * (1 - Z * Z)
    elif bug == "sigmoid_prime_sign":
        dZ = d * A * (1 + A)
    elif bug == "no_activation_prime":
        dZ = d
    else:
        dZ = activations.get(activation).backward(d, Z, A)
    dW = dZ @ (A if bug == "dW_uses_output" else A_prev).T
    db = jnp.sum(d if bug == "db_from_dA" else dZ, axis=1, keepdims=True)
    if bug == "db_mean":
        db = jnp.mean(dZ, axis=1, keepdims=True)
    dA_prev = (W if bug == "transposed_weight" else W.T) @ dZ
    if bug == "dW_one_entry":
        dW = dW.at[0, 1].multiply(1 + REL)
    return dA_prev, {"W": dW, "b": db}


@dataclass(frozen=True)
class BugDense(jn.Dense):
    bug: str = ""

    def backward(self, params, cache, dA):
        return _dense_backward(self.bug, self.activation, params, cache, dA, False)

    def backward_from_dZ(self, params, cache, dZ):
        return _dense_backward(self.bug, self.activation, params, cache, dZ, True)


# --- Conv2D ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BugConv2D(jn.Conv2D):
    bug: str = ""

    def backward(self, params, cache, dA):
        """A copy of `Conv2D.backward` + `conv_backward` (stride 1 here: no cropped rows)."""
        Z, A_prev, W = cache["Z"], cache["A_prev"], params["W"]
        dZ = dA if self.bug == "no_activation_prime" else \
            activations.get(self.activation).backward(dA, Z, cache["A"])
        F, C, kh, kw = W.shape
        (pt, pb), (pl, pr) = self.pads(*A_prev.shape[1:3])
        dWk = lax.conv_general_dilated(A_prev, dZ.transpose(1, 2, 3, 0), (1, 1),
                                       ((pt, pb), (pl, pr)), dimension_numbers=CANONICAL)
        dW = dWk.transpose(3, 0, 1, 2)
        if self.bug == "dW_kernel_flipped":
            dW = dW[:, :, ::-1, ::-1]
        if self.bug == "dW_one_entry":
            dW = dW.at[0, 0, 1, 0].multiply(1 + REL)
        db = jnp.sum(dA if self.bug == "db_from_dA" else dZ, axis=(1, 2, 3)).reshape(F, 1, 1, 1)
        Wf = W if self.bug == "dx_kernel_not_flipped" else W[:, :, ::-1, ::-1]
        flipped = Wf.transpose(2, 3, 1, 0) if self.bug == "dx_channels_swapped" \
            else Wf.transpose(2, 3, 0, 1)
        dAn = lax.conv_general_dilated(dZ.transpose(3, 1, 2, 0), flipped, (1, 1),
                                       ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)),
                                       dimension_numbers=CANONICAL)
        return dAn.transpose(3, 1, 2, 0), {"W": dW, "b": db}


# --- pools -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BugMaxPool2D(jn.MaxPool2D):
    bug: str = ""

    def backward(self, params, cache, dA):
        (kh, kw), stride = self.window, self.strides
        if "first" in cache:  # non-overlapping windows
            first = cache["first"]
            k = kh if self.bug == "offset_uses_kh" else kw
            parts = [[dA if self.bug == "mask_dropped" else jnp.where(first == i * k + j, dA, 0)
                      for j in range(kw)] for i in range(kh)]
            return _untile(parts, cache["in_hw"].shape[1:]), {}
        A_prev, A = cache["A_prev"], cache["A"]
        in_hw = A_prev.shape[1:3]
        taken = jnp.zeros(A.shape, bool)
        dA_prev = jnp.zeros_like(A_prev)
        for i in range(kh):
            for j in range(kw):
                hit = _window_slice(A_prev, i, j, stride, A.shape[1:3]) == A
                if self.bug != "every_tied_max":
                    hit = hit & ~taken
                taken = taken | hit
                a, b = (j, i) if self.bug == "offsets_swapped" else (i, j)
                dA_prev = dA_prev + _window_place(jnp.where(hit, dA, 0), a, b, stride, in_hw)
        return dA_prev, {}


@dataclass(frozen=True)
class BugAvgPool2D(jn.AvgPool2D):
    bug: str = ""

    def backward(self, params, cache, dA):
        A_prev = cache["A_prev"]
        (kh, kw), stride, in_hw = self.window, self.strides, A_prev.shape[1:3]
        part = dA if self.bug == "no_division" else \
            dA / (kh if self.bug == "divide_by_kh" else kh * kw)
        if stride == (kh, kw):
            return _untile([[part] * kw for _ in range(kh)], in_hw), {}
        dA_prev = jnp.zeros_like(A_prev)
        for i in range(kh):
            for j in range(kw):
                placed = _window_place(part, i, j, stride, in_hw)
                dA_prev = placed if self.bug == "assign_not_add" else dA_prev + placed
        return dA_prev, {}


# --- RNN, LSTM, GRU: copies of the BPTT scans --------------------------------------------------
def _rnn_backward(bug, Wx, Wh, X, Hs, h0, dh_T, dY):
    WxT, WhT = rec._transposed(Wx), rec._transposed(Wh)

    def step(carry, inputs):
        dh_next, dWx, dWh, db = carry
        x_t, h_t, h_prev, dy_t = inputs
        dh = dh_next if (dy_t is None or bug == "dy_t_ignored") else dh_next + dy_t
        dZ = dh * (1 - h_t) if bug == "tanh_prime_no_square" else dh * (1 - h_t * h_t)
        dWh_new = dWh + dZ @ h_prev.T
        if bug == "dWh_one_entry":
            dWh_new = dWh_new + REL * jnp.zeros_like(Wh).at[0, 1].set(1.0) * (dZ @ h_prev.T)
        carry = ((Wh if bug == "transposed_weight" else WhT) @ dZ,
                 dZ @ x_t.T if bug == "assign_not_add" else dWx + dZ @ x_t.T, dWh_new,
                 db + jnp.sum(dZ, axis=1, keepdims=True))
        return carry, WxT @ dZ

    zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros((Wh.shape[0], 1), Wh.dtype))
    prev = Hs if bug == "bptt_off_by_one" else rec._previous(h0, Hs)
    (dh0, dWx, dWh, db), dX = lax.scan(step, (dh_T, *zeros), (X, Hs, prev, dY), reverse=True)
    return dX, dWx, dWh, db


@dataclass(frozen=True)
class BugRNN(jn.RNN):
    bug: str = ""

    def backward(self, params, cache, dy):
        dh_T, dY = rec._upstream(self, dy)
        dX, dWx, dWh, db = _rnn_backward(self.bug, params["Wx"], params["Wh"], cache["X"],
                                         cache["Hs"], cache["h0"], dh_T, dY)
        return jnp.moveaxis(dX, 0, 1), {"Wx": dWx, "Wh": dWh, "b": db}


def _lstm_backward(bug, Wx, Wh, X, Hs, Cs, G, h0, c0, dh_T, dY):
    H = Hs.shape[1]
    WxT, WhT = rec._transposed(Wx), rec._transposed(Wh)

    def step(carry, inputs):
        dh_next, dc_next, dWx, dWh, db = carry
        x_t, c_t, c_prev, h_prev, gates, dy_t = inputs
        i, f, g, o = (gates[k * H:(k + 1) * H] for k in range(4))
        dh = dh_next if dy_t is None else dh_next + dy_t
        tau = jnp.tanh(c_t)
        dc = dc_next + dh * o * ((1 - tau) if bug == "cell_tanh_prime_no_square"
                                 else (1 - tau * tau))
        di = dc * i * (1 - i) if bug == "input_gate_missing_g" else dc * g * i * (1 - i)
        df = dc * (c_t if bug == "forget_uses_c_t" else c_prev) * f * (1 - f)
        do = dh * (c_t if bug == "output_gate_no_tanh" else tau) * o * (1 - o)
        parts = [df, di] if bug == "gates_i_f_swapped" else [di, df]
        dZ = jnp.concatenate([*parts, dc * i * (1 - g * g), do])
        dWx_new = dWx + dZ @ x_t.T
        if bug == "dWx_one_entry":
            dWx_new = dWx_new + REL * jnp.zeros_like(Wx).at[1, 0].set(1.0) * (dZ @ x_t.T)
        carry = (WhT @ dZ, dc if bug == "cell_grad_not_gated" else dc * f, dWx_new,
                 dZ @ h_prev.T if bug == "assign_not_add" else dWh + dZ @ h_prev.T,
                 db + jnp.sum(dZ, axis=1, keepdims=True))
        return carry, WxT @ dZ

    zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros((Wh.shape[0], 1), Wh.dtype))
    prev_h = Hs if bug == "bptt_off_by_one" else rec._previous(h0, Hs)
    inputs = (X, Cs, rec._previous(c0, Cs), prev_h, G, dY)
    (_, _, dWx, dWh, db), dX = lax.scan(step, (dh_T, jnp.zeros_like(dh_T), *zeros), inputs,
                                        reverse=True)
    return dX, dWx, dWh, db


@dataclass(frozen=True)
class BugLSTM(jn.LSTM):
    bug: str = ""

    def backward(self, params, cache, dy):
        dh_T, dY = rec._upstream(self, dy)
        dX, dWx, dWh, db = _lstm_backward(self.bug, params["Wx"], params["Wh"], cache["X"],
                                          cache["Hs"], cache["Cs"], cache["G"], cache["h0"],
                                          cache["c0"], dh_T, dY)
        return jnp.moveaxis(dX, 0, 1), {"Wx": dWx, "Wh": dWh, "b": db}


def _gru_backward(bug, Wx, Wh, X, Hs, G, Nh, h0, dh_T, dY):
    H = Hs.shape[1]
    WxT, WhT = rec._transposed(Wx), rec._transposed(Wh)

    def step(carry, inputs):
        dh_next, dWx, dWh, dbx, dbh = carry
        x_t, h_prev, gates, Nh_t, dy_t = inputs
        r, z, n = (gates[k * H:(k + 1) * H] for k in range(3))
        dh = dh_next if dy_t is None else dh_next + dy_t
        dA_n = dh * (1 - z) * (1 - n * n)
        dz = dh * ((n - h_prev) if bug == "update_sign" else (h_prev - n)) * z * (1 - z)
        dA_rz = jnp.concatenate([dA_n * Nh_t * r * (1 - r), dz])
        dA = jnp.concatenate([dA_rz, dA_n])
        dB = jnp.concatenate([dA_rz, dA_n if bug == "reset_not_applied" else dA_n * r])
        carry = (WhT @ dB if bug == "carry_missing_z" else WhT @ dB + dh * z,
                 dWx + dA @ x_t.T, dWh + dB @ h_prev.T,
                 dbx + jnp.sum(dA, axis=1, keepdims=True),
                 dbh + jnp.sum(dA if bug == "bh_uses_dA" else dB, axis=1, keepdims=True))
        return carry, WxT @ dA

    b0 = jnp.zeros((Wh.shape[0], 1), Wh.dtype)
    prev = Hs if bug == "bptt_off_by_one" else rec._previous(h0, Hs)
    (_, dWx, dWh, dbx, dbh), dX = lax.scan(
        step, (dh_T, jnp.zeros_like(Wx), jnp.zeros_like(Wh), b0, b0), (X, prev, G, Nh, dY),
        reverse=True)
    return dX, dWx, dWh, dbx, dbh


if hasattr(jn, "GRU"):
    @dataclass(frozen=True)
    class BugGRU(jn.GRU):
        bug: str = ""

        def backward(self, params, cache, dy):
            dh_T, dY = rec._upstream(self, dy)
            dX, dWx, dWh, dbx, dbh = _gru_backward(self.bug, params["Wx"], params["Wh"],
                                                   cache["X"], cache["Hs"], cache["G"],
                                                   cache["Nh"], cache["h0"], dh_T, dY)
            return jnp.moveaxis(dX, 0, 1), {"Wx": dWx, "Wh": dWh, "bx": dbx, "bh": dbh}


# --- Embedding, LayerNorm ----------------------------------------------------------------------
@dataclass(frozen=True)
class BugEmbedding(jn.Embedding):
    bug: str = ""

    def backward(self, params, cache, dy):
        E, ids = params["E"], cache["ids"]
        at = jnp.zeros(E.shape, dy.dtype).at[:, (ids + 1) % self.vocab
                                             if self.bug == "ids_shifted" else ids]
        dE = at.set(dy, mode="drop") if self.bug == "assign_not_add" else \
            at.add(-dy if self.bug == "sign" else dy, mode="drop")
        return None, {"E": dE}


@dataclass(frozen=True)
class BugLayerNorm(jn.LayerNorm):
    bug: str = ""

    def backward(self, params, cache, dy):
        """A copy of `layernorm_backward`."""
        gamma, xhat, rstd = params["gamma"], cache["xhat"], cache["rstd"]
        d = xhat.shape[0]
        dxhat = dy if self.bug == "dxhat_missing_gamma" else gamma * dy
        mean_dxhat = jnp.mean(dxhat, axis=-1 if self.bug == "mean_wrong_axis" else 0,
                              keepdims=True)
        proj = jnp.mean(dxhat * xhat, axis=0, keepdims=True)
        dx = dxhat - mean_dxhat - (0 if self.bug == "projection_dropped" else xhat * proj)
        dx = dx if self.bug == "rstd_dropped" else rstd * dx
        dgamma = jnp.sum(dy if self.bug == "dgamma_missing_xhat" else dy * xhat,
                         axis=1).reshape(d, 1)
        return dx, {"gamma": dgamma, "beta": jnp.sum(dy, axis=1).reshape(d, 1)}


# --- attention ---------------------------------------------------------------------------------
def _attend_backward(bug, q, k, v, P, scale, d_out):
    dv = jnp.einsum("...qk,...qd->...kd", P, d_out)
    dP = jnp.einsum("...qd,...kd->...qk", d_out, v)
    dS = P * dP if bug == "softmax_no_subtract" else \
        P * (dP - jnp.sum(P * dP, axis=-1, keepdims=True))
    dS = dS if bug == "scale_dropped" else dS * scale
    dq = jnp.einsum("...qk,...kd->...qd", dS, q if bug == "dq_uses_q" else k)
    dk = jnp.einsum("...qk,...kd->...qd", dS, q) if bug == "dk_not_transposed" else \
        jnp.einsum("...qk,...qd->...kd", dS, q)
    return dq, dk, dv


def _mha_backward(bug, heads, params, cache, dy):
    """A copy of `MultiHeadAttention.backward`."""
    d = params["Wq"].shape[1]
    _, T, m = dy.shape
    h, d_k = heads, d // heads
    dY = _rows_first(dy)
    dWo = cache["O"].T @ dY if bug == "dWo_transposed" else _att_transposed(dY) @ cache["O"]
    dbo = jnp.sum(dY, axis=0).reshape(d, 1)
    do = (dY @ params["Wo"]).reshape(m, T, h, d_k).transpose(0, 2, 1, 3)
    dq, dk, dv = _attend_backward(bug, cache["q"], cache["k"], cache["v"], cache["P"],
                                  1 / math.sqrt(d_k), do)
    dQKV = jnp.stack([dq, dk, dv], axis=2).transpose(0, 3, 2, 1, 4).reshape(m * T, 3 * d)
    W3 = jnp.concatenate([params["Wq"], params["Wk"], params["Wv"]])
    dW3 = _att_transposed(dQKV) @ cache["X"]
    if bug == "dWq_one_entry":
        dW3 = dW3.at[0, 1].multiply(1 + REL)
    db3 = jnp.sum(dQKV, axis=0).reshape(3 * d, 1)
    dx = _rows_back(dQKV @ W3, T, m)
    grads = {"Wq": dW3[:d], "Wk": dW3[d:2 * d], "Wv": dW3[2 * d:], "Wo": dWo,
             "bq": db3[:d], "bk": db3[d:2 * d], "bv": db3[2 * d:], "bo": dbo}
    return dx, {name: grads[name] for name in params}


@dataclass(frozen=True)
class BugMultiHeadAttention(jn.MultiHeadAttention):
    bug: str = ""

    def backward(self, params, cache, dy):
        return _mha_backward(self.bug, self.heads, params, cache, dy)


@dataclass(frozen=True)
class BugTransformerBlock(jn.TransformerBlock):
    bug: str = ""

    def backward(self, params, cache, dy):
        """A copy of `TransformerBlock.backward`."""
        from jaxnet.layers.attention import ATTENTION_KEYS
        from jaxnet.layers.dense import linear_backward

        dW2, db2, dA1 = linear_backward(dy, cache["A1"], params["W2"])
        dZ1 = dA1 if self.bug == "gelu_prime_dropped" else \
            dA1 * activations.gelu_prime(cache["Z1"])
        dW1, db1, db = linear_backward(dZ1, cache["b"], params["W1"])
        dh2, dg2, dbeta2 = layernorm_backward(params["ln2_gamma"], cache["xhat2"],
                                              cache["rstd2"],
                                              dy if self.bug == "ln2_given_dy" else db)
        dh = dh2 if self.bug == "residual_h_dropped" else dy + dh2
        att = {k: params[k] for k in ATTENTION_KEYS}
        da, att_grads = _mha_backward("", self.heads, att, cache["att"], dh)
        dx1, dg1, dbeta1 = layernorm_backward(params["ln1_gamma"], cache["xhat1"],
                                              cache["rstd1"], da)
        grads = {"ln1_gamma": dg1, "ln1_beta": dbeta1, **att_grads, "ln2_gamma": dg2,
                 "ln2_beta": dbeta2, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
        return (dx1 if self.bug == "residual_x_dropped" else dh + dx1), \
            {name: grads[name] for name in params}


# --- a bug in the network's output gradient (the loss, no layer) -------------------------------
@dataclass(frozen=True)
class BugSequential(Sequential):
    bug: str = ""

    def _output_grad(self, Z, A, Y, *, shortcut=True):
        """A copy of `Sequential._output_grad` (matching pairs: the `A − Y` shortcut)."""
        count = math.prod(A.shape[1:])
        if self.bug == "count_is_m":  # 1/m where the mean runs over T·m positions
            count = A.shape[-1]
        if self.bug == "missing_1_over_m":
            count = 1
        return "dZ", ((Y - A) if self.bug == "residual_sign" else (A - Y)) / count


# --- building the points -----------------------------------------------------------------------
def _normal(seed, shape, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, F64)


def _onehot(seed, n, shape_rest):
    ids = np.random.default_rng(seed).integers(0, n, shape_rest)
    return jnp.asarray(np.moveaxis(np.eye(n)[ids], -1, 0), F64)


def _jitter(params, seed, scale=0.5):
    """Every parameter moved by N(0, scale²): biases and gains away from 0 and 1 (a random
    point), so that no gradient term hides behind an initial value."""
    rng = np.random.default_rng(seed)
    return [{k: v + jnp.asarray(rng.standard_normal(v.shape) * scale, F64)
             for k, v in p.items()} for p in params]


def network(layers, input_shape, X, Y, *, seed=0, jitter=0.5, loss=None, tweak=None,
            seq_cls=Sequential, **seq_options):
    """A `build` function: the network, its float64 parameters at a random point."""
    def build():
        with jax.enable_x64(True):
            net = seq_cls(tuple(layers), input_shape=input_shape, loss=loss, **seq_options)
            params = net.init(jax.random.key(seed), dtype=F64)
            if jitter:
                params = _jitter(params, seed + 100, jitter)
            if tweak is not None:
                params = tweak(params)
            return Problem(params=params, net=net, X=X() if callable(X) else X,
                           Y=Y() if callable(Y) else Y)
    return build


def _zero_biases(params):
    return [{k: (jnp.zeros_like(v) if k.startswith("b") else v) for k, v in p.items()}
            for p in params]


def _scaled(factor, layer=0, keys=None):
    def tweak(params):
        out = list(params)
        out[layer] = {k: v * factor if keys is None or k in keys else v
                      for k, v in params[layer].items()}
        return out
    return tweak


M = 5  # examples per batch


def _vec(n, seed=1, m=M):
    return lambda: _normal(seed, (n, m))


def _img(C, H, W, seed=1, m=M):
    return lambda: _normal(seed, (C, H, W, m))


def _seq(n, T, seed=1, m=M):
    return lambda: _normal(seed, (n, T, m))


def _cls(n, seed=2, m=M):
    return lambda: _onehot(seed, n, (m,))


def _tokens(vocab, T, seed=3, m=M, repeat=True):
    def make():
        ids = np.random.default_rng(seed).integers(0, vocab, (T, m))
        if repeat:
            ids[1] = ids[0]  # a token used twice in every example: its gradients add up
        return jnp.asarray(ids, jnp.int32)
    return make


def _kink_inputs(n, m=M, seed=1):
    """Inputs with zero columns: with zero biases every ReLU pre-activation of those
    examples is exactly 0, at the kink."""
    def make():
        X = np.random.default_rng(seed).standard_normal((n, m))
        X[:, ::2] = 0.0
        return jnp.asarray(X, F64)
    return make


def _tie_images(C=1, H=4, W=4, m=M, seed=1):
    """Images of a constant value per example: every convolution output of a valid window is
    the same, so every max-pool window is a tie (and stays one along any parameter)."""
    def make():
        v = np.random.default_rng(seed).standard_normal(m)
        return jnp.asarray(np.broadcast_to(v, (C, H, W, m)).copy(), F64)
    return make


def _int_images(C=1, H=4, W=4, m=M, seed=1):
    """Integer-valued images (0 … 2): many equal entries, so many max-pool ties."""
    return lambda: jnp.asarray(np.random.default_rng(seed).integers(0, 3, (C, H, W, m)), F64)


# --- the cases ---------------------------------------------------------------------------------
def _dense_cases():
    out = []
    mid = lambda bug, act="tanh": [jn.Dense(4, "tanh"), BugDense(4, act, bug=bug),
                                   jn.Dense(3, "softmax")]
    for bug, leaves, act, classic in [
            ("transposed_weight", ("dx",), "tanh", "a transposed weight"),
            ("dW_uses_output", ("W",), "tanh", ""),
            ("db_from_dA", ("b",), "tanh", ""),
            ("db_mean", ("b",), "tanh", "a stray 1/m"),
            ("tanh_prime_of_Z", ("dx", "W", "b"), "tanh", ""),
            ("sigmoid_prime_sign", ("dx", "W", "b"), "sigmoid", ""),
            ("no_activation_prime", ("dx", "W", "b"), "tanh", ""),
            ("dW_one_entry", ("W",), "tanh", "a bug of relative size 1e-4 in one entry")]:
        out.append(Case(f"dense/{bug}", "Dense", True, bug,
                        network(mid(bug, act), (4,), _vec(4), _cls(3)), 1, leaves, classic))
    out.append(Case("dense/relu_kink_half", "Dense", True, "relu g'(0) = 1/2",
                    network([jn.Dense(4, "tanh"), BugDense(4, "relu", bug="relu_kink_half"),
                             jn.Dense(3, "softmax")], (4,), _kink_inputs(4), _cls(3),
                            tweak=lambda p: _zero_biases(p)[:1] + [
                                {"W": p[1]["W"], "b": jnp.zeros_like(p[1]["b"])}, p[2]],
                            jitter=0.5),
                    1, ("dx", "W", "b"), "a bug only at a ReLU kink"))
    out.append(Case("dense/softmax_ce_jacobian", "Dense", True, "dZ ⊙ A(1 − A) at the output",
                    network([jn.Dense(4, "tanh"), BugDense(3, "softmax", bug="softmax_ce_jacobian")],
                            (4,), _vec(4), _cls(3)),
                    1, ("dx", "W", "b"), "the softmax–cross-entropy derivative wrong"))
    out.append(Case("dense/output_dW_one_entry", "Dense", True, "dW[0,1]·(1+1e-4), output layer",
                    network([jn.Dense(4, "tanh"), BugDense(3, "softmax", bug="dW_one_entry")],
                            (4,), _vec(4), _cls(3)),
                    1, ("W",), "a bug of relative size 1e-4 in one entry"))
    out.append(Case("dense/first_layer_db_from_dA", "Dense", True, "db from dA, first layer",
                    network([BugDense(4, "tanh", bug="db_from_dA"), jn.Dense(1, "sigmoid")],
                            (3,), _vec(3), lambda: jnp.asarray(
                                np.random.default_rng(4).integers(0, 2, (1, M)), F64)),
                    0, ("b",)))
    return out


def _conv_cases():
    out = []
    for bug, leaves in [("dx_kernel_not_flipped", ("dx",)), ("dx_channels_swapped", ("dx",)),
                        ("dW_kernel_flipped", ("W",)), ("db_from_dA", ("b",)),
                        ("no_activation_prime", ("dx", "W", "b")), ("dW_one_entry", ("W",))]:
        layers = [jn.Conv2D(2, 3, padding="same", activation="tanh"),
                  BugConv2D(2, 3, padding="same", activation="tanh", bug=bug),
                  jn.Flatten(), jn.Dense(3, "softmax")]
        out.append(Case(f"conv/{bug}", "Conv2D", True, bug,
                        network(layers, (1, 4, 4), _img(1, 4, 4), _cls(3)), 1, leaves,
                        "a bug of relative size 1e-4 in one entry" if "one_entry" in bug else ""))
    return out


def _pool_cases():
    out = []
    conv = jn.Conv2D(2, 2, activation="tanh")  # (1, 5, 5) -> (2, 4, 4)
    head = [jn.Flatten(), jn.Dense(3, "softmax")]
    for bug, pool, images, classic in [
            ("every_tied_max", BugMaxPool2D(2, stride=1, bug="every_tied_max"),
             _tie_images(1, 5, 5), "a bug only at a max-pool tie"),
            ("offsets_swapped", BugMaxPool2D(2, stride=1, bug="offsets_swapped"),
             _img(1, 5, 5), ""),
            ("mask_dropped", BugMaxPool2D(2, bug="mask_dropped"), _img(1, 5, 5), ""),
            ("offset_uses_kh", BugMaxPool2D((2, 1), bug="offset_uses_kh"), _img(1, 5, 5), "")]:
        out.append(Case(f"maxpool/{bug}", "MaxPool2D", True, bug,
                        network([conv, pool, *head], (1, 5, 5), images, _cls(3)), 1, ("dx",),
                        classic))
    for bug, pool in [("no_division", BugAvgPool2D(2, bug="no_division")),
                      ("divide_by_kh", BugAvgPool2D((1, 2), bug="divide_by_kh")),
                      ("assign_not_add", BugAvgPool2D(2, stride=1, bug="assign_not_add"))]:
        out.append(Case(f"avgpool/{bug}", "AvgPool2D", True, bug,
                        network([conv, pool, *head], (1, 5, 5), _img(1, 5, 5), _cls(3)), 1,
                        ("dx",), "= instead of += for a node used twice"
                        if bug == "assign_not_add" else ""))
    return out


def _recurrent_cases():
    out = []
    T, n_x, H = 4, 3, 3
    Yseq = lambda: _normal(5, (1, T, M))
    Ylast = lambda: _normal(5, (1, M))
    rnn_bugs = [("bptt_off_by_one", ("Wh",), "BPTT off by one step"),
                ("assign_not_add", ("Wx",), "= instead of += for a node used twice"),
                ("transposed_weight", ("dx", "Wx", "Wh", "b"), "a transposed weight"),
                ("tanh_prime_no_square", ("dx", "Wx", "Wh", "b"), ""),
                ("dy_t_ignored", ("dx", "Wx", "Wh", "b"), ""),
                ("dWh_one_entry", ("Wh",), "a bug of relative size 1e-4 in one entry")]
    for bug, leaves, classic in rnn_bugs:
        seq = bug == "dy_t_ignored"
        layers = [jn.Dense(n_x, "tanh"), BugRNN(H, return_sequences=seq, bug=bug), jn.Dense(1)]
        out.append(Case(f"rnn/{bug}", "RNN", True, bug,
                        network(layers, (n_x, T), _seq(n_x, T), Yseq if seq else Ylast),
                        1, leaves, classic))
    lstm_bugs = [("forget_uses_c_t", ""), ("cell_grad_not_gated", ""),
                 ("output_gate_no_tanh", ""), ("cell_tanh_prime_no_square", ""),
                 ("input_gate_missing_g", ""), ("gates_i_f_swapped", ""),
                 ("bptt_off_by_one", "BPTT off by one step"),
                 ("assign_not_add", "= instead of += for a node used twice"),
                 ("dWx_one_entry", "a bug of relative size 1e-4 in one entry")]
    for bug, classic in lstm_bugs:
        leaves = {"bptt_off_by_one": ("Wh",), "assign_not_add": ("Wh",),
                  "dWx_one_entry": ("Wx",)}.get(bug, ("dx", "Wx", "Wh", "b"))
        layers = [jn.Dense(n_x, "tanh"), BugLSTM(H, return_sequences=True, bug=bug),
                  jn.Dense(1)]
        out.append(Case(f"lstm/{bug}", "LSTM", True, bug,
                        network(layers, (n_x, T), _seq(n_x, T), Yseq), 1, leaves, classic))
    if hasattr(jn, "GRU"):
        for bug, leaves, classic in [
                ("update_sign", ("dx", "Wx", "Wh", "bx", "bh"), ""),
                ("reset_not_applied", ("dx", "Wx", "Wh", "bx", "bh"), ""),
                ("carry_missing_z", ("dx", "Wx", "Wh", "bx", "bh"), ""),
                ("bh_uses_dA", ("bh",), ""),
                ("bptt_off_by_one", ("Wh",), "BPTT off by one step")]:
            layers = [jn.Dense(n_x, "tanh"), BugGRU(H, return_sequences=True, bug=bug),
                      jn.Dense(1)]
            out.append(Case(f"gru/{bug}", "GRU", True, bug,
                            network(layers, (n_x, T), _seq(n_x, T), Yseq), 1, leaves, classic))
    return out


def _embedding_norm_cases():
    out = []
    V, T, d = 6, 3, 4
    for bug, classic in [("assign_not_add", "= instead of += for a node used twice"),
                         ("sign", ""), ("ids_shifted", "")]:
        layers = [BugEmbedding(V, d, bug=bug), jn.Dense(3, "softmax")]
        out.append(Case(f"embedding/{bug}", "Embedding", True, bug,
                        network(layers, (T,), _tokens(V, T), lambda: _onehot(2, 3, (T, M))),
                        0, ("E",), classic))
    for bug, leaves, classic in [
            ("mean_wrong_axis", ("dx",), "LayerNorm's mean over the wrong axis"),
            ("rstd_dropped", ("dx",), ""), ("projection_dropped", ("dx",), ""),
            ("dxhat_missing_gamma", ("dx",), ""), ("dgamma_missing_xhat", ("gamma",), "")]:
        layers = [jn.Dense(4, "tanh"), BugLayerNorm(bug=bug), jn.Dense(3, "softmax")]
        out.append(Case(f"layernorm/{bug}", "LayerNorm", True, bug,
                        network(layers, (4,), _vec(4), _cls(3)), 1, leaves, classic))
    return out


def _attention_cases():
    out = []
    d, T = 4, 3
    Y = lambda: _normal(5, (1, T, M))
    for bug, leaves in [("softmax_no_subtract", ("dx", "Wq", "Wk", "bq", "bk")),
                        ("scale_dropped", ("dx", "Wq", "Wk", "bq", "bk")),
                        ("dq_uses_q", ("dx", "Wq", "bq")),
                        ("dk_not_transposed", ("dx", "Wk", "bk")),
                        ("dWo_transposed", ("Wo",)), ("dWq_one_entry", ("Wq",))]:
        layers = [jn.Dense(d, "tanh"), BugMultiHeadAttention(2, bug=bug), jn.Dense(1)]
        out.append(Case(f"attention/{bug}", "MultiHeadAttention", True, bug,
                        network(layers, (d, T), _seq(d, T), Y), 1, leaves,
                        "a transposed weight" if bug == "dWo_transposed" else
                        "a bug of relative size 1e-4 in one entry" if "one_entry" in bug else ""))
    block_leaves = ("dx", "ln1_gamma", "ln1_beta", "Wq", "Wk", "Wv", "Wo", "bq", "bv", "bo")
    for bug, leaves, classic in [
            ("residual_x_dropped", ("dx",), "= instead of += for a node used twice"),
            ("residual_h_dropped", block_leaves, "= instead of += for a node used twice"),
            ("gelu_prime_dropped", block_leaves + ("ln2_gamma", "ln2_beta", "W1", "b1"), ""),
            ("ln2_given_dy", block_leaves + ("ln2_gamma", "ln2_beta"), "")]:
        layers = [jn.Dense(d, "tanh"), BugTransformerBlock(2, 6, bug=bug), jn.Dense(1)]
        out.append(Case(f"transformer/{bug}", "TransformerBlock", True, bug,
                        network(layers, (d, T), _seq(d, T), Y), 1, leaves, classic))
    return out


def _loss_cases():
    """Bugs in the output gradient `dŶ` of the network's loss: every layer's own backward is
    right, so no layer is to blame."""
    out = []
    for bug, layers, shape, Y, classic in [
            ("missing_1_over_m", [jn.Dense(4, "tanh"), jn.Dense(3, "softmax")], (4,), _cls(3),
             "a missing 1/m"),
            ("residual_sign", [jn.Dense(4, "tanh"), jn.Dense(1, "sigmoid")], (4,),
             lambda: jnp.asarray(np.random.default_rng(4).integers(0, 2, (1, M)), F64),
             "the softmax–cross-entropy derivative wrong"),
            ("count_is_m", [jn.RNN(3, return_sequences=True), jn.Dense(1)], (2, 4),
             lambda: _normal(5, (1, 4, M)), "a missing 1/m")]:
        X = _vec(4) if shape == (4,) else _seq(2, 4)
        out.append(Case(f"loss/{bug}", "loss", True, bug,
                        network(layers, shape, X, Y, seq_cls=BugSequential, bug=bug),
                        None, (), classic))
    return out


def _gan_problem(loss, grad, names, shapes, scale=1.0, seed=7, bug=None):
    def build():
        with jax.enable_x64(True):
            params = {n: _normal(seed + i, s, scale) for i, (n, s) in enumerate(zip(names, shapes))}
            return Problem(params=params, loss_fn=lambda p: loss(*(p[n] for n in names)),
                           grad_fn=lambda p: dict(zip(names, _as_tuple(grad(*(p[n] for n in
                                                                                names))))))
    return build


def _as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def _gan_cases():
    sig = jax.nn.sigmoid
    D, G = ("real", "fake"), ("fake",)
    sd, sg = ((1, 6), (1, 4)), ((1, 4),)
    wrong = [
        ("d_missing_1_over_m", gan.discriminator_loss,
         lambda lr, lf: (-sig(-lr), sig(lf) / lf.size), D, sd, ("real",), "a missing 1/m"),
        ("d_sign_real", gan.discriminator_loss,
         lambda lr, lf: (sig(-lr) / lr.size, sig(lf) / lf.size), D, sd, ("real",), ""),
        ("d_sizes_swapped", gan.discriminator_loss,
         lambda lr, lf: (-sig(-lr) / lf.size, sig(lf) / lf.size), D, sd, ("real",), ""),
        ("ns_generator_uses_minimax", gan.generator_loss, lambda lf: -sig(lf) / lf.size, G, sg,
         ("fake",), ""),
        ("minimax_uses_ns", gan.minimax_generator_loss, lambda lf: -sig(-lf) / lf.size, G, sg,
         ("fake",), ""),
        ("ls_d_wrong_m", gan.ls_discriminator_loss,
         lambda sr, sf: ((sr - 1) / sr.size, sf / sr.size), D, sd, ("fake",), ""),
        ("ls_generator_sign", gan.ls_generator_loss, lambda sf: (sf + 1) / sf.size, G, sg,
         ("fake",), "")]
    out = [Case(f"gan/{bug}", "GAN losses", True, bug, _gan_problem(loss, grad, names, shapes),
                None, leaves, classic)
           for bug, loss, grad, names, shapes, leaves, classic in wrong]
    out += [
        Case("gan/ok_non_saturating_saturated", "GAN losses", False,
             "logits ±40 (σ saturated)", _gan_problem(
                 gan.generator_loss, gan.generator_loss_grad, G, sg, scale=40.0)),
        Case("gan/ok_discriminator_saturated", "GAN losses", False, "logits ±40",
             _gan_problem(gan.discriminator_loss, gan.discriminator_loss_grad, D, sd,
                          scale=40.0)),
        Case("gan/ok_least_squares_1e6", "GAN losses", False, "scores ~1e3: loss ~1e6",
             _gan_problem(gan.ls_discriminator_loss, gan.ls_discriminator_loss_grad, D, sd,
                          scale=1.5e3))]
    return out


def _correct_cases():
    """The library's own layers at points where checkers stumble."""
    ok = []

    def add(name, family, what, build):
        ok.append(Case(f"ok/{name}", family, False, what, build))

    relu_net = [jn.Dense(4, "relu"), jn.Dense(4, "relu"), jn.Dense(3, "softmax")]
    add("relu_kinks_zero_biases", "Dense", "ReLU kinks: zero biases, zero input columns",
        network(relu_net, (4,), _kink_inputs(4), _cls(3), tweak=_zero_biases))
    add("leaky_relu_kinks", "Dense", "leaky ReLU kinks: zero biases, zero input columns",
        network([jn.Dense(4, "leaky_relu"), jn.Dense(3, "softmax")], (4,), _kink_inputs(4),
                _cls(3), tweak=_zero_biases))
    add("relu_integer_inputs", "Dense", "integer-valued inputs 0…3, zero biases",
        network(relu_net, (4,), lambda: jnp.asarray(
            np.random.default_rng(1).integers(0, 4, (4, M)), F64), _cls(3), tweak=_zero_biases))
    add("sigmoid_saturated", "Dense", "saturated sigmoid output (logits ~±30)",
        network([jn.Dense(4, "tanh"), jn.Dense(1, "sigmoid")], (4,), _vec(4),
                lambda: jnp.asarray(np.random.default_rng(4).integers(0, 2, (1, M)), F64),
                tweak=_scaled(30.0, 1)))
    add("sigmoid_hidden_saturated", "Dense", "saturated sigmoid hidden units (W ×20)",
        network([jn.Dense(4, "sigmoid"), jn.Dense(3, "softmax")], (4,), _vec(4), _cls(3),
                tweak=_scaled(20.0, 0)))
    add("softmax_saturated", "Dense", "softmax logits ~±50",
        network([jn.Dense(4, "tanh"), jn.Dense(3, "softmax")], (4,), _vec(4), _cls(3),
                tweak=_scaled(50.0, 1)))
    add("loss_1e6", "Dense", "squared error of magnitude 1e6 (targets ~1.5e3)",
        network([jn.Dense(4, "tanh"), jn.Dense(2)], (4,), _vec(4), lambda: _normal(5, (2, M),
                                                                                   1.5e3)))
    add("conv_relu_kinks", "Conv2D", "conv ReLU kinks: zero bias, zero images",
        network([jn.Conv2D(2, 3, padding="same", activation="relu"), jn.Flatten(),
                 jn.Dense(3, "softmax")], (1, 4, 4), lambda: _img(1, 4, 4)() * jnp.asarray(
                     [0, 1, 0, 1, 0], F64), _cls(3), tweak=_zero_biases))
    conv = jn.Conv2D(2, 2, activation="tanh")
    head = [jn.Flatten(), jn.Dense(3, "softmax")]
    add("maxpool_ties", "MaxPool2D", "max-pool ties (constant images), stride = size",
        network([conv, jn.MaxPool2D(2), *head], (1, 5, 5), _tie_images(1, 5, 5), _cls(3)))
    add("maxpool_ties_overlapping", "MaxPool2D", "max-pool ties, overlapping windows",
        network([conv, jn.MaxPool2D(2, stride=1), *head], (1, 5, 5), _tie_images(1, 5, 5),
                _cls(3)))
    add("maxpool_integer_images", "MaxPool2D", "integer images 0…2: ties through a 1x1 conv",
        network([jn.Conv2D(2, 1), jn.MaxPool2D(2), *head], (1, 4, 4), _int_images(), _cls(3)))
    add("avgpool_integer_images", "AvgPool2D", "integer images, overlapping windows",
        network([conv, jn.AvgPool2D(2, stride=1), *head], (1, 5, 5), _int_images(1, 5, 5),
                _cls(3)))
    T, n_x, H = 4, 3, 3
    add("rnn_saturated", "RNN", "tanh saturated (weights ×8)",
        network([jn.RNN(H), jn.Dense(1)], (n_x, T), _seq(n_x, T), lambda: _normal(5, (1, M)),
                tweak=_scaled(8.0, 0)))
    add("lstm_saturated_gates", "LSTM", "gates saturated (weights ×8, forget bias 20)",
        network([jn.LSTM(H, return_sequences=True), jn.Dense(1)], (n_x, T), _seq(n_x, T),
                lambda: _normal(5, (1, T, M)), tweak=lambda p: [
                    {"Wx": p[0]["Wx"] * 8, "Wh": p[0]["Wh"] * 8,
                     "b": p[0]["b"].at[H:2 * H].set(20.0)}, p[1]]))
    if hasattr(jn, "GRU"):
        add("gru_saturated", "GRU", "gates saturated (weights ×8)",
            network([jn.GRU(H, return_sequences=True), jn.Dense(1)], (n_x, T), _seq(n_x, T),
                    lambda: _normal(5, (1, T, M)), tweak=_scaled(8.0, 0)))
    V, Tt = 6, 3
    add("embedding_integer_ids", "Embedding", "integer token ids, a token used twice",
        network([jn.Embedding(V, 4), jn.Dense(3, "softmax")], (Tt,), _tokens(V, Tt),
                lambda: _onehot(2, 3, (Tt, M))))
    add("embedding_rnn_class_ids", "Embedding", "token ids in, integer class ids as targets",
        network([jn.Embedding(V, 3), jn.RNN(3, return_sequences=True), jn.Dense(V, "softmax")],
                (Tt,), _tokens(V, Tt), _tokens(V, Tt, seed=9, repeat=False)))
    add("layernorm_constant_features", "LayerNorm", "features equal in some examples (σ ≈ 0)",
        network([jn.LayerNorm(), jn.Dense(3, "softmax")], (4,), lambda: _vec(4)().at[:, :2].set(
            1.0), _cls(3)))
    add("attention_causal", "MultiHeadAttention", "causal mask (masked keys: zero weights)",
        network([jn.MultiHeadAttention(2, causal=True), jn.Dense(1)], (4, 3), _seq(4, 3),
                lambda: _normal(5, (1, 3, M))))
    add("transformer_gelu", "TransformerBlock", "pre-LN block, GELU, causal",
        network([jn.TransformerBlock(2, 6, causal=True), jn.Dense(1)], (4, 3), _seq(4, 3),
                lambda: _normal(5, (1, 3, M))))
    return ok


def all_cases() -> list[Case]:
    """Every case, wrong ones first."""
    wrong = (_dense_cases() + _conv_cases() + _pool_cases() + _recurrent_cases()
             + _embedding_norm_cases() + _attention_cases() + _loss_cases())
    gans = _gan_cases()
    return ([c for c in wrong + gans if c.wrong] + _correct_cases()
            + [c for c in gans if not c.wrong])


CASES = all_cases()
