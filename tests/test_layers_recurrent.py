"""RNN, LSTM and GRU: forward against numpy loops written here, hand-written BPTT against
`jax.vjp` (float64, <= 1e-10 relative per leaf, initial-state gradients included), the three-way
checker on small recurrent networks, planted bugs caught with the leaf named, bad input; the GRU
also inside a `Sequential` (backprop, check_gradients, fit, checkpoints)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_close
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnet as jn
from jaxnet.layers.dense import Dense
from jaxnet.layers.recurrent import GRU, LSTM, RNN

TOL = 1e-10
# The checks below compile one program per shape; XLA's cheaper CPU back end settings cut that
# compile time by a third (the programs are tiny: their run time does not matter).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_compiled(fn, *args):
    """`jax.jit(fn)(*args)`, compiled with FAST_COMPILE."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


# --- numpy references: direct loops over time steps and examples ---------------------------
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_rnn(p, x, h0):
    """States `(H, T, m)` of h_t = tanh(Wx x_t + Wh h_{t-1} + b), one example at a time."""
    Wx, Wh, b = (np.asarray(p[k], np.float64) for k in ("Wx", "Wh", "b"))
    x, h0 = np.asarray(x), np.asarray(h0)
    n_x, T, m = x.shape
    out = np.zeros((Wh.shape[1], T, m))
    for j in range(m):
        h = h0[:, j]
        for t in range(T):
            h = np.tanh(Wx @ x[:, t, j] + Wh @ h + b[:, 0])
            out[:, t, j] = h
    return out


