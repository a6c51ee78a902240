"""The hand-written backward pass: against a numpy network written here, and against jax.grad.

Three kinds of check, from the most independent to the broadest:

* a two-layer network computed in numpy in this file (forward, cost, and a backward with the
  general chain rule and explicit softmax Jacobians, itself checked against numpy central
  differences) for every hidden activation, softmax included, and every output/loss pair;
* `shortcut=False` really takes the general chain (a spy on the loss's `dL/dA`) and gives the
  shortcut's numbers to 1e-12 in float64;
* jax.grad of `net.cost`, leaf by leaf, for every combination, with hypothesis for shapes.
  This one shares the forward pass with jaxnet; the forward is pinned by the numpy network here
  and by tests/test_activations.py and tests/test_losses.py.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnet as jn
from jaxnet import activations, losses

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]
# (output, loss): the document's pairs and the non-matching ones that need the general chain.
OUTPUT_LOSS = [
    ("identity", "squared_error"),
    ("sigmoid", "binary_cross_entropy"),
    ("softmax", "categorical_cross_entropy"),
    ("sigmoid", "squared_error"),
    ("softmax", "squared_error"),
    ("tanh", "squared_error"),
]


def make_data(key, net, m, dtype):
    kx, ky = jax.random.split(key)
    n_x, n_y = net.sizes[0], net.sizes[-1]
    X = jax.random.normal(kx, (n_x, m), dtype)
    if net.output == "softmax":
        Y = jax.nn.one_hot(jax.random.randint(ky, (m,), 0, n_y), n_y, dtype=dtype).T
    elif net.output == "sigmoid":
        Y = jax.random.bernoulli(ky, 0.5, (n_y, m)).astype(dtype)
    else:
        Y = jax.random.normal(ky, (n_y, m), dtype)
    return X, Y


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def assert_trees_close(manual, auto, rtol):
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel_err(a, b) <= rtol, rel_err(a, b)


# --- a two-layer network in numpy ---------------------------------------------------------
def _softmax_np(Z):
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


G_NP = {  # g and g' from their definitions
    "identity": (lambda Z: Z, lambda Z: np.ones_like(Z)),
    "sigmoid": (lambda Z: 1 / (1 + np.exp(-Z)), lambda Z: np.exp(-Z) / (1 + np.exp(-Z)) ** 2),
    "tanh": (np.tanh, lambda Z: 1 / np.cosh(Z) ** 2),
    "relu": (lambda Z: np.maximum(Z, 0), lambda Z: (Z > 0) * 1.0),
    "leaky_relu": (lambda Z: np.where(Z >= 0, Z, 0.01 * Z), lambda Z: np.where(Z >= 0, 1, 0.01)),
    "softmax": (_softmax_np, None),
}
LOSS_NP = {  # per-example loss (m,) and dL/dA
    "squared_error": (lambda A, Y: 0.5 * ((Y - A) ** 2).sum(axis=0), lambda A, Y: A - Y),
    "binary_cross_entropy": (lambda A, Y: -(Y * np.log(A) + (1 - Y) * np.log(1 - A)).sum(axis=0),
                             lambda A, Y: -Y / A + (1 - Y) / (1 - A)),
    "categorical_cross_entropy": (lambda A, Y: -(Y * np.log(A)).sum(axis=0), lambda A, Y: -Y / A),
}


def np_dZ(name, dA, Z, A):
    """dZ from dA through g: element-wise g', or the explicit Jacobian of softmax per column."""
    if name != "softmax":
        return dA * G_NP[name][1](Z)
    dZ = np.empty_like(dA)
    for i in range(Z.shape[1]):
        a = A[:, i]
        J = np.diag(a) - np.outer(a, a)  # J[k, j] = ∂a_k/∂z_j = a_k (δ_kj − a_j)
        dZ[:, i] = J.T @ dA[:, i]
    return dZ


def np_net(hidden, output, loss, P, X, Y):
    """(Ŷ, J, grads) of a two-layer network, in numpy, by the general chain rule."""
    (W1, b1), (W2, b2) = P
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = G_NP[hidden][0](Z1)
    Z2 = W2 @ A1 + b2
    A2 = G_NP[output][0](Z2)
    L, dL_dA = LOSS_NP[loss]
    dZ2 = np_dZ(output, dL_dA(A2, Y), Z2, A2)
    dZ1 = np_dZ(hidden, W2.T @ dZ2, Z1, A1)
    grads = [(dZ1 @ X.T / m, dZ1.sum(axis=1, keepdims=True) / m),
             (dZ2 @ A1.T / m, dZ2.sum(axis=1, keepdims=True) / m)]
    return A2, L(A2, Y).mean(), grads


