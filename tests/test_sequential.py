"""`Sequential`: chaining the layers' hand-written backward equals autodiff of the cost, and every
tool that takes an `MLP` (fit, fit_many, checkpoints, metrics) takes a `Sequential` too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet.layers import Dense


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / max(jnp.linalg.norm(a), jnp.linalg.norm(b), 1e-300))


def assert_same_tree(manual, auto, tol):
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for (path, a), m in zip(jax.tree_util.tree_flatten_with_path(auto)[0],
                            jax.tree.leaves(manual)):
        assert m.shape == a.shape, jax.tree_util.keystr(path)
        assert rel(m, a) <= tol, (jax.tree_util.keystr(path), rel(m, a))


def numpy_forward(params, X):
    """Dense tanh -> Dense softmax over every position, written with numpy alone."""
    W1, b1 = np.asarray(params[0]["W"]), np.asarray(params[0]["b"])
    W2, b2 = np.asarray(params[1]["W"]), np.asarray(params[1]["b"])
    X = np.asarray(X)
    out = np.zeros((W2.shape[0], *X.shape[1:]))
    for t in range(X.shape[1]):
        for i in range(X.shape[2]):
            a1 = np.tanh(W1 @ X[:, t, i] + b1[:, 0])
            z2 = W2 @ a1 + b2[:, 0]
            e = np.exp(z2 - z2.max())
            out[:, t, i] = e / e.sum()
    return out


@pytest.fixture
def seq_net():
    return jn.Sequential([Dense(6, "tanh"), Dense(4, "softmax")], input_shape=(3, 5))


def test_dense_on_sequences_matches_numpy_and_autodiff(seq_net):
    with jax.enable_x64(True):
        params = seq_net.init(jax.random.key(0), dtype=jnp.float64)
        X = jax.random.normal(jax.random.key(1), (3, 5, 7), jnp.float64)
        ids = jax.random.randint(jax.random.key(2), (5, 7), 0, 4)
        np.testing.assert_allclose(seq_net.forward(params, X), numpy_forward(params, X),
                                   rtol=1e-12)
        one_hot = jax.nn.one_hot(ids, 4, axis=0, dtype=jnp.float64)
        # J is the mean over every position of every example of −log p(target)
        p = numpy_forward(params, X)
        J_ref = -np.mean(np.log(np.take_along_axis(p, np.asarray(ids)[None], 0)))
        assert float(seq_net.cost(params, X, ids)) == pytest.approx(J_ref, rel=1e-12)
        assert float(seq_net.cost(params, X, one_hot)) == pytest.approx(J_ref, rel=1e-12)
        auto = jax.grad(seq_net.cost)(params, X, one_hot)
        for Y in (ids, one_hot):
            assert_same_tree(seq_net.backprop(params, X, Y), auto, 1e-10)
            assert_same_tree(seq_net.backprop(params, X, Y, shortcut=False), auto, 1e-10)


@pytest.mark.parametrize("output,loss", [("sigmoid", None), ("identity", None),
                                         ("tanh", "squared_error"),
                                         ("sigmoid", "squared_error")])
def test_backprop_equals_autodiff_for_each_output(output, loss):
    net = jn.Sequential([Dense(5, "relu"), Dense(3, "leaky_relu"), Dense(2, output)],
                        input_shape=(4,), loss=loss)
    with jax.enable_x64(True):
        params = net.init(jax.random.key(3), dtype=jnp.float64)
        params = [{k: v + 0.1 for k, v in p.items()} for p in params]  # biases off the kinks
        X = jax.random.normal(jax.random.key(4), (4, 9), jnp.float64)
        Y = jax.random.uniform(jax.random.key(5), (2, 9), jnp.float64)
        assert_same_tree(net.backprop(params, X, Y), jax.grad(net.cost)(params, X, Y), 1e-10)


def test_mlp_and_sequential_of_dense_agree():
    mlp = jn.MLP((4, 6, 3), hidden="relu", output="softmax")
    seq = jn.Sequential([Dense(6, "relu"), Dense(3, "softmax")], input_shape=(4,))
    with jax.enable_x64(True):
        params = mlp.init(jax.random.key(0), dtype=jnp.float64, bias="normal")
        X = jax.random.normal(jax.random.key(1), (4, 11), jnp.float64)
        Y = jax.nn.one_hot(jnp.arange(11) % 3, 3, axis=0, dtype=jnp.float64)
        assert float(seq.cost(params, X, Y)) == pytest.approx(float(mlp.cost(params, X, Y)),
                                                              rel=1e-13)
        assert_same_tree(seq.backprop(params, X, Y), mlp.backprop(params, X, Y), 1e-12)


def test_fit_manual_equals_autodiff_and_minibatches_slice_the_last_axis(seq_net):
    X = jax.random.normal(jax.random.key(1), (3, 5, 32))
    ids = (X[0] > 0).astype(jnp.int32) + (X[1] > 0).astype(jnp.int32)
    params = seq_net.init(jax.random.key(0))
    kw = dict(steps=60, learning_rate=0.5, batch_size=8, key=jax.random.key(2), progress=False)
    p_m, h_m = jn.fit(seq_net, params, X, ids, gradients="manual", **kw)
    p_a, h_a = jn.fit(seq_net, params, X, ids, gradients="autodiff", **kw)
    np.testing.assert_allclose(h_m["cost"], h_a["cost"], rtol=2e-5)
    assert h_m["cost"][-10:].mean() < h_m["cost"][:10].mean()
    assert 0.0 <= h_m["accuracy"][-1] <= 1.0


def test_fit_many_on_a_sequential(seq_net):
    X = jax.random.normal(jax.random.key(1), (3, 5, 16))
    ids = (X[0] > 0).astype(jnp.int32)
    batch = jax.vmap(seq_net.init)(jax.random.split(jax.random.key(0), 3))
    p, h = jn.fit_many(seq_net, batch, X, ids, steps=20, learning_rate=0.3, progress=False,
                       gradients="manual")
    assert h["cost"].shape == (3, 20)
    one = jax.tree.map(lambda a: a[1], batch)
    _, h1 = jn.fit(seq_net, one, X, ids, steps=20, learning_rate=0.3, progress=False,
                   gradients="manual")
    np.testing.assert_allclose(h["cost"][1], h1["cost"], rtol=1e-5)


def test_checkpoint_round_trip_and_kind_mismatch(tmp_path, seq_net):
    params = seq_net.init(jax.random.key(0))
    path = jn.save(tmp_path / "seq.npz", seq_net, params, history={"cost": [1.0, 0.5]})
    net, loaded = jn.load(path)
    assert net == seq_net and net.shapes == seq_net.shapes
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(jn.CheckpointError, match="Sequential checkpoint, not the MLP"):
        jn.load(path, kind="MLP")
    mlp = jn.MLP((3, 2))
    jn.save(tmp_path / "mlp.npz", mlp, mlp.init(jax.random.key(0)))
    with pytest.raises(jn.CheckpointError, match="MLP checkpoint, not the Sequential"):
        jn.load(tmp_path / "mlp.npz", kind=jn.Sequential)


def test_bad_inputs_are_clear_errors(seq_net):
    params = seq_net.init(jax.random.key(0))
    X = jnp.zeros((3, 5, 4))
    with pytest.raises(ValueError, match=r"X must have shape \(3, 5, 'm'\)"):
        seq_net.forward(params, jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="Y must have shape"):
        seq_net.cost(params, X, jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"class ids in Y must lie in \[0, 4\)"):
        seq_net.cost(params, X, jnp.full((5, 4), 4))
    with pytest.raises(ValueError, match=r"params\[1\]\['W'\].*shape \(4, 6\)"):
        seq_net.cost([params[0], {"W": jnp.zeros((4, 5)), "b": params[1]["b"]}], X,
                     jnp.zeros((5, 4), jnp.int32))
    with pytest.raises(ValueError, match="needs a 'softmax' output"):
        jn.Sequential([Dense(2, "sigmoid")], input_shape=(3,), loss="categorical_cross_entropy")
    with pytest.raises(TypeError, match="not a layer instance"):
        jn.Sequential([Dense], input_shape=(3,))
    with pytest.raises(ValueError, match="input_shape must be"):
        jn.Sequential([Dense(2)], input_shape=(0,))
    with pytest.raises(ValueError, match="non-empty list of layers"):
        jn.Sequential([], input_shape=(3,))


def test_clip_norm_bounds_every_update():
    """With SGD, α = 1 and clip_norm = c, no step moves the parameters by more than c."""
    net = jn.Sequential([Dense(1)], input_shape=(2,))
    params = [{"W": jnp.array([[50.0, -50.0]]), "b": jnp.array([[10.0]])}]
    X = jnp.array([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0]])
    Y = jnp.zeros((1, 3))
    p1, _ = jn.fit(net, params, X, Y, steps=1, learning_rate=1.0, clip_norm=0.5, progress=False)
    step = np.sqrt(sum(float(jnp.sum((a - b) ** 2)) for a, b in
                       zip(jax.tree.leaves(p1), jax.tree.leaves(params))))
    assert step == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(ValueError, match="clip_norm must be"):
        jn.fit(net, params, X, Y, steps=1, learning_rate=1.0, clip_norm=0.0)


def test_check_gradients_on_a_sequential_names_each_layers_leaves():
    net = jn.Sequential([Dense(5, "relu"), Dense(3, "softmax")], input_shape=(4,))
    params = net.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (4, 12))
    report = jn.check_gradients(net, params, X, jnp.arange(12) % 3)  # integer ids stay ids
    assert report.ok, str(report)
    assert [leaf.name for leaf in report.leaves] == ["W[1]", "b[1]", "W[2]", "b[2]"]
    assert report["W[1]"].kinks is not None and report["W[2]"].kinks is None

    def wrong(p, X, Y):  # a planted bug: the second layer's bias gradient doubled
        g = net._backprop(p, X, Y)
        return [g[0], {"W": g[1]["W"], "b": 2 * g[1]["b"]}]
    bad = jn.check_grad(net._cost, wrong, params, X, jnp.arange(12) % 3)
    assert bad.failing == ["[1]['b']"]