def np_lstm(p, x, h0, c0):
    """States `(H, T, m)` of the LSTM with PyTorch's gate order i, f, g, o."""
    Wx, Wh, b = (np.asarray(p[k], np.float64) for k in ("Wx", "Wh", "b"))
    x, h0, c0 = np.asarray(x), np.asarray(h0), np.asarray(c0)
    n_x, T, m = x.shape
    H = Wh.shape[1]
    out = np.zeros((H, T, m))
    for j in range(m):
        h, c = h0[:, j], c0[:, j]
        for t in range(T):
            z = Wx @ x[:, t, j] + Wh @ h + b[:, 0]
            i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), \
                sigmoid(z[3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[:, t, j] = h
    return out


def np_gru(p, x, h0):
    """States `(H, T, m)` of PyTorch's GRU: gates r, z, n; `bh`'s n rows inside `r ⊙ (…)`."""
    Wx, Wh, bx, bh = (np.asarray(p[k], np.float64) for k in ("Wx", "Wh", "bx", "bh"))
    x, h0 = np.asarray(x), np.asarray(h0)
    n_x, T, m = x.shape
    H = Wh.shape[1]
    out = np.zeros((H, T, m))
    for j in range(m):
        h = h0[:, j]
        for t in range(T):
            a, b = Wx @ x[:, t, j] + bx[:, 0], Wh @ h + bh[:, 0]
            r = sigmoid(a[:H] + b[:H])
            z = sigmoid(a[H:2 * H] + b[H:2 * H])
            n = np.tanh(a[2 * H:] + r * b[2 * H:])
            h = (1 - z) * n + z * h
            out[:, t, j] = h
    return out


def np_reference(kind, params, x, h0, c0):
    if kind == "rnn":
        return np_rnn(params, x, h0)
    return np_lstm(params, x, h0, c0) if kind == "lstm" else np_gru(params, x, h0)


CLASSES, GATES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}, {"rnn": 1, "lstm": 4, "gru": 3}


def setup(kind, n_x, T, H, m, seed=0, scale=0.6):
    """float64 params (biases nonzero), x and initial states; call inside enable_x64."""
    layer_cls = CLASSES[kind]
    ks = jax.random.split(jax.random.key(seed), 7)
    G = GATES[kind]
    params = {"Wx": scale * jax.random.normal(ks[0], (G * H, n_x), jnp.float64),
              "Wh": scale * jax.random.normal(ks[1], (G * H, H), jnp.float64),
              "b": 0.3 * jax.random.normal(ks[2], (G * H, 1), jnp.float64)}
    if kind == "gru":  # two biases, both nonzero: bh's n rows are multiplied by r
        params["bx"] = params.pop("b")
        params["bh"] = 0.3 * jax.random.normal(ks[6], (G * H, 1), jnp.float64)
    x = jax.random.normal(ks[3], (n_x, T, m), jnp.float64)
    h0 = 0.5 * jax.random.normal(ks[4], (H, m), jnp.float64)
    c0 = 0.5 * jax.random.normal(ks[5], (H, m), jnp.float64)
    return layer_cls, params, x, h0, c0


def run_forward(layer, params, x, h0, c0):
    if isinstance(layer, LSTM):
        return layer.forward(params, x, h0, c0)
    return layer.forward(params, x, h0)


# --- forward ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_forward_matches_numpy_loop(kind):
    with jax.enable_x64(True):
        cls, params, x, h0, c0 = setup(kind, 3, 6, 4, 5)
        seq, last = cls(4, return_sequences=True), cls(4)
        states = (h0, c0) if kind == "lstm" else (h0,)

        def outputs(params, x, states):
            s = states
            for t in range(6):  # one step at a time with `step`
                s = seq.step(params, x[:, t], *s)
                s = s if kind == "lstm" else (s,)
            return (seq.forward(params, x, *states)[0], last.forward(params, x, *states)[0],
                    seq.forward(params, x)[0], s[0])

        y, y_last, y_zero, h_steps = run_compiled(outputs, params, x, states)
        ref = np_reference(kind, params, x, h0, c0)
        zero = np.zeros_like(h0)
        ref0 = np_reference(kind, params, x, zero, zero)
        assert y.shape == (4, 6, 5) and y.dtype == jnp.float64
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(y_last, ref[:, -1], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(y_zero, ref0, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(h_steps, ref[:, -1], rtol=1e-12, atol=1e-13)


def test_forward_float32_and_jit():
    layer = LSTM(8, return_sequences=True)
    params, out_shape = layer.init(jax.random.key(0), (3, 5))
    assert out_shape == (8, 5)
    x = jax.random.normal(jax.random.key(1), (3, 5, 2))
    y = jax.jit(lambda p, x: layer.forward(p, x)[0])(params, x)
    assert y.dtype == jnp.float32 and y.shape == (8, 5, 2)
    np.testing.assert_allclose(y, np_lstm(params, x, np.zeros((8, 2)), np.zeros((8, 2))),
                               rtol=1e-5, atol=1e-6)


def test_init_layout():
    p, out = RNN(6).init(jax.random.key(0), (3, 10))
    assert out == (6,) and {k: v.shape for k, v in p.items()} == \
        {"Wx": (6, 3), "Wh": (6, 6), "b": (6, 1)}
    np.testing.assert_allclose(p["Wh"] @ p["Wh"].T, np.eye(6), atol=1e-5)  # orthogonal
    assert not np.any(p["b"])
    p, out = LSTM(5, return_sequences=True, forget_bias=2.0).init(jax.random.key(1), (3, None))
    assert out == (5, None) and {k: v.shape for k, v in p.items()} == \
        {"Wx": (20, 3), "Wh": (20, 5), "b": (20, 1)}
    b = np.asarray(p["b"][:, 0])
    assert np.all(b[5:10] == 2.0) and not np.any(b[:5]) and not np.any(b[10:])
    for k in range(4):
        blk = p["Wh"][5 * k:5 * (k + 1)]
        np.testing.assert_allclose(blk @ blk.T, np.eye(5), atol=1e-5)
    assert LSTM(5).init(jax.random.key(1), (3, 4))[0]["b"][7, 0] == 1.0  # default forget bias
    with jax.enable_x64(True):
        p, out = GRU(4, return_sequences=True).init(jax.random.key(2), (3, 7), dtype=jnp.float64)
    assert out == (4, 7) and {k: (v.shape, v.dtype) for k, v in p.items()} == \
        {k: (s, jnp.float64) for k, s in
         {"Wx": (12, 3), "Wh": (12, 4), "bx": (12, 1), "bh": (12, 1)}.items()}
    assert not np.any(p["bx"]) and not np.any(p["bh"])
    for k in range(3):
        blk = np.asarray(p["Wh"][4 * k:4 * (k + 1)])
        np.testing.assert_allclose(blk @ blk.T, np.eye(4), atol=1e-12)


def test_pytorch_lstm_weights_port_over():
    torch = pytest.importorskip("torch", reason="PyTorch (the 'bench' extra) is not installed")
    torch.manual_seed(0)
    n_x, T, H, m = 3, 7, 5, 4
    for kind in ("rnn", "lstm", "gru"):
        net = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](n_x, H).double()
        x = torch.randn(T, m, n_x, dtype=torch.float64)  # PyTorch: (T, m, n_x)
        with torch.no_grad():
            ref = net(x)[0].numpy()  # (T, m, H)
        params = {"Wx": net.weight_ih_l0.detach().numpy(), "Wh": net.weight_hh_l0.detach().numpy(),
                  "b": (net.bias_ih_l0 + net.bias_hh_l0).detach().numpy()[:, None]}
        if kind == "gru":  # the two biases stay apart
            del params["b"]
            params.update(bx=net.bias_ih_l0.detach().numpy()[:, None],
                          bh=net.bias_hh_l0.detach().numpy()[:, None])
        layer = CLASSES[kind](H, return_sequences=True)
        with jax.enable_x64(True):
            y, _ = layer.forward(params, jnp.asarray(x.numpy().transpose(2, 0, 1)))
        np.testing.assert_allclose(np.asarray(y).transpose(1, 2, 0), ref, rtol=1e-12, atol=1e-13)


# --- backward against jax.vjp -----------------------------------------------------------------
def check_against_vjp(kind, n_x, T, H, m, return_sequences, with_state, seed=0):
    """Compare backward and backward_with_state with jax.vjp of forward (float64), all in one
    compiled function (one compilation per case)."""
    with jax.enable_x64(True):
        cls, params, x, h0, c0 = setup(kind, n_x, T, H, m, seed)
        layer = cls(H, return_sequences=return_sequences)
        n_states = 2 if kind == "lstm" else 1
        states = (h0, c0)[:n_states]
        y_shape = (H, T, m) if return_sequences else (H, m)
        dy = jax.random.normal(jax.random.key(seed + 100), y_shape, jnp.float64)

        def both(params, x, states, dy):
            given = states if with_state else (None,) * n_states
            y, cache = layer.forward(params, x, *given)
            manual = layer.backward_with_state(params, cache, dy)
            dx, grads = layer.backward(params, cache, dy)
            # vjp w.r.t. params, x and the initial states (zeros when none are given)
            full = states if with_state else tuple(jnp.zeros_like(s) for s in states)
            y_ref, vjp = jax.vjp(lambda p, x, *s: layer.forward(p, x, *s)[0], params, x, *full)
            gp, gx, *gs = vjp(dy)
            return y, y_ref, (dx, grads), (manual[0], *manual[1:-1], manual[-1]), \
                (gx, gp), (gx, *gs, gp)

        y, y_ref, short, manual, short_ref, ref = run_compiled(both, params, x, states, dy)
        np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-14)
        assert_tree_close(short, short_ref)
        assert_tree_close(manual, ref)


@pytest.mark.parametrize("kind,T", [(kind, T) for kind in ("rnn", "lstm") for T in (1, 2, 7, 50)]
                         + [("gru", 1), ("gru", 7)])  # the hypothesis test adds other GRU sizes
def test_backward_matches_vjp(kind, T):
    """Last state from zero states, and every state from given states (hypothesis mixes them)."""
    check_against_vjp(kind, 3, T, 4, 3, return_sequences=False, with_state=False, seed=T)
    check_against_vjp(kind, 3, T, 4, 3, return_sequences=True, with_state=True, seed=T)


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(["rnn", "lstm", "gru"]), n_x=st.integers(1, 3), T=st.integers(1, 12),
       H=st.integers(1, 4), m=st.integers(1, 3), return_sequences=st.booleans(),
       with_state=st.booleans(), seed=st.integers(0, 1000))