def np_data(output, n_y, seed, m=5):
    rng = np.random.default_rng(seed)
    P = [(rng.normal(size=(4, 3)), rng.normal(size=(4, 1))),
         (rng.normal(size=(n_y, 4)), rng.normal(size=(n_y, 1)))]
    X = rng.normal(size=(3, m))
    if output == "softmax":
        Y = np.eye(n_y)[:, rng.integers(0, n_y, m)]
    elif output == "sigmoid":
        Y = (rng.uniform(size=(n_y, m)) > 0.5) * 1.0
    else:
        Y = rng.normal(size=(n_y, m))
    return P, X, Y


def test_numpy_network_is_its_own_finite_differences():
    """The numpy oracle's backward is the derivative of its forward (central differences)."""
    for hidden, (output, loss) in [("softmax", ("softmax", "categorical_cross_entropy")),
                                   ("tanh", ("sigmoid", "binary_cross_entropy")),
                                   ("leaky_relu", ("softmax", "squared_error"))]:
        P, X, Y = np_data(output, 3, seed=1)
        _, _, grads = np_net(hidden, output, loss, P, X, Y)
        for layer, j in itertools.product(range(2), range(2)):
            numeric = np.empty_like(P[layer][j])
            for idx in np.ndindex(numeric.shape):
                shifted = []
                for h in (1e-6, -1e-6):
                    Q = [list(p) for p in P]
                    Q[layer][j] = Q[layer][j].copy()
                    Q[layer][j][idx] += h
                    shifted.append(np_net(hidden, output, loss, Q, X, Y)[1])
                numeric[idx] = (shifted[0] - shifted[1]) / 2e-6
            assert rel_err(grads[layer][j], numeric) <= 1e-7, (hidden, output, layer, j)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_two_layer_net_against_numpy(hidden):
    """forward, cost and backprop (shortcut and general chain) against the numpy network,
    for every output/loss pair; float64, relative error ≤ 1e-10 per leaf (the numpy general
    chain divides by a(1 − a), so it is itself only good to ~1e-12 where σ saturates)."""
    with jax.enable_x64(True):
        for k, (output, loss) in enumerate(OUTPUT_LOSS):
            n_y = 3 if output == "softmax" else 2
            P, X, Y = np_data(output, n_y, seed=10 * k + HIDDEN.index(hidden))
            A2, J, grads = np_net(hidden, output, loss, P, X, Y)
            net = jn.MLP((3, 4, n_y), hidden=hidden, output=output, loss=loss)
            params = [{"W": jnp.asarray(W), "b": jnp.asarray(b)} for W, b in P]
            Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
            assert rel_err(net.forward(params, Xj), A2) <= 1e-13, (output, loss)
            assert float(net.cost(params, Xj, Yj)) == pytest.approx(J, rel=1e-13)
            want = [{"W": jnp.asarray(dW), "b": jnp.asarray(db)} for dW, db in grads]
            for shortcut in (True, False):
                assert_trees_close(net.backprop(params, Xj, Yj, shortcut=shortcut), want, 1e-10)


def test_two_layer_forward_hand_worked():
    """Z^[1] = W^[1] X + b^[1] (rows are nodes), ReLU, then σ; one example worked by hand."""
    net = jn.MLP((2, 2, 1), hidden="relu", output="sigmoid")
    params = [{"W": jnp.array([[1.0, -1.0], [0.5, 2.0]]), "b": jnp.array([[0.0], [-1.0]])},
              {"W": jnp.array([[1.0, -2.0]]), "b": jnp.array([[0.5]])}]
    # x = (2, 1): z1 = 2 − 1 + 0 = 1, z2 = 1 + 2 − 1 = 2; a = (1, 2); z = 1 − 4 + 0.5 = −2.5
    y_hat = float(net.forward(params, jnp.array([[2.0], [1.0]]))[0, 0])
    assert y_hat == pytest.approx(1 / (1 + math.exp(2.5)), rel=1e-6)


