"""Recurrent layers: the vanilla RNN, the LSTM and the GRU, each forward beside its
backpropagation through time (BPTT), written by hand.

Sequences are `(n_x, T, m)`: features first, time on axis 1, examples last.  Inside, time is
moved to the front (`(T, n_x, m)`) so that one `lax.scan` walks over it; each step is the
document's layer on the columns of one time step.  The weights are shared by all steps, so
their gradients are sums over the steps; the hidden state's gradient flows backwards through
time in a second, reverse `lax.scan`.

Vanilla RNN (`Wx (H, n_x)`, `Wh (H, H)`, `b (H, 1)`):

    Z_t = Wx x_t + Wh h_{t-1} + b,   h_t = tanh(Z_t)                          t = 1 … T

    dh_t     = dy_t + Whᵀ dZ_{t+1}          (dZ_{T+1} = 0; dy_t = 0 but dy_T in last-state mode)
    dZ_t     = dh_t ⊙ (1 − h_t²)
    dWx      = Σ_t dZ_t x_tᵀ,   dWh = Σ_t dZ_t h_{t-1}ᵀ,   db = Σ_t Σ_columns dZ_t
    dx_t     = Wxᵀ dZ_t,        dh_0 = Whᵀ dZ_1

LSTM (`Wx (4H, n_x)`, `Wh (4H, H)`, `b (4H, 1)`, gate rows in PyTorch's order i, f, g, o):

    Z_t = Wx x_t + Wh h_{t-1} + b = [Z_i; Z_f; Z_g; Z_o]
    i = σ(Z_i),  f = σ(Z_f),  g = tanh(Z_g),  o = σ(Z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    dh_t     = dy_t + Whᵀ dZ_{t+1}
    dc_t     = dc_{t+1}^carried + dh_t ⊙ o ⊙ (1 − tanh²(c_t))      (carried: f_{t+1} ⊙ dc_{t+1})
    dZ_i     = dc_t ⊙ g ⊙ i(1 − i)          dZ_f = dc_t ⊙ c_{t-1} ⊙ f(1 − f)
    dZ_g     = dc_t ⊙ i ⊙ (1 − g²)          dZ_o = dh_t ⊙ tanh(c_t) ⊙ o(1 − o)
    dc_{t-1}^carried = dc_t ⊙ f
    dWx, dWh, db, dx_t, dh_0 as for the RNN with the stacked dZ_t (4H, m);  dc_0 = dc_1 ⊙ f_1

GRU (`Wx (3H, n_x)`, `Wh (3H, H)`, `bx (3H, 1)`, `bh (3H, 1)`, gate rows in PyTorch's order
r, z, n; two biases because `bh`'s n rows are multiplied by r):

    A_t = Wx x_t + bx = [A_r; A_z; A_n],   B_t = Wh h_{t-1} + bh = [B_r; B_z; B_n]
    r = σ(A_r + B_r),  z = σ(A_z + B_z),  n = tanh(A_n + r ⊙ B_n)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    dh_t     = dy_t + Whᵀ dB_{t+1} + z_{t+1} ⊙ dh_{t+1}     (h_{t} feeds both B_{t+1} and h_{t+1})
    dA_n     = dh_t ⊙ (1 − z) ⊙ (1 − n²)       dB_n = dA_n ⊙ r
    dA_r     = dA_n ⊙ B_n ⊙ r(1 − r)           dB_r = dA_r
    dA_z     = dh_t ⊙ (h_{t-1} − n) ⊙ z(1 − z)  dB_z = dA_z
    dWx      = Σ_t dA_t x_tᵀ,   dbx = Σ_t Σ_columns dA_t,   dx_t = Wxᵀ dA_t
    dWh      = Σ_t dB_t h_{t-1}ᵀ, dbh = Σ_t Σ_columns dB_t,  dh_0 = Whᵀ dB_1 + z_1 ⊙ dh_1

As vector-Jacobian products these have no `1/m` (see `jaxnet.layers.base`).  The derivation is
in `docs/layers/recurrent.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from .base import check_positive_int


def _orthogonal_blocks(normal, H):
    """Random orthogonal `(H, H)` blocks stacked on axis 0 from Gaussian `normal (blocks, H, H)`:
    the Q of each block's QR with its columns' signs fixed by R's diagonal (uniform over
    rotations).  The recurrent map then neither shrinks nor grows the state at initialisation."""
    Q, R = jnp.linalg.qr(normal)
    Q = Q * jnp.sign(jnp.diagonal(R, axis1=1, axis2=2))[:, None, :]
    return Q.reshape(-1, H)


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _init_params(key, gates, H, n_x, dtype, forget_bias):
    """`Wx` Glorot normal per gate block (std √(2/(n_x + H))), `Wh` an orthogonal `(H, H)`
    block per gate, `b` zeros but the LSTM's forget rows.  One compiled program and one flat
    draw: op by op, or with one draw per shape, compiling the generator costs seconds."""
    n_wx = gates * H * n_x
    normal = jax.random.normal(key, (n_wx + gates * H * H,), dtype)
    std = jnp.sqrt(2.0 / (n_x + H)).astype(dtype)
    b = jnp.zeros((gates * H, 1), dtype)
    if gates == 4:
        b = b.at[H:2 * H].set(forget_bias)
    return {"Wx": std * normal[:n_wx].reshape(gates * H, n_x),
            "Wh": _orthogonal_blocks(normal[n_wx:].reshape(gates, H, H), H), "b": b}


def _init(layer, key, in_shape, dtype, gates, forget_bias=0.0):
    name = type(layer).__name__
    if len(in_shape) != 2:
        raise ValueError(f"{name} expects in_shape (n_x, T), got {in_shape!r}")
    n_x, T = in_shape
    check_positive_int(name, "n_x", n_x)
    if T is not None:
        check_positive_int(name, "T", T)
    params = _init_params(key, gates, layer.hidden, n_x, jnp.dtype(dtype), forget_bias)
    return params, ((layer.hidden, T) if layer.return_sequences else (layer.hidden,))


def _check_input(layer, params, x, states, gates, biases=("b",)):
    """Static shape checks: params, `x (n_x, T, m)` with `T >= 1`, initial states `(H, m)`."""
    name, H = type(layer).__name__, layer.hidden
    rows = gates * layer.hidden
    want = f"Wx ({rows}, n_x), Wh ({rows}, {H}), {', '.join(biases)} with {rows} entries"
    keys = ("Wx", "Wh", *biases)
    if not isinstance(params, dict) or set(params) != set(keys):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}({H}) expects params {{{', '.join(keys)}}}: {want}, got {got}")
    Wx, Wh = params["Wx"], params["Wh"]
    if jnp.ndim(Wx) != 2 or Wx.shape[0] != rows or jnp.shape(Wh) != (rows, H) \
            or any(jnp.size(params[b]) != rows for b in biases):
        got = ", ".join(f"{k} {jnp.shape(params[k])}" for k in keys)
        raise ValueError(f"{name}({H}) expects params {want}, got {got}")
    if jnp.ndim(x) != 3:
        raise ValueError(f"{name} expects input of shape (n_x, T, m), got shape {jnp.shape(x)}")
    if x.shape[0] != Wx.shape[1]:
        raise ValueError(f"{name}({H}) expects input of shape ({Wx.shape[1]}, T, m), got shape "
                         f"{x.shape} (feature size {x.shape[0]} != {Wx.shape[1]})")
    if x.shape[1] == 0:
        raise ValueError(f"{name} needs at least one time step, got input of shape {x.shape} (T = 0)")
    m = x.shape[2]
    for state_name, s in states.items():
        if s is not None and jnp.shape(s) != (H, m):
            raise ValueError(f"{name}({H}): initial state {state_name} must have shape ({H}, {m}) "
                             f"(H, m), got {jnp.shape(s)}")


def _check_dy(layer, cache, dy):
    T, _, m = cache["X"].shape
    want = (layer.hidden, T, m) if layer.return_sequences else (layer.hidden, m)
    if jnp.shape(dy) != want:
        raise ValueError(f"{type(layer).__name__}.backward expects dy of shape {want}, got "
                         f"{jnp.shape(dy)}")


def _state(s, H, m, dtype):
    return jnp.zeros((H, m), dtype) if s is None else jnp.asarray(s, dtype)


def _output(layer, Hs):
    """All states `(H, T, m)` or the last `(H, m)` from the time-major `Hs (T, H, m)`."""
    return jnp.moveaxis(Hs, 0, 1) if layer.return_sequences else Hs[-1]


def _previous(s0, S):
    """`(T, H, m)` states shifted by one step: `[s_0, s_1, …, s_{T-1}]` from `S = [s_1 … s_T]`."""
    return jnp.concatenate([s0[None], S[:-1]])


def _transposed(W):
    """`Wᵀ` stored as its own array: XLA's CPU dot with a transposed left operand (`Wᵀ dZ`
    folded into the dot) ran at half the speed of the plain product in every reverse step."""
    return lax.optimization_barrier(W.T)


def _upstream(layer, dy):
    """`(dh_T, dY)`: the gradient entering the last step and, with return_sequences, the
    per-step gradients time-major `(T, H, m)` (None in last-state mode)."""
    if layer.return_sequences:
        dY = jnp.moveaxis(dy, 1, 0)
        return jnp.zeros_like(dY[0]), dY
    return dy, None


# --- vanilla RNN ------------------------------------------------------------------------------
def rnn_step(Wx, Wh, b, x_t, h_prev):
    """One step: `h_t = tanh(Wx x_t + Wh h_{t-1} + b)`, `x_t (n_x, m)`, `h_{t-1} (H, m)`."""
    return jnp.tanh(Wx @ x_t + Wh @ h_prev + b)


def rnn_forward(Wx, Wh, b, X, h0):
    """`Hs (T, H, m)`: the states `h_1 … h_T` for the time-major `X (T, n_x, m)` from `h0 (H, m)`."""
    def step(h_prev, x_t):
        h = rnn_step(Wx, Wh, b, x_t, h_prev)
        return h, h
    return lax.scan(step, h0, X)[1]


def rnn_backward(Wx, Wh, X, Hs, h0, dh_T, dY):
    """BPTT, time-major: `(dX (T, n_x, m), dh0, dWx, dWh, db)`.

    Reverse scan carrying `dh` and the weight-gradient sums:
    `dZ_t = (dY_t + dh) ⊙ (1 − h_t²)`, `dWx += dZ_t x_tᵀ`, `dWh += dZ_t h_{t-1}ᵀ`,
    `db += Σ dZ_t`, `dx_t = Wxᵀ dZ_t`, next `dh = Whᵀ dZ_t`; the final carry is `dh0`.
    `dY` is None when only `dh_T` (the last state's gradient) enters.
    """
    WxT, WhT = _transposed(Wx), _transposed(Wh)

    def step(carry, inputs):
        dh_next, dWx, dWh, db = carry
        x_t, h_t, h_prev, dy_t = inputs
        dh = dh_next if dy_t is None else dh_next + dy_t
        dZ = dh * (1 - h_t * h_t)
        carry = (WhT @ dZ, dWx + dZ @ x_t.T, dWh + dZ @ h_prev.T,
                 db + jnp.sum(dZ, axis=1, keepdims=True))
        return carry, WxT @ dZ

    zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros((Wh.shape[0], 1), Wh.dtype))
    (dh0, dWx, dWh, db), dX = lax.scan(step, (dh_T, *zeros), (X, Hs, _previous(h0, Hs), dY),
                                       reverse=True)
    return dX, dh0, dWx, dWh, db


@dataclass(frozen=True)
class RNN:
    """Vanilla (Elman) recurrent layer: `h_t = tanh(Wx x_t + Wh h_{t−1} + b)`.

    Arguments:
        hidden: state size `H`.
        return_sequences: output every state `(H, T, m)` (True) or only the last `(H, m)`.

    Parameters: `Wx (H, n_x)` (Glorot normal), `Wh (H, H)` (random orthogonal), `b (H, 1)`
    (zeros).  PyTorch's `nn.RNN` ports over as `Wx = weight_ih_l0`, `Wh = weight_hh_l0`,
    `b = (bias_ih_l0 + bias_hh_l0)[:, None]`.
    """

    hidden: int
    return_sequences: bool = False

    def __post_init__(self):
        check_positive_int("RNN", "hidden", self.hidden)
        if not isinstance(self.return_sequences, bool):
            raise ValueError(f"RNN: return_sequences must be a bool, got {self.return_sequences!r}")

    def init(self, key, in_shape, dtype=jnp.float32):
        """`(params, out_shape)` for `in_shape = (n_x, T)`; `out_shape` is `(H, T)` or `(H,)`."""
        return _init(self, key, in_shape, dtype, gates=1)

    def forward(self, params, x, h0=None):
        """`(y, cache)` for `x (n_x, T, m)` from the initial state `h0 (H, m)` (zeros by default);
        `y (H, T, m)` with return_sequences, else `h_T (H, m)`."""
        _check_input(self, params, x, {"h0": h0}, gates=1)
        Wx, Wh, b = params["Wx"], params["Wh"], params["b"].reshape(-1, 1)
        dtype = jnp.result_type(Wx, Wh, b, x)
        X = jnp.moveaxis(jnp.asarray(x, dtype), 1, 0)
        h0 = _state(h0, self.hidden, x.shape[2], dtype)
        Hs = rnn_forward(Wx, Wh, b, X, h0)
        return _output(self, Hs), {"X": X, "Hs": Hs, "h0": h0}

    def backward_with_state(self, params, cache, dy):
        """`(dx (n_x, T, m), dh0 (H, m), {"Wx", "Wh", "b"})` from `dy` shaped like `y`."""
        _check_dy(self, cache, dy)
        dh_T, dY = _upstream(self, dy)
        dX, dh0, dWx, dWh, db = rnn_backward(params["Wx"], params["Wh"], cache["X"], cache["Hs"],
                                             cache["h0"], dh_T, dY)
        grads = {"Wx": dWx, "Wh": dWh, "b": db.reshape(jnp.shape(params["b"]))}
        return jnp.moveaxis(dX, 0, 1), dh0, grads

    def backward(self, params, cache, dy):
        """`(dx (n_x, T, m), {"Wx": dWx, "Wh": dWh, "b": db})`: BPTT (formulas in the module)."""
        dx, _, grads = self.backward_with_state(params, cache, dy)
        return dx, grads

    def step(self, params, x_t, h):
        """One time step `(n_x, m), (H, m) -> (H, m)`, e.g. to generate a sequence."""
        return rnn_step(params["Wx"], params["Wh"], params["b"].reshape(-1, 1), x_t, h)


# --- LSTM -------------------------------------------------------------------------------------
def lstm_step(Wx, Wh, b, x_t, h_prev, c_prev):
    """One step: `(h_t, c_t, gates (4H, m))`, gates `[i; f; g; o]` after their activations."""
    H = h_prev.shape[0]
    Z = Wx @ x_t + Wh @ h_prev + b
    i, f, o = (jax.nn.sigmoid(Z[k * H:(k + 1) * H]) for k in (0, 1, 3))
    g = jnp.tanh(Z[2 * H:3 * H])
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c, jnp.concatenate([i, f, g, o])


def lstm_forward(Wx, Wh, b, X, h0, c0):
    """`(Hs, Cs, G)` `(T, H, m)`, `(T, H, m)`, `(T, 4H, m)` for the time-major `X (T, n_x, m)`."""
    def step(carry, x_t):
        h, c, gates = lstm_step(Wx, Wh, b, x_t, *carry)
        return (h, c), (h, c, gates)
    return lax.scan(step, (h0, c0), X)[1]


def lstm_backward(Wx, Wh, X, Hs, Cs, G, h0, c0, dh_T, dY):
    """BPTT, time-major: `(dX (T, n_x, m), dh0, dc0, dWx, dWh, db)`.

    Reverse scan carrying `dh` and `dc` (the cell-state gradient from step t+1, already
    multiplied by its forget gate) and the weight-gradient sums; per step, with the gates
    `i, f, g, o` of step t and `τ = tanh(c_t)`:
    `dh = dY_t + dh`, `dc = dc + dh ⊙ o ⊙ (1 − τ²)`,
    `dZ = [dc⊙g⊙i(1−i); dc⊙c_{t-1}⊙f(1−f); dc⊙i⊙(1−g²); dh⊙τ⊙o(1−o)]`,
    `dWx += dZ x_tᵀ`, `dWh += dZ h_{t-1}ᵀ`, `db += Σ dZ`, `dx_t = Wxᵀ dZ`,
    next `dh = Whᵀ dZ`, next `dc = dc ⊙ f`.
    """
    H = Hs.shape[1]
    WxT, WhT = _transposed(Wx), _transposed(Wh)

    def step(carry, inputs):
        dh_next, dc_next, dWx, dWh, db = carry
        x_t, c_t, c_prev, h_prev, gates, dy_t = inputs
        i, f, g, o = (gates[k * H:(k + 1) * H] for k in range(4))
        dh = dh_next if dy_t is None else dh_next + dy_t
        tau = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1 - tau * tau)
        dZ = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                              dc * i * (1 - g * g), dh * tau * o * (1 - o)])
        carry = (WhT @ dZ, dc * f, dWx + dZ @ x_t.T, dWh + dZ @ h_prev.T,
                 db + jnp.sum(dZ, axis=1, keepdims=True))
        return carry, WxT @ dZ

    zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros((Wh.shape[0], 1), Wh.dtype))
    inputs = (X, Cs, _previous(c0, Cs), _previous(h0, Hs), G, dY)
    (dh0, dc0, dWx, dWh, db), dX = lax.scan(step, (dh_T, jnp.zeros_like(dh_T), *zeros), inputs,
                                            reverse=True)
    return dX, dh0, dc0, dWx, dWh, db


@dataclass(frozen=True)
class LSTM:
    """Long short-term memory layer, gates stacked in PyTorch's order i, f, g, o.

    Arguments:
        hidden: state size `H` (of both `h` and `c`).
        return_sequences: output every `h_t` `(H, T, m)` (True) or only `h_T` `(H, m)`.
        forget_bias: initial value of the forget gate's bias rows `b[H:2H]` (default 1, so the
            cell keeps its memory at the start of training; the other biases start at 0).

    Parameters: `Wx (4H, n_x)` (Glorot normal per gate), `Wh (4H, H)` (a random orthogonal
    `(H, H)` block per gate), `b (4H, 1)`.  PyTorch's `nn.LSTM` ports over as
    `Wx = weight_ih_l0`, `Wh = weight_hh_l0`, `b = (bias_ih_l0 + bias_hh_l0)[:, None]`.
    """

    hidden: int
    return_sequences: bool = False
    forget_bias: float = 1.0

    def __post_init__(self):
        check_positive_int("LSTM", "hidden", self.hidden)
        if not isinstance(self.return_sequences, bool):
            raise ValueError(f"LSTM: return_sequences must be a bool, got {self.return_sequences!r}")
        fb = self.forget_bias
        if isinstance(fb, bool) or not isinstance(fb, (int, float)) or fb != fb or abs(fb) == float("inf"):
            raise ValueError(f"LSTM: forget_bias must be a finite number, got {fb!r}")
        object.__setattr__(self, "forget_bias", float(fb))

    def init(self, key, in_shape, dtype=jnp.float32):
        """`(params, out_shape)` for `in_shape = (n_x, T)`; `out_shape` is `(H, T)` or `(H,)`."""
        return _init(self, key, in_shape, dtype, gates=4, forget_bias=self.forget_bias)

    def forward(self, params, x, h0=None, c0=None):
        """`(y, cache)` for `x (n_x, T, m)` from `h0`, `c0` `(H, m)` (zeros by default);
        `y (H, T, m)` with return_sequences, else `h_T (H, m)`."""
        _check_input(self, params, x, {"h0": h0, "c0": c0}, gates=4)
        Wx, Wh, b = params["Wx"], params["Wh"], params["b"].reshape(-1, 1)
        dtype = jnp.result_type(Wx, Wh, b, x)
        X = jnp.moveaxis(jnp.asarray(x, dtype), 1, 0)
        h0 = _state(h0, self.hidden, x.shape[2], dtype)
        c0 = _state(c0, self.hidden, x.shape[2], dtype)
        Hs, Cs, G = lstm_forward(Wx, Wh, b, X, h0, c0)
        return _output(self, Hs), {"X": X, "Hs": Hs, "Cs": Cs, "G": G, "h0": h0, "c0": c0}

    def backward_with_state(self, params, cache, dy):
        """`(dx (n_x, T, m), dh0 (H, m), dc0 (H, m), {"Wx", "Wh", "b"})` from `dy` shaped like `y`."""
        _check_dy(self, cache, dy)
        dh_T, dY = _upstream(self, dy)
        dX, dh0, dc0, dWx, dWh, db = lstm_backward(
            params["Wx"], params["Wh"], cache["X"], cache["Hs"], cache["Cs"], cache["G"],
            cache["h0"], cache["c0"], dh_T, dY)
        grads = {"Wx": dWx, "Wh": dWh, "b": db.reshape(jnp.shape(params["b"]))}
        return jnp.moveaxis(dX, 0, 1), dh0, dc0, grads

    def backward(self, params, cache, dy):
        """`(dx (n_x, T, m), {"Wx": dWx, "Wh": dWh, "b": db})`: BPTT (formulas in the module)."""
        dx, _, _, grads = self.backward_with_state(params, cache, dy)
        return dx, grads

    def step(self, params, x_t, h, c):
        """One time step `(n_x, m), (H, m), (H, m) -> (h, c)`, e.g. to generate a sequence."""
        h, c, _ = lstm_step(params["Wx"], params["Wh"], params["b"].reshape(-1, 1), x_t, h, c)
        return h, c


# --- GRU --------------------------------------------------------------------------------------
def gru_step(Wx, Wh, bx, bh, x_t, h_prev):
    """One step: `(h_t, gates (3H, m), Nh (H, m))`, gates `[r; z; n]` after their activations,
    `Nh = Wh_n h_{t-1} + bh_n` the n gate's recurrent part (the term `r` multiplies)."""
    H = h_prev.shape[0]
    A = Wx @ x_t + bx                    # [A_r; A_z; A_n] (3H, m)
    B = Wh @ h_prev + bh                 # [B_r; B_z; B_n] (3H, m)
    r = jax.nn.sigmoid(A[:H] + B[:H])
    z = jax.nn.sigmoid(A[H:2 * H] + B[H:2 * H])
    Nh = B[2 * H:]
    n = jnp.tanh(A[2 * H:] + r * Nh)
    h = (1 - z) * n + z * h_prev
    return h, jnp.concatenate([r, z, n]), Nh