def test_backward_matches_vjp_hypothesis(kind, n_x, T, H, m, return_sequences, with_state, seed):
    check_against_vjp(kind, n_x, T, H, m, return_sequences, with_state, seed)


def test_two_stacked_layers_chained_by_hand():
    """LSTM (all states) -> RNN (last state), backward chained by hand, against jax.vjp."""
    with jax.enable_x64(True):
        _, p1, x, h0, c0 = setup("lstm", 3, 9, 4, 3, seed=1)
        _, p2, _, g0, _ = setup("rnn", 4, 9, 5, 3, seed=2)
        l1, l2 = LSTM(4, return_sequences=True), RNN(5)

        def f(p1, p2, x, h0, c0, g0):
            return l2.forward(p2, l1.forward(p1, x, h0, c0)[0], g0)[0]

        def both(dy):
            a1, cache1 = l1.forward(p1, x, h0, c0)
            _, cache2 = l2.forward(p2, a1, g0)
            da1, dg0, grads2 = l2.backward_with_state(p2, cache2, dy)
            dx, dh0, dc0, grads1 = l1.backward_with_state(p1, cache1, da1)
            return (grads1, grads2, dx, dh0, dc0, dg0), jax.vjp(f, p1, p2, x, h0, c0, g0)[1](dy)

        dy = jax.random.normal(jax.random.key(3), (5, 3), jnp.float64)
        assert_tree_close(*run_compiled(both, dy))