# --- shortcut=False really takes the general chain ------------------------------------------
class Spy:
    def __init__(self, fn, scale=1.0):
        self.fn, self.scale, self.calls = fn, scale, 0

    def __call__(self, *args):
        self.calls += 1
        return self.scale * self.fn(*args)


@pytest.mark.parametrize("output,loss,n_y", [("sigmoid", "binary_cross_entropy", 2),
                                             ("softmax", "categorical_cross_entropy", 3)])
def test_shortcut_false_takes_the_general_chain_and_agrees(monkeypatch, output, loss, n_y):
    net = jn.MLP((3, 4, n_y), hidden="tanh", output=output)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(0), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(1), net, 6, jnp.float64)
        short = net.backprop(params, X, Y)
        general = net.backprop(params, X, Y, shortcut=False)
        assert_trees_close(general, short, 1e-12)

        original = losses.LOSSES[loss]
        spy_dL, spy_g = Spy(original.derivative), Spy(activations.ACTIVATIONS[output].backward)
        monkeypatch.setitem(losses.LOSSES, loss, original._replace(derivative=spy_dL))
        monkeypatch.setitem(activations.ACTIVATIONS, output,
                            activations.ACTIVATIONS[output]._replace(backward=spy_g))
        net.backprop(params, X, Y)
        assert spy_dL.calls == spy_g.calls == 0, "the shortcut A − Y uses neither dL/dA nor g'"
        assert_trees_close(net.backprop(params, X, Y, shortcut=False), short, 1e-12)
        assert spy_dL.calls == spy_g.calls == 1, "the general chain goes through both"

        # a planted bug in dL/dA changes the general chain only
        monkeypatch.setitem(losses.LOSSES, loss, original._replace(
            derivative=Spy(original.derivative, scale=1.5)))
        assert_trees_close(net.backprop(params, X, Y), short, 0.0)
        planted = net.backprop(params, X, Y, shortcut=False)
        assert rel_err(planted[-1]["W"], short[-1]["W"]) > 0.3


# --- against jax.grad, every combination ----------------------------------------------------
def both(net, params, X, Y):
    """(shortcut, general chain, autodiff) gradients, compiled once (op-by-op dispatch would
    dominate)."""
    return jax.jit(lambda p, X, Y: (net.backprop(p, X, Y), net.backprop(p, X, Y, shortcut=False),
                                    jax.grad(net.cost)(p, X, Y)))(params, X, Y)


# Every hidden activation with two output/loss pairs (every pair twice); all 36 combinations
# are covered at depth 2 by test_two_layer_net_against_numpy above.
DEPTH3 = [(h, OUTPUT_LOSS[(i + k) % len(OUTPUT_LOSS)]) for i, h in enumerate(HIDDEN) for k in (0, 3)]


@pytest.mark.parametrize("hidden,pair", DEPTH3, ids=lambda x: str(x))
def test_backprop_equals_autodiff_float64(hidden, pair):
    """Depth 3: the output layer's dZ, a hidden-to-hidden step and the first layer."""
    output, loss = pair
    n_y = 3 if output == "softmax" else 2
    net = jn.MLP((3, 5, 4, n_y), hidden=hidden, output=output, loss=loss)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(3), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(7), net, 11, jnp.float64)
        short, general, auto = both(net, params, X, Y)
        assert_trees_close(short, auto, 1e-10)
        assert_trees_close(general, auto, 1e-10)


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS, ids=lambda x: str(x))
def test_single_layer_equals_autodiff_float64(output, loss):
    n_y = 3 if output == "softmax" else 2
    net = jn.MLP((3, n_y), output=output, loss=loss)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(1), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(7), net, 11, jnp.float64)
        short, general, auto = both(net, params, X, Y)
        assert_trees_close(short, auto, 1e-10)
        assert_trees_close(general, auto, 1e-10)


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS, ids=lambda x: str(x))
def test_backprop_equals_autodiff_float32(output, loss):
    hidden = HIDDEN[OUTPUT_LOSS.index((output, loss)) % len(HIDDEN)]
    n_y = 3 if output == "softmax" else 2
    net = jn.MLP((3, 5, 4, n_y), hidden=hidden, output=output, loss=loss)
    params = net.init(jax.random.key(2), bias="normal")
    X, Y = make_data(jax.random.key(7), net, 11, jnp.float32)
    short, general, auto = both(net, params, X, Y)
    assert_trees_close(short, auto, 1e-5)
    assert_trees_close(general, auto, 1e-5)


