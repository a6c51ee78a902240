"""The hand-written backward pass equals jax.grad(cost), leaf by leaf, for every combination."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnet as jn

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
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


def assert_trees_close(manual, auto, rtol):
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(auto)):
        assert a.shape == b.shape and a.dtype == b.dtype
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        rel = np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-30)
        assert rel <= rtol, rel


def both(net, params, X, Y, **kw):
    """(manual, autodiff) gradients, compiled once (op-by-op dispatch would dominate)."""
    return jax.jit(lambda p, X, Y: (net.backprop(p, X, Y, **kw), jax.grad(net.cost)(p, X, Y)))(
        params, X, Y)


def sizes_for(depth, n_y):
    return (3, 5, 4, 6, 2)[:depth] + (n_y,)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS, ids=lambda x: str(x))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_backprop_equals_autodiff_float64(hidden, output, loss, depth):
    n_y = 3 if output == "softmax" else 2
    net = jn.MLP(sizes_for(depth, n_y), hidden=hidden, output=output, loss=loss)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(depth), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(7), net, 11, jnp.float64)
        assert_trees_close(*both(net, params, X, Y), 1e-10)
        assert_trees_close(*both(net, params, X, Y, shortcut=False), 1e-10)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS, ids=lambda x: str(x))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_backprop_equals_autodiff_float32(hidden, output, loss, depth):
    n_y = 3 if output == "softmax" else 2
    net = jn.MLP(sizes_for(depth, n_y), hidden=hidden, output=output, loss=loss)
    params = net.init(jax.random.key(depth), bias="normal")
    X, Y = make_data(jax.random.key(7), net, 11, jnp.float32)
    assert_trees_close(*both(net, params, X, Y), 1e-5)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS[:3], ids=lambda x: str(x))
def test_backprop_agrees_with_finite_differences(hidden, output, loss):
    n_y = 3 if output == "softmax" else 1
    net = jn.MLP((3, 4, 3, n_y), hidden=hidden, output=output, loss=loss)
    params = net.init(jax.random.key(1), bias="normal")
    X, Y = make_data(jax.random.key(2), net, 9, jnp.float32)
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    assert max(leaf.autodiff_vs_fd for leaf in report.leaves) <= 1e-6


def test_mixed_hidden_activations_and_jit():
    net = jn.MLP((4, 6, 5, 4, 3, 2), hidden=("relu", "tanh", "leaky_relu", "sigmoid"),
                 output="softmax")
    with jax.enable_x64(True):
        params = net.init(jax.random.key(3), dtype=jnp.float64, bias="normal")
        X, Y = make_data(jax.random.key(4), net, 13, jnp.float64)
        manual = jax.jit(net.backprop)(params, X, Y)
        assert_trees_close(manual, jax.grad(net.cost)(params, X, Y), 1e-10)


@settings(max_examples=25, deadline=None)
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
        assert_trees_close(*both(net, params, X, Y), 1e-10)


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
    for g in (*jax.tree.leaves(jax.grad(net.cost)(params, X, Y)),
              *jax.tree.leaves(net.backprop(params, X, Y))):
        assert jnp.all(jnp.isfinite(g))


def test_all_combinations_are_constructible():
    for hidden, (output, loss) in itertools.product(HIDDEN + ["softmax"], OUTPUT_LOSS):
        jn.MLP((2, 3, 3), hidden=hidden, output=output, loss=loss)