# --- the three-way checker on small recurrent networks ----------------------------------------
def network(kind):
    """A recurrent layer reading out its last state through Dense(1), ½ squared error mean."""
    rec = CLASSES[kind](3)
    out = Dense(1)

    def loss(params, x, Y):
        h, _ = rec.forward(params["rec"], x)
        Y_hat, _ = out.forward(params["out"], h)
        return 0.5 * jnp.mean((Y_hat - Y) ** 2)

    def grads(params, x, Y, rec_backward=None):
        h, cache = rec.forward(params["rec"], x)
        Y_hat, out_cache = out.forward(params["out"], h)
        dZ = (Y_hat - Y) / Y.shape[1]
        dh, g_out = out.backward_from_dZ(params["out"], out_cache, dZ)
        backward = rec_backward or (lambda p, c, dy: rec.backward(p, c, dy)[1])
        return {"rec": backward(params["rec"], cache, dh), "out": g_out}

    with jax.enable_x64(True):
        _, p, x, _, _ = setup(kind, 2, 5, 3, 4, seed=7)
        p_out = {"W": 0.5 * jax.random.normal(jax.random.key(8), (1, 3), jnp.float64),
                 "b": jnp.full((1, 1), 0.1, jnp.float64)}
        Y = jax.random.normal(jax.random.key(9), (1, 4), jnp.float64)
    return loss, grads, {"rec": p, "out": p_out}, x, Y


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_check_grad_passes_on_recurrent_network(kind):
    loss, grads, params, x, Y = network(kind)
    report = jn.check_grad(loss, grads, params, x, Y)
    assert report.ok, str(report)


