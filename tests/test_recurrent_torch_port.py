"""Porting `torch.nn.RNN` / `torch.nn.LSTM` / `torch.nn.GRU` weights to `jn.RNN` / `jn.LSTM` /
`jn.GRU`, checked in float32.

The mapping (`docs/layers/recurrent.md`, "Porting weights from PyTorch"): `Wx = weight_ih_l{k}`,
`Wh = weight_hh_l{k}`, `b = (bias_ih_l{k} + bias_hh_l{k})[:, None]`, the same gate order
i, f, g, o; for the GRU (gates r, z, n) the two biases stay apart, `bx = bias_ih_l{k}[:, None]`,
`bh = bias_hh_l{k}[:, None]`; sequences move from PyTorch's `(T, m, n_x)` (or `(m, T, n_x)` with
batch_first) to jaxnet's `(n_x, T, m)`, states from `(layers, m, H)` to `(H, m)`.  Outputs,
final states and every gradient (through `backward_with_state`, against torch's autograd) agree
to float32 round-off.  PyTorch is not a test dependency: without it this file is skipped.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn

torch = pytest.importorskip("torch")

TOL = 1e-5  # float32: the two libraries sum the same products in different orders


def from_torch(module, k=0):
    """jaxnet params of layer `k` of a `torch.nn.RNN` (tanh), `torch.nn.LSTM` or `torch.nn.GRU`."""
    assert not module.bidirectional and getattr(module, "proj_size", 0) == 0
    assert getattr(module, "nonlinearity", "tanh") == "tanh"
    t = lambda p: jnp.asarray(p.detach().cpu().numpy())
    Wx, Wh = t(getattr(module, f"weight_ih_l{k}")), t(getattr(module, f"weight_hh_l{k}"))
    if isinstance(module, torch.nn.GRU):  # two biases: bias_hh's n rows sit inside r ⊙ (…)
        zeros = jnp.zeros(Wx.shape[0], Wx.dtype)
        bx, bh = ((t(getattr(module, f"bias_ih_l{k}")), t(getattr(module, f"bias_hh_l{k}")))
                  if module.bias else (zeros, zeros))
        return {"Wx": Wx, "Wh": Wh, "bx": bx[:, None], "bh": bh[:, None]}
    b = (t(getattr(module, f"bias_ih_l{k}") + getattr(module, f"bias_hh_l{k}"))
         if module.bias else jnp.zeros(Wx.shape[0], Wx.dtype))
    return {"Wx": Wx, "Wh": Wh, "b": b[:, None]}


def to_jaxnet(x, batch_first):
    """torch `(T, m, n)` or, batch_first, `(m, T, n)` -> jaxnet `(n, T, m)`."""
    return jnp.asarray(x.detach().numpy().transpose((2, 1, 0) if batch_first else (2, 0, 1)))


def to_torch_layout(y, batch_first):
    """jaxnet `(H, T, m)` -> torch `(T, m, H)` or, batch_first, `(m, T, H)`."""
    return np.asarray(y).transpose((2, 1, 0) if batch_first else (1, 2, 0))


def state(s, k=0):
    """torch state `(layers, m, H)` -> jaxnet `(H, m)` of layer k."""
    return jnp.asarray(s[k].detach().numpy().T)


def close(a, b, tol=TOL):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b)))
    assert err <= tol, err


TORCH = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}  # the same class names in both libraries


def make(kind, n_x, H, batch_first, bias=True, layers=1, seed=0):
    torch.manual_seed(seed)
    cls = getattr(torch.nn, TORCH[kind])
    return cls(n_x, H, num_layers=layers, bias=bias, batch_first=batch_first)


def jaxnet_cls(kind):
    return getattr(jn, TORCH[kind])


@pytest.mark.parametrize("batch_first", [False, True], ids=["T_m_n", "batch_first"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_outputs_final_states_and_gradients_match_torch(kind, batch_first):
    n_x, T, H, m = 3, 9, 5, 4
    net = make(kind, n_x, H, batch_first)
    shape = (m, T, n_x) if batch_first else (T, m, n_x)
    x_t = torch.randn(*shape, requires_grad=True)
    h0_t = (0.5 * torch.randn(1, m, H)).requires_grad_()
    c0_t = (0.5 * torch.randn(1, m, H)).requires_grad_()
    if kind == "lstm":
        y_t, (h_n, c_n) = net(x_t, (h0_t, c0_t))
    else:
        y_t, h_n = net(x_t, h0_t)

    params = from_torch(net)
    x, h0, c0 = to_jaxnet(x_t, batch_first), state(h0_t), state(c0_t)
    states = (h0, c0) if kind == "lstm" else (h0,)
    seq = jaxnet_cls(kind)(H, return_sequences=True)
    last = jaxnet_cls(kind)(H)
    y, cache = seq.forward(params, x, *states)
    y_last, _ = last.forward(params, x, *states)
    assert y.shape == (H, T, m) and y.dtype == jnp.float32
    close(to_torch_layout(y, batch_first), y_t.detach().numpy())
    close(y_last, state(h_n))
    if kind == "lstm":  # c_T is not an output of jn.LSTM; run the cell with `step` to get it
        h, c = h0, c0
        for t in range(T):
            h, c = seq.step(params, x[:, t], h, c)
        close(h, state(h_n))
        close(c, state(c_n))

    # Gradients of Σ dy ⊙ y: torch's autograd against the hand-written BPTT.
    dy_t = torch.randn(*y_t.shape)
    (y_t * dy_t).sum().backward()
    dy = jnp.asarray(dy_t.numpy().transpose((2, 1, 0) if batch_first else (2, 0, 1)))
    dx, *d_states, grads = seq.backward_with_state(params, cache, dy)
    close(dx, to_jaxnet(x_t.grad, batch_first))
    close(d_states[0], state(h0_t.grad))
    if kind == "lstm":
        close(d_states[1], state(c0_t.grad))
    close(grads["Wx"], net.weight_ih_l0.grad.numpy())
    close(grads["Wh"], net.weight_hh_l0.grad.numpy())
    if kind == "gru":  # two different parameters, two different gradients
        assert not np.allclose(grads["bx"], grads["bh"])
        close(grads["bx"][:, 0], net.bias_ih_l0.grad.numpy())
        close(grads["bh"][:, 0], net.bias_hh_l0.grad.numpy())
    else:  # b = bias_ih + bias_hh, so both torch biases get db
        close(grads["b"][:, 0], net.bias_ih_l0.grad.numpy())
        close(grads["b"][:, 0], net.bias_hh_l0.grad.numpy())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_two_layer_torch_module_is_two_stacked_layers(kind):
    """`num_layers=2` (no dropout): layer k's weights are `*_l{k}`; zero initial states."""
    n_x, T, H, m = 2, 6, 4, 3
    net = make(kind, n_x, H, batch_first=True, layers=2, seed=1)
    x_t = torch.randn(m, T, n_x)
    with torch.no_grad():
        y_t = net(x_t)[0]
    cls = jaxnet_cls(kind)
    a = to_jaxnet(x_t, batch_first=True)
    for k in range(2):
        a, _ = cls(H, return_sequences=True).forward(from_torch(net, k), a)
    close(to_torch_layout(a, batch_first=True), y_t.numpy())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_module_without_bias(kind):
    n_x, T, H, m = 3, 5, 4, 2
    net = make(kind, n_x, H, batch_first=False, bias=False, seed=2)
    x_t = torch.randn(T, m, n_x)
    with torch.no_grad():
        y_t = net(x_t)[0]
    params = from_torch(net)
    for b in ("bx", "bh") if kind == "gru" else ("b",):
        assert params[b].shape == (net.weight_ih_l0.shape[0], 1) and not np.any(params[b])
    y, _ = jaxnet_cls(kind)(H, return_sequences=True).forward(
        params, to_jaxnet(x_t, batch_first=False))
    close(to_torch_layout(y, batch_first=False), y_t.numpy())
