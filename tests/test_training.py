"""fit: learns, matches manual/autodiff trajectories, stops, survives divergence, compiles once."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet as jn
from jaxnet import training


@pytest.fixture(scope="module")
def cancer():
    return jn.data.load("breast_cancer", key=jax.random.key(0))


@pytest.fixture
def toy():
    key = jax.random.key(0)
    X = jax.random.normal(key, (3, 64))
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(jnp.float32)
    net = jn.MLP((3, 8, 1), hidden="relu", output="sigmoid")
    return net, net.init(jax.random.key(1)), X, Y


def test_fit_learns_a_real_data_set(cancer):
    d = cancer
    net = jn.MLP((d.X_train.shape[0], 16, 1), hidden="relu", output="sigmoid")
    params = net.init(jax.random.key(0))
    trained, history = jn.fit(net, params, d.X_train, d.Y_train, steps=300, learning_rate=0.5,
                              validation=(d.X_test, d.Y_test), progress=False)
    assert history["cost"][-1] < 0.3 * history["cost"][0]
    assert jn.accuracy(net, trained, d.X_test, d.Y_test) >= 0.94
    assert history["accuracy"].shape == (300,) and history["stopped"] == "steps"
    assert len(history["val_step"]) == len(history["val_cost"]) == len(history["val_accuracy"])
    assert history["final_cost"] == pytest.approx(float(net.cost(trained, d.X_train, d.Y_train)),
                                                  rel=1e-5)


@pytest.mark.parametrize("net", [jn.MLP((3, 8, 1), hidden="relu", output="sigmoid"),
                                 jn.MLP((3, 6, 5, 3), hidden=("tanh", "leaky_relu"),
                                        output="softmax"),
                                 jn.MLP((3, 4, 2), hidden="sigmoid", output="identity")],
                         ids=["relu-bce", "mixed-cce", "sigmoid-mse"])
def test_manual_and_autodiff_trajectories_agree(net):
    X = jax.random.normal(jax.random.key(2), (3, 50))
    if net.output == "softmax":
        Y = jax.nn.one_hot(jnp.argmax(X, axis=0), 3).T
    elif net.output == "sigmoid":
        Y = (X[:1] > 0).astype(jnp.float32)
    else:
        Y = X[:2] ** 2
    params = net.init(jax.random.key(3))
    p_a, h_a = jn.fit(net, params, X, Y, steps=200, learning_rate=0.1, progress=False)
    p_m, h_m = jn.fit(net, params, X, Y, steps=200, learning_rate=0.1, gradients="manual",
                      progress=False)
    np.testing.assert_allclose(h_a["cost"], h_m["cost"], rtol=1e-4)
    for a, m in zip(jax.tree.leaves(p_a), jax.tree.leaves(p_m)):
        np.testing.assert_allclose(a, m, rtol=1e-4, atol=1e-5)


def test_sgd_step_is_the_documents_update(toy):
    net, params, X, Y = toy
    new, _ = jn.fit(net, params, X, Y, steps=1, learning_rate=0.3, progress=False)
    grads = net.backprop(params, X, Y)
    for p, g, q in zip(jax.tree.leaves(params), jax.tree.leaves(grads), jax.tree.leaves(new)):
        np.testing.assert_allclose(q, p - 0.3 * g, rtol=1e-5, atol=1e-7)


def test_convergence_stops_early(toy):
    net, params, X, Y = toy
    _, h = jn.fit(net, params, X, Y, steps=20000, learning_rate=0.5, tol=1e-6, progress=False)
    assert h["stopped"] == "converged_cost" and h["steps_run"] < 20000
    assert abs(h["cost"][-1] - h["cost"][-2]) < 1e-6
    _, h = jn.fit(net, params, X, Y, steps=20000, learning_rate=0.5, param_tol=1e-3,
                  progress=False)
    assert h["stopped"] == "converged_params" and h["steps_run"] < 20000


def test_divergence_returns_last_finite_parameters(toy):
    net, params, X, Y = toy
    with pytest.warns(jn.DivergenceWarning, match=r"step \d+ \(learning_rate=10000"):
        p, h = jn.fit(net, params, X, Y, steps=500, learning_rate=1e4, progress=False)
    assert h["stopped"] == "diverged" and h["steps_run"] < 500
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(p))
    assert np.isfinite(h["final_cost"])
    assert np.isfinite(h["cost"][:-1]).all() and not np.isfinite(h["cost"][-1])
    with pytest.raises(jn.DivergenceError) as err:
        jn.fit(net, params, X, Y, steps=500, learning_rate=1e4, progress=False,
               on_divergence="raise")
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(err.value.params))


def test_second_call_does_not_recompile(toy):
    net, params, X, Y = toy
    jn.fit(net, params, X, Y, steps=37, learning_rate=0.1, progress=False)
    before = training.TRACE_COUNT[0]
    X2 = X + 1.0
    jn.fit(net, params, X2, Y, steps=37, learning_rate=0.2, progress=False)  # new data and α
    jn.fit(net, params, X, Y, steps=37, learning_rate=0.05, gradients="autodiff", progress=False)
    assert training.TRACE_COUNT[0] == before


def test_minibatches_are_reproducible_from_the_key(toy):
    net, params, X, Y = toy
    run = lambda k: jn.fit(net, params, X, Y, steps=40, learning_rate=0.1, batch_size=16,
                           key=jax.random.key(k), progress=False)
    (p1, h1), (p2, h2), (_, h3) = run(0), run(0), run(1)
    np.testing.assert_array_equal(h1["cost"], h2["cost"])
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(h1["cost"], h3["cost"])
    assert h1["cost"][-10:].mean() < h1["cost"][:10].mean()


def test_optax_optimizer_and_schedule(toy):
    net, params, X, Y = toy
    _, h = jn.fit(net, params, X, Y, steps=100, optimizer=optax.adam(1e-2), progress=False)
    assert h["cost"][-1] < h["cost"][0]
    sched = optax.exponential_decay(0.5, transition_steps=50, decay_rate=0.5)
    _, h = jn.fit(net, params, X, Y, steps=100, learning_rate=sched, progress=False)
    assert h["cost"][-1] < h["cost"][0]
    _, h = jn.fit(net, params, X, Y, steps=100, learning_rate=0.01, optimizer="adam",
                  progress=False)
    assert h["cost"][-1] < h["cost"][0]


def test_chunks_give_the_same_result_as_one_call(toy):
    net, params, X, Y = toy
    p1, h1 = jn.fit(net, params, X, Y, steps=100, learning_rate=0.1, progress=False)
    p2, h2 = jn.fit(net, params, X, Y, steps=100, learning_rate=0.1, progress=False, chunk=30)
    np.testing.assert_allclose(h1["cost"], h2["cost"], rtol=1e-6)


def _plain_sgd_costs(net, params, X, Y, lr, steps):
    """Costs J_1 … J_steps of plain SGD with jax.grad, in a Python loop (float64)."""
    cost = jax.jit(lambda p: net.cost(p, X, Y))
    grad = jax.jit(jax.grad(lambda p: net.cost(p, X, Y)))
    out = []
    for _ in range(steps):
        out.append(float(cost(params)))
        params = jax.tree.map(lambda a, g: a - lr * g, params, grad(params))
    return np.array(out)


def test_whole_blocks_then_single_steps_match_plain_sgd(toy):
    """fit runs training.UNROLL steps per loop iteration while they fit, then one at a time:
    151 steps = 2 blocks + 23 single steps; a tol that is met inside a block stops at the
    same step as the plain loop says."""
    net, params, X, Y = toy
    with jax.enable_x64():
        params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        X64, Y64 = X.astype(jnp.float64), Y.astype(jnp.float64)
        steps = 2 * training.UNROLL + 23
        want = _plain_sgd_costs(net, params64, X64, Y64, 0.5, steps)
        _, h = jn.fit(net, params64, X64, Y64, steps=steps, learning_rate=0.5, progress=False)
        np.testing.assert_allclose(h["cost"], want, rtol=1e-12)
        # a tol between two successive changes, so that the stop falls inside the second block
        k = training.UNROLL + training.UNROLL // 2
        tol = float(np.abs(np.diff(want))[k - 1:].max()) * 1.0001
        first = 1 + int(np.argmax(np.abs(np.diff(want)) < tol))
        assert training.UNROLL < first < 2 * training.UNROLL
        _, h = jn.fit(net, params64, X64, Y64, steps=steps, learning_rate=0.5, tol=tol,
                      progress=False)
        assert h["stopped"] == "converged_cost" and h["steps_run"] == first + 1
        np.testing.assert_allclose(h["cost"], want[:first + 1], rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0, "learning_rate": 0.1}, "steps must be an int >= 1"),
    ({"steps": 10, "learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    ({"steps": 10, "learning_rate": float("nan")}, "learning_rate"),
    ({"steps": 10}, "needs learning_rate"),
    ({"steps": 10, "learning_rate": 0.1, "optimizer": "lbfgs"}, "unknown optimizer"),
    ({"steps": 10, "learning_rate": 0.1, "optimizer": optax.sgd(0.1)}, "learning_rate=None"),
    ({"steps": 10, "learning_rate": 0.1, "gradients": "numeric"}, "gradients must be one of"),
    ({"steps": 10, "learning_rate": 0.1, "batch_size": 1000, "key": jax.random.key(0)},
     "batch_size"),
    ({"steps": 10, "learning_rate": 0.1, "batch_size": 8}, "explicit key"),
    ({"steps": 10, "learning_rate": 0.1, "tol": -1}, "tol must be"),
    ({"steps": 10, "learning_rate": 0.1, "on_divergence": "ignore"}, "on_divergence"),
    ({"steps": 10, "learning_rate": 0.1, "val_every": 2.5}, "val_every must be an int"),
    ({"steps": 10, "learning_rate": 0.1, "val_every": 0}, "val_every must be an int"),
    ({"steps": 10, "learning_rate": 0.1, "chunk": 0}, "chunk must be an int"),
    ({"steps": 10, "learning_rate": [0.1, 0.2]}, "learning_rate must be a finite number"),
    ({"steps": 10, "learning_rate": 0.1, "compute_dtype": "foo"}, "compute_dtype"),
    ({"steps": 10, "learning_rate": 0.1, "mesh": 1}, "mesh must be a jax.sharding.Mesh"),
    ({"steps": 10, "learning_rate": 0.1, "batch_size": 8, "key": 0}, "typed PRNG key"),
])
def test_bad_arguments(toy, kwargs, match):
    net, params, X, Y = toy
    with pytest.raises(ValueError, match=match):
        jn.fit(net, params, X, Y, progress=False, **kwargs)


def test_numpy_scalars_and_reused_schedules(toy):
    net, params, X, Y = toy
    _, h = jn.fit(net, params, X, Y, steps=5000, learning_rate=np.float32(0.5),
                  tol=np.float32(1e-6), progress=False)
    assert h["stopped"] == "converged_cost"
    sched = optax.linear_schedule(0.1, 0.01, 100)
    jn.fit(net, params, X, Y, steps=100, learning_rate=sched, progress=False)
    before = training.TRACE_COUNT[0]
    jn.fit(net, params, X, Y, steps=100, learning_rate=sched, progress=False)
    assert training.TRACE_COUNT[0] == before


def test_bad_validation_argument(toy):
    net, params, X, Y = toy
    with pytest.raises(ValueError, match=r"pair \(X_val, Y_val\)"):
        jn.fit(net, params, X, Y, steps=5, learning_rate=0.1, validation=X)


def test_bad_data_is_rejected_before_training(toy):
    net, params, X, Y = toy
    with pytest.raises(ValueError, match="rows"):
        jn.fit(net, params, X.T, Y, steps=5, learning_rate=0.1)
    with pytest.raises(ValueError, match="labels"):
        jn.fit(net, params, X, Y * 3, steps=5, learning_rate=0.1)
    with pytest.raises(ValueError, match="Y must have shape"):
        jn.fit(net, params, X, Y, steps=5, learning_rate=0.1, validation=(X, Y[:, :3]))


def test_predict_and_metrics(cancer, getkey):
    net = jn.MLP((30, 1), output="sigmoid")
    params = net.init(getkey())
    labels = jn.predict(net, params, cancer.X_test)
    assert labels.shape == (cancer.X_test.shape[1],) and set(np.unique(labels)) <= {0, 1}
    acc = jn.accuracy(net, params, cancer.X_test, cancer.Y_test)
    assert acc == pytest.approx(float(np.mean(np.asarray(labels) == cancer.labels_test)))
    reg = jn.MLP((2, 1), output="identity")
    X, Y = jn.data.linear_regression(key=getkey(), m=200, noise=0.0)
    exact = [{"W": jnp.array([[2.0, -3.0]]), "b": jnp.array([[0.5]])}]
    assert jn.r2(reg, exact, X, Y) == pytest.approx(1.0, abs=1e-6)
    assert jn.mse(reg, exact, X, Y) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="classifier"):
        jn.accuracy(reg, exact, X, Y)


def test_no_warning_on_a_healthy_run(toy):
    net, params, X, Y = toy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jn.fit(net, params, X, Y, steps=50, learning_rate=0.1, progress=False)


@pytest.mark.parametrize("gradients", ["autodiff", "manual"])
def test_bfloat16_compute_dtype_trains_with_float32_master_weights(toy, gradients):
    net, params, X, Y = toy
    p16, h16 = jn.fit(net, params, X, Y, steps=200, learning_rate=0.5, gradients=gradients,
                      compute_dtype=jnp.bfloat16, progress=False)
    p32, h32 = jn.fit(net, params, X, Y, steps=200, learning_rate=0.5, gradients=gradients,
                      progress=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(p16))
    assert h16["cost"].dtype == np.float32 and h16["cost"][-1] < 0.5 * h16["cost"][0]
    # bfloat16 has an 8-bit mantissa: the trajectory follows float32's to about 1e-2.
    np.testing.assert_allclose(h16["cost"], h32["cost"], rtol=5e-2, atol=5e-3)
    with pytest.raises(ValueError, match="compute_dtype"):
        jn.fit(net, params, X, Y, steps=5, learning_rate=0.1, compute_dtype=jnp.int32)


def test_progress_bar_is_drawn_between_chunks(toy, capsys):
    net, params, X, Y = toy
    jn.fit(net, params, X, Y, steps=60, learning_rate=0.1, progress=True, chunk=20)
    err = capsys.readouterr().err
    assert "60/60" in err or "step" in err


def test_final_cost_with_minibatches_is_evaluated_in_chunks(monkeypatch):
    """With minibatches, final_cost is J on every training column, computed a chunk of columns
    at a time (a set too large for one forward pass still gets it): equal to the one-pass J
    written out in numpy, for a sequence model (mean over T·m positions) and for fit_many."""
    monkeypatch.setattr(training, "EVAL_CHUNK", 16)
    seen = []
    real = training._cost_one
    monkeypatch.setattr(training, "_cost_one",
                        lambda net, p, X, Y: seen.append(X.shape[-1]) or real(net, p, X, Y))
    with jax.enable_x64(True):
        net = jn.Sequential([jn.Embedding(5, 3), jn.RNN(4, return_sequences=True),
                             jn.Dense(5, "softmax")], input_shape=(6,))
        ids = jax.random.randint(jax.random.key(0), (6, 100), 0, 5)
        params = net.init(jax.random.key(1), dtype=jnp.float64)
        new, hist = jn.fit(net, params, ids, jnp.roll(ids, -1, 0), steps=3, learning_rate=0.1,
                           batch_size=8, key=jax.random.key(2), progress=False)
        assert max(seen) == 16 and sum(seen[-7:]) == 100, seen  # 6 chunks of 16 and one of 4
        _, A, _ = net._forward(new, ids)
        p = np.asarray(A)  # (5, 6, 100) probabilities
        Y = np.asarray(jnp.roll(ids, -1, 0))
        J = -np.mean(np.log(np.take_along_axis(p, Y[None], 0)))  # mean over all 600 positions
        assert abs(hist["final_cost"] - J) <= 1e-12 * abs(J)
        mlp = jn.MLP((2, 3, 1), hidden="tanh", output="sigmoid")
        X = jax.random.normal(jax.random.key(3), (2, 40), jnp.float64)
        Yb = (X[:1] > 0).astype(jnp.float64)
        batch = jax.vmap(lambda k: mlp.init(k, dtype=jnp.float64))(
            jax.random.split(jax.random.key(4), 3))
        out, hist = jn.fit_many(mlp, batch, X, Yb, steps=3, learning_rate=0.1, batch_size=8,
                                key=jax.random.key(5), progress=False)
        want = [float(mlp.cost(jax.tree.map(lambda a, k=k: a[k], out), X, Yb)) for k in range(3)]
        np.testing.assert_allclose(hist["final_cost"], want, rtol=1e-12)