# Buggy backward passes written out here: one change each to the formulas of the module.
def buggy_rnn_backward(bug):
    def backward(params, cache, dh_T):
        Wx, Wh, X, Hs, h0 = params["Wx"], params["Wh"], cache["X"], cache["Hs"], cache["h0"]
        H_prev = jnp.concatenate([h0[None], Hs[:-1]])
        if bug == "time_off_by_one":
            H_prev = Hs  # pairs dZ_t with h_t instead of h_{t-1}

        def step(carry, inp):
            dh, dWx, dWh, db = carry
            x_t, h_t, h_prev = inp
            dZ = dh * (1 - h_t ** 2)
            dWh_t = 0 * dWh if bug == "no_dWh" else dZ @ h_prev.T
            return (Wh.T @ dZ, dWx + dZ @ x_t.T, dWh + dWh_t, db + dZ.sum(1, keepdims=True)), None

        zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(params["b"]))
        (_, dWx, dWh, db), _ = jax.lax.scan(step, (dh_T, *zeros), (X, Hs, H_prev), reverse=True)
        return {"Wx": dWx, "Wh": dWh, "b": db}
    return backward


def buggy_lstm_backward(bug):
    def backward(params, cache, dh_T):
        Wx, Wh, X, Hs, Cs, G = (params["Wx"], params["Wh"], cache["X"], cache["Hs"],
                                cache["Cs"], cache["G"])
        H = Hs.shape[1]
        H_prev = jnp.concatenate([cache["h0"][None], Hs[:-1]])
        C_prev = jnp.concatenate([cache["c0"][None], Cs[:-1]])

        def step(carry, inp):
            dh, dc, dWx, dWh, db = carry
            x_t, c, c_prev, h_prev, gates = inp
            i, f, g, o = (gates[k * H:(k + 1) * H] for k in range(4))
            tau = jnp.tanh(c)
            dc = dc + dh * o * (1 - tau ** 2)
            dZ_f = 0 * dc if bug == "forget_dropped" else dc * c_prev * f * (1 - f)
            dZ = jnp.concatenate([dc * g * i * (1 - i), dZ_f, dc * i * (1 - g ** 2),
                                  dh * tau * o * (1 - o)])
            dc_prev = 0 * dc if bug == "c_not_carried" else dc * f
            return (Wh.T @ dZ, dc_prev, dWx + dZ @ x_t.T, dWh + dZ @ h_prev.T,
                    db + dZ.sum(1, keepdims=True)), None

        zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(params["b"]))
        init = (dh_T, jnp.zeros_like(dh_T), *zeros)
        (_, _, dWx, dWh, db), _ = jax.lax.scan(step, init, (X, Cs, C_prev, H_prev, G),
                                               reverse=True)
        return {"Wx": dWx, "Wh": dWh, "b": db}
    return backward


def buggy_gru_backward(bug):
    def backward(params, cache, dh_T):
        Wx, Wh, X, Hs, G, Nh = (params["Wx"], params["Wh"], cache["X"], cache["Hs"], cache["G"],
                                cache["Nh"])
        H = Hs.shape[1]
        H_prev = jnp.concatenate([cache["h0"][None], Hs[:-1]])

        def step(carry, inp):
            dh, dWx, dWh, dbx, dbh = carry
            x_t, h_prev, gates, Nh_t = inp
            r, z, n = (gates[k * H:(k + 1) * H] for k in range(3))
            dA_n = dh * (1 - z) * (1 - n ** 2)
            dA_r = dA_n * Nh_t * r * (1 - r)
            dA_z = dh * (h_prev - n) * z * (1 - z)
            # gate_order: the r and z rows swapped (an LSTM-style i, f order misread)
            dA_rz = [dA_z, dA_r] if bug == "gate_order" else [dA_r, dA_z]
            dA = jnp.concatenate([*dA_rz, dA_n])
            # r_not_in_dB_n: the factor r of r ⊙ B_n forgotten, dB_n = dA_n
            dB = jnp.concatenate([*dA_rz, dA_n if bug == "r_not_in_dB_n" else dA_n * r])
            direct = 0 * dh if bug == "no_direct_dh" else dh * z  # h' = … + z ⊙ h dropped
            return (Wh.T @ dB + direct, dWx + dA @ x_t.T, dWh + dB @ h_prev.T,
                    dbx + dA.sum(1, keepdims=True), dbh + dB.sum(1, keepdims=True)), None

        zeros = (jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(params["bx"]),
                 jnp.zeros_like(params["bh"]))
        (_, dWx, dWh, dbx, dbh), _ = jax.lax.scan(step, (dh_T, *zeros), (X, H_prev, G, Nh),
                                                  reverse=True)
        return {"Wx": dWx, "Wh": dWh, "bx": dbx, "bh": dbh}
    return backward