def gru_forward(Wx, Wh, bx, bh, X, h0):
    """`(Hs, G, Nh)` `(T, H, m)`, `(T, 3H, m)`, `(T, H, m)` for the time-major `X (T, n_x, m)`."""
    def step(h_prev, x_t):
        h, gates, Nh = gru_step(Wx, Wh, bx, bh, x_t, h_prev)
        return h, (h, gates, Nh)
    return lax.scan(step, h0, X)[1]


def gru_backward(Wx, Wh, X, Hs, G, Nh, h0, dh_T, dY):
    """BPTT, time-major: `(dX (T, n_x, m), dh0, dWx, dWh, dbx, dbh)`.

    Reverse scan carrying `dh` and the weight-gradient sums; per step, with the gates
    `r, z, n` of step t, `Nh = Wh_n h_{t-1} + bh_n`, and `A`, `B` the input and recurrent
    pre-activations (`A = Wx x_t + bx`, `B = Wh h_{t-1} + bh`):
    `dh = dY_t + dh`, `dA_n = dh ⊙ (1 − z) ⊙ (1 − n²)`,
    `dA_r = dA_n ⊙ Nh ⊙ r(1 − r)`, `dA_z = dh ⊙ (h_{t-1} − n) ⊙ z(1 − z)`,
    `dA = [dA_r; dA_z; dA_n]`, `dB = [dA_r; dA_z; dA_n ⊙ r]`,
    `dWx += dA x_tᵀ`, `dbx += Σ dA`, `dWh += dB h_{t-1}ᵀ`, `dbh += Σ dB`, `dx_t = Wxᵀ dA`,
    next `dh = Whᵀ dB + dh ⊙ z`.
    """
    H = Hs.shape[1]
    WxT, WhT = _transposed(Wx), _transposed(Wh)

    def step(carry, inputs):
        dh_next, dWx, dWh, dbx, dbh = carry
        x_t, h_prev, gates, Nh_t, dy_t = inputs
        r, z, n = (gates[k * H:(k + 1) * H] for k in range(3))
        dh = dh_next if dy_t is None else dh_next + dy_t
        dA_n = dh * (1 - z) * (1 - n * n)
        dA_rz = jnp.concatenate([dA_n * Nh_t * r * (1 - r), dh * (h_prev - n) * z * (1 - z)])
        dA = jnp.concatenate([dA_rz, dA_n])
        dB = jnp.concatenate([dA_rz, dA_n * r])
        carry = (WhT @ dB + dh * z, dWx + dA @ x_t.T, dWh + dB @ h_prev.T,
                 dbx + jnp.sum(dA, axis=1, keepdims=True),
                 dbh + jnp.sum(dB, axis=1, keepdims=True))
        return carry, WxT @ dA

    b0 = jnp.zeros((Wh.shape[0], 1), Wh.dtype)
    zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), b0, b0)
    inputs = (X, _previous(h0, Hs), G, Nh, dY)
    (dh0, dWx, dWh, dbx, dbh), dX = lax.scan(step, (dh_T, *zeros), inputs, reverse=True)
    return dX, dh0, dWx, dWh, dbx, dbh