@pytest.mark.parametrize("hidden,pair", [("tanh", OUTPUT_LOSS[1]), ("relu", OUTPUT_LOSS[2]),
                                         ("softmax", OUTPUT_LOSS[4])], ids=lambda x: str(x))
def test_backprop_agrees_with_finite_differences(hidden, pair):
    output, loss = pair
    n_y = 3 if output == "softmax" else 1
    net = jn.MLP((3, 4, 3, n_y), hidden=hidden, output=output, loss=loss)
    params = net.init(jax.random.key(1), bias="normal")
    X, Y = make_data(jax.random.key(2), net, 9, jnp.float32)
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    assert max(leaf.autodiff_vs_fd for leaf in report.leaves) <= 1e-6


def test_mixed_hidden_activations_and_jit():
    net = jn.MLP((4, 6, 5, 4, 3, 2), hidden=("relu", "tanh", "leaky_relu", "softmax"),
                 output="softmax")
    with jax.enable_x64(True):
        params = net.init(jax.random.key(3), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(4), net, 13, jnp.float64)
        short, general, auto = both(net, params, X, Y)
        assert_trees_close(short, auto, 1e-10)
        assert_trees_close(general, auto, 1e-10)


@settings(max_examples=10, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    acts=st.lists(st.sampled_from(HIDDEN), min_size=4, max_size=4),
    pair=st.sampled_from(OUTPUT_LOSS),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_property_backprop_matches_autodiff(widths, acts, pair, m, seed):
    output, loss = pair
    n_y = max(2, widths[-1]) if output == "softmax" else widths[-1]
    sizes = (*widths[:-1], n_y) if len(widths) > 1 else (widths[0], n_y)
    net = jn.MLP(sizes, hidden=tuple(acts[: len(sizes) - 2]), output=output, loss=loss)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(seed), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(seed + 1), net, m, jnp.float64)
        short, general, auto = both(net, params, X, Y)
        assert_trees_close(short, auto, 1e-10)
        assert_trees_close(general, auto, 1e-10)


@pytest.mark.parametrize("output,n_y", [("sigmoid", 1), ("softmax", 3)])
def test_extreme_preactivations_give_finite_cost_and_gradients(output, n_y):
    net = jn.MLP((2, n_y), output=output)
    params = [{"W": jnp.full((n_y, 2), 5e3, jnp.float32), "b": jnp.zeros((n_y, 1), jnp.float32)}]
    X = jnp.array([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]], jnp.float32)  # Z = ±1e4, 0
    if output == "sigmoid":
        Y = jnp.array([[0.0, 1.0, 1.0, 0.0]], jnp.float32)
    else:
        params[0]["W"] = params[0]["W"] * jnp.array([[1.0], [-1.0], [0.5]], jnp.float32)
        Y = jax.nn.one_hot(jnp.array([1, 0, 2, 2]), 3).T
    J = net.cost(params, X, Y)
    assert jnp.isfinite(J) and J > 100  # confidently wrong examples cost ~1e4, not inf
    if output == "sigmoid":
        # losses 1e4, 1e4, log 2, log 2;  dZ = A − Y = (1, −1, −½, ½), dW = dZ Xᵀ / 4, db = 0
        assert float(J) == pytest.approx(5000 + math.log(2) / 2, rel=1e-6)
        grads = net.backprop(params, X, Y)
        np.testing.assert_allclose(grads[0]["W"], [[0.25, 0.75]], rtol=1e-6)
        np.testing.assert_allclose(grads[0]["b"], [[0.0]], atol=1e-7)
    for g in (*jax.tree.leaves(jax.grad(net.cost)(params, X, Y)),
              *jax.tree.leaves(net.backprop(params, X, Y))):
        assert jnp.all(jnp.isfinite(g))


def test_all_combinations_are_constructible():
    for hidden, (output, loss) in itertools.product(HIDDEN, OUTPUT_LOSS):
        jn.MLP((2, 3, 3), hidden=hidden, output=output, loss=loss)