REC = ["['rec']['Wh']", "['rec']['Wx']", "['rec']['b']"]  # sorted, as in the report
GRU_REC = ["['rec']['Wh']", "['rec']['Wx']", "['rec']['bh']", "['rec']['bx']"]


@pytest.mark.parametrize("kind,bug,failing", [
    ("rnn", "time_off_by_one", ["['rec']['Wh']"]),
    ("rnn", "no_dWh", ["['rec']['Wh']"]),
    ("lstm", "forget_dropped", REC),
    ("lstm", "c_not_carried", REC),
    ("gru", "gate_order", GRU_REC),
    ("gru", "no_direct_dh", GRU_REC),
    ("gru", "r_not_in_dB_n", GRU_REC),
], ids=lambda v: str(v) if not isinstance(v, list) else "")
def test_planted_bugs_are_caught_with_the_leaf_named(kind, bug, failing):
    loss, grads, params, x, Y = network(kind)
    buggy = {"rnn": buggy_rnn_backward, "lstm": buggy_lstm_backward,
             "gru": buggy_gru_backward}[kind](bug)
    report = jn.check_grad(loss, lambda p, x, Y: grads(p, x, Y, buggy), params, x, Y,
                           taylor=False)
    assert report.failing == failing, str(report)
    if bug == "forget_dropped":  # the worst bias entry is a forget-gate row (H = 3: rows 3-5)
        assert 3 <= report["['rec']['b']"].worst_index[0] < 6, str(report)
    if bug == "r_not_in_dB_n":  # the worst bh entry is an n-gate row (H = 3: rows 6-8)
        assert 6 <= report["['rec']['bh']"].worst_index[0] < 9, str(report)