@dataclass(frozen=True)
class GRU:
    """Gated recurrent unit, PyTorch's `nn.GRU`: gates stacked in the order r, z, n,

        r = σ(Wx_r x_t + bx_r + Wh_r h_{t−1} + bh_r),  z = σ(Wx_z x_t + bx_z + Wh_z h_{t−1} + bh_z)
        n = tanh(Wx_n x_t + bx_n + r ⊙ (Wh_n h_{t−1} + bh_n)),   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

    Arguments:
        hidden: state size `H`.
        return_sequences: output every state `(H, T, m)` (True) or only the last `(H, m)`.

    Parameters: `Wx (3H, n_x)` (Glorot normal per gate), `Wh (3H, H)` (a random orthogonal
    `(H, H)` block per gate), `bx (3H, 1)` and `bh (3H, 1)` (zeros).  Two biases, not one: `bh`'s
    n rows sit inside `r ⊙ (…)`, so `bx_n` and `bh_n` are different parameters.  PyTorch's
    `nn.GRU` ports over as `Wx = weight_ih_l0`, `Wh = weight_hh_l0`, `bx = bias_ih_l0[:, None]`,
    `bh = bias_hh_l0[:, None]`.
    """

    hidden: int
    return_sequences: bool = False

    def __post_init__(self):
        check_positive_int("GRU", "hidden", self.hidden)
        if not isinstance(self.return_sequences, bool):
            raise ValueError(f"GRU: return_sequences must be a bool, got {self.return_sequences!r}")

    def init(self, key, in_shape, dtype=jnp.float32):
        """`(params, out_shape)` for `in_shape = (n_x, T)`; `out_shape` is `(H, T)` or `(H,)`."""
        params, out_shape = _init(self, key, in_shape, dtype, gates=3)
        b = params.pop("b")
        return {**params, "bx": b, "bh": jnp.zeros_like(b)}, out_shape

    def forward(self, params, x, h0=None):
        """`(y, cache)` for `x (n_x, T, m)` from the initial state `h0 (H, m)` (zeros by default);
        `y (H, T, m)` with return_sequences, else `h_T (H, m)`."""
        _check_input(self, params, x, {"h0": h0}, gates=3, biases=("bx", "bh"))
        Wx, Wh = params["Wx"], params["Wh"]
        bx, bh = params["bx"].reshape(-1, 1), params["bh"].reshape(-1, 1)
        dtype = jnp.result_type(Wx, Wh, bx, bh, x)
        X = jnp.moveaxis(jnp.asarray(x, dtype), 1, 0)
        h0 = _state(h0, self.hidden, x.shape[2], dtype)
        Hs, G, Nh = gru_forward(Wx, Wh, bx, bh, X, h0)
        return _output(self, Hs), {"X": X, "Hs": Hs, "G": G, "Nh": Nh, "h0": h0}

    def backward_with_state(self, params, cache, dy):
        """`(dx (n_x, T, m), dh0 (H, m), {"Wx", "Wh", "bx", "bh"})` from `dy` shaped like `y`."""
        _check_dy(self, cache, dy)
        dh_T, dY = _upstream(self, dy)
        dX, dh0, dWx, dWh, dbx, dbh = gru_backward(
            params["Wx"], params["Wh"], cache["X"], cache["Hs"], cache["G"], cache["Nh"],
            cache["h0"], dh_T, dY)
        grads = {"Wx": dWx, "Wh": dWh, "bx": dbx.reshape(jnp.shape(params["bx"])),
                 "bh": dbh.reshape(jnp.shape(params["bh"]))}
        return jnp.moveaxis(dX, 0, 1), dh0, grads

    def backward(self, params, cache, dy):
        """`(dx (n_x, T, m), {"Wx", "Wh", "bx", "bh"})`: BPTT (formulas in the module)."""
        dx, _, grads = self.backward_with_state(params, cache, dy)
        return dx, grads

    def step(self, params, x_t, h):
        """One time step `(n_x, m), (H, m) -> (H, m)`, e.g. to generate a sequence."""
        return gru_step(params["Wx"], params["Wh"], params["bx"].reshape(-1, 1),
                        params["bh"].reshape(-1, 1), x_t, h)[0]