# --- bad input --------------------------------------------------------------------------------
def test_bad_input_raises_value_error():
    x = jnp.ones((3, 5, 2))
    for layer in (RNN(4), LSTM(4, return_sequences=True), GRU(4)):
        params, _ = layer.init(jax.random.key(0), (3, 5))
        name = type(layer).__name__
        with pytest.raises(ValueError, match=r"\(n_x, T, m\), got shape \(3, 5\)"):
            layer.forward(params, jnp.ones((3, 5)))
        with pytest.raises(ValueError, match=r"expects input of shape \(3, T, m\).*feature size 2"):
            layer.forward(params, jnp.ones((2, 5, 2)))
        with pytest.raises(ValueError, match=r"T = 0"):
            layer.forward(params, jnp.ones((3, 0, 2)))
        with pytest.raises(ValueError, match=r"h0 must have shape \(4, 2\).*got \(4, 3\)"):
            layer.forward(params, x, jnp.zeros((4, 3)))
        with pytest.raises(ValueError, match=r"h0 must have shape \(4, 2\).*got \(4,\)"):
            layer.forward(params, x, jnp.zeros(4))
        with pytest.raises(ValueError, match=f"{name}\\(5\\) expects params"):
            type(layer)(5).forward(params, x)
        with pytest.raises(ValueError, match=r"in_shape \(n_x, T\)"):
            layer.init(jax.random.key(0), (3,))
        with pytest.raises(ValueError, match=r"T must be an int >= 1"):
            layer.init(jax.random.key(0), (3, 0))
        y, cache = layer.forward(params, x)
        with pytest.raises(ValueError, match=r"expects dy of shape"):
            layer.backward(params, cache, jnp.ones((4, 7)))
        with pytest.raises(ValueError, match=r"hidden must be an int >= 1, got 0"):
            type(layer)(0)
        with pytest.raises(ValueError, match=r"return_sequences must be a bool"):
            type(layer)(4, return_sequences="yes")
    params, _ = LSTM(4).init(jax.random.key(0), (3, 5))
    with pytest.raises(ValueError, match=r"c0 must have shape \(4, 2\)"):
        LSTM(4).forward(params, x, None, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"forget_bias must be a finite number"):
        LSTM(4, forget_bias=float("nan"))
    with pytest.raises(ValueError, match=r"LSTM\(1\) expects params Wx \(4, n_x\)"):
        LSTM(1).forward(RNN(4).init(jax.random.key(0), (3, 5))[0], x)
    gru_params, _ = GRU(4).init(jax.random.key(0), (3, 5))
    with pytest.raises(ValueError, match=r"GRU\(4\) expects params \{Wx, Wh, bx, bh\}.*"
                                         r"got \['Wh', 'Wx', 'b'\]"):  # an RNN's or LSTM's b
        GRU(4).forward(LSTM(4).init(jax.random.key(0), (3, 5))[0], x)
    with pytest.raises(ValueError, match=r"bx, bh with 12 entries, got .* bh \(11, 1\)"):
        GRU(4).forward({**gru_params, "bh": jnp.zeros((11, 1))}, x)
    with pytest.raises(ValueError, match=r"RNN\(4\) expects params \{Wx, Wh, b\}.*'bh', 'bx'"):
        RNN(4).forward(gru_params, x)


def test_jit_shape_errors_are_static():
    layer = RNN(4)
    params, _ = layer.init(jax.random.key(0), (3, 5))
    with pytest.raises(ValueError, match="feature size"):
        jax.jit(lambda p, x: layer.forward(p, x)[0])(params, jnp.ones((2, 5, 2)))


# --- the GRU inside a network: Sequential, check_gradients, fit, checkpoints -------------------
def test_gru_in_a_sequential_checks_trains_and_round_trips(tmp_path):
    """GRU (every state) -> Dense softmax at every step: the three-way check passes, fit with
    the hand-written gradients follows fit with autodiff, and a checkpoint rebuilds it."""
    net = jn.Sequential([jn.GRU(4, return_sequences=True), Dense(3, "softmax")],
                        input_shape=(2, 5))
    params = net.init(jax.random.key(0))
    assert set(params[0]) == {"Wx", "Wh", "bx", "bh"}
    X = jax.random.normal(jax.random.key(1), (2, 5, 8))
    ids = (X[0] > 0).astype(jnp.int32) + (X[1] > 0).astype(jnp.int32)  # (T, m) class ids
    report = jn.check_gradients(net, params, X, ids)
    assert report.ok, str(report)
    assert [leaf.name for leaf in report.leaves] == ["Wh[1]", "Wx[1]", "bh[1]", "bx[1]", "W[2]",
                                                     "b[2]"]
    kw = dict(steps=15, learning_rate=0.5, key=jax.random.key(2), progress=False)
    p_m, h_m = jn.fit(net, params, X, ids, gradients="manual", **kw)
    _, h_a = jn.fit(net, params, X, ids, gradients="autodiff", **kw)
    np.testing.assert_allclose(h_m["cost"], h_a["cost"], rtol=2e-5)
    assert h_m["cost"][-1] < h_m["cost"][0]
    path = jn.save(tmp_path / "gru.npz", net, p_m)
    loaded_net, loaded = jn.load(path)
    assert loaded_net == net and isinstance(loaded_net.layers[0], jn.layers.GRU)
    for a, b in zip(jax.tree.leaves(p_m), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded_net.forward(loaded, X), net.forward(p_m, X))
