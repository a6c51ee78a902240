"""fit_many equals fit member by member; data-parallel fit equals single-device fit on 8 devices;
the gradient is the same in every execution mode."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn


@pytest.fixture(scope="module")
def xor():
    X, Y = jn.data.xor(key=jax.random.key(0), m=64, noise=0.1)
    return jn.MLP((2, 4, 1), hidden="relu", output="sigmoid"), X, Y


def member(tree, k):
    return jax.tree.map(lambda a: a[k], tree)


def test_fit_many_equals_fit_per_member(xor):
    net, X, Y = xor
    K = 5
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(1), K))
    lrs = np.array([0.05, 0.1, 0.3, 0.5, 1.0])
    out, h = jn.fit_many(net, batch, X, Y, steps=150, learning_rate=lrs, progress=False)
    assert h["cost"].shape == (K, 150) and h["final_cost"].shape == (K,)
    for k in range(K):
        p, hk = jn.fit(net, member(batch, k), X, Y, steps=150, learning_rate=float(lrs[k]),
                       progress=False)
        np.testing.assert_allclose(h["cost"][k], hk["cost"], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(member(out, k))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_many_members_stop_on_their_own(xor):
    _, X, _ = xor
    net = jn.MLP((2, 4, 1), hidden="tanh", output="identity")  # squared error: α = 50 explodes
    Y = X[:1] - 0.5 * X[1:]
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(2), 3))
    lrs = np.array([0.1, 50.0, 0.3])
    with pytest.warns(jn.DivergenceWarning, match="1 of 3 models"):
        out, h = jn.fit_many(net, batch, X, Y, steps=300, learning_rate=lrs, tol=1e-7,
                             progress=False)
    assert h["stopped"][1] == "diverged"
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(out))
    assert h["steps_run"][1] < 300 and np.isnan(h["cost"][1, -1])
    for k in (0, 2):
        _, hk = jn.fit(net, member(batch, k), X, Y, steps=300, learning_rate=float(lrs[k]),
                       tol=1e-7, progress=False)
        assert h["steps_run"][k] == hk["steps_run"] and h["stopped"][k] == hk["stopped"]


def test_fit_many_compiles_once_for_all_members(xor):
    from jaxnet import training
    net, X, Y = xor
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(3), 6))
    jn.fit_many(net, batch, X, Y, steps=20, learning_rate=0.1, progress=False)
    before = training.TRACE_COUNT[0]
    jn.fit_many(net, batch, X, Y, steps=20, learning_rate=np.full(6, 0.2), progress=False)
    assert training.TRACE_COUNT[0] == before


def test_fit_many_bad_inputs(xor):
    net, X, Y = xor
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(3), 4))
    with pytest.raises(ValueError, match=r"shape \(K,\) = \(4,\)"):
        jn.fit_many(net, batch, X, Y, steps=5, learning_rate=np.ones(3))
    with pytest.raises(ValueError, match="finite number > 0"):
        jn.fit_many(net, batch, X, Y, steps=5, learning_rate=np.array([0.1, 0, 0.1, 0.1]))
    with pytest.raises(ValueError, match="leading axis K"):
        jn.fit_many(net, net.init(jax.random.key(0)), X, Y, steps=5, learning_rate=0.1)


def test_execution_modes_single_device(xor):
    net, X, Y = xor
    report = jn.check_execution_modes(net, net.init(jax.random.key(4)), X, Y)
    assert report.ok, str(report)
    assert [r[0] for r in report.rows][:3] == ["eager", "jit", "vmap (member 1 of 4)"]


MULTI_DEVICE = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import jaxnet as jn
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxnet import training
    assert len(jax.devices()) == 8, jax.devices()
    # float64, so "equal" can mean 1e-9: only the order of the all-reduce's sums differs.
    jax.config.update("jax_enable_x64", True)
    mesh = jn.data_mesh()
    X, Y = jn.data.two_moons(key=jax.random.key(0), m=256, noise=0.1, dtype=jnp.float64)
    net = jn.MLP((2, 16, 16, 1), hidden="relu", output="sigmoid")
    params = net.init(jax.random.key(1), dtype=jnp.float64)
    p1, h1 = jn.fit(net, params, X, Y, steps=200, learning_rate=0.3, progress=False)
    p8, h8 = jn.fit(net, params, X, Y, steps=200, learning_rate=0.3, progress=False, mesh=mesh)
    np.testing.assert_allclose(h1["cost"], h8["cost"], rtol=1e-9)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # The parameters came back replicated on all 8 devices ...
    for a in jax.tree.leaves(p8):
        assert a.sharding.is_fully_replicated and len(a.sharding.device_set) == 8, a.sharding
    # ... and the data really is split by columns: each device holds m/8 of them.
    from jaxnet.training import place
    Xs, Ys, _ = place(mesh, X, Y, params)
    assert {s.data.shape for s in Xs.addressable_shards} == {(2, 32)}
    assert Xs.sharding.spec == P(None, "data")
    # XLA inserted the gradient all-reduce into the compiled loop.
    hlo = training._run_chunk.lower(*training.LAST_CALL).compile().as_text()
    assert "all-reduce" in hlo
    # fit_many with the same mesh equals fit_many on one device.
    batch = jax.vmap(lambda k: net.init(k, dtype=jnp.float64))(
        jax.random.split(jax.random.key(2), 4))
    b1, g1 = jn.fit_many(net, batch, X, Y, steps=100, learning_rate=0.3, progress=False)
    b8, g8 = jn.fit_many(net, batch, X, Y, steps=100, learning_rate=0.3, progress=False,
                         mesh=mesh)
    np.testing.assert_allclose(g1["cost"], g8["cost"], rtol=1e-9)
    # Minibatches split over the devices too.
    k = jax.random.key(5)
    _, hb1 = jn.fit(net, params, X, Y, steps=50, learning_rate=0.3, batch_size=64, key=k,
                    progress=False)
    _, hb8 = jn.fit(net, params, X, Y, steps=50, learning_rate=0.3, batch_size=64, key=k,
                    progress=False, mesh=mesh)
    np.testing.assert_allclose(hb1["cost"], hb8["cost"], rtol=1e-9)
    # Clear errors for sizes that do not split.
    for kwargs, msg in (({"mesh": mesh, "batch_size": 60, "key": k}, "batch_size = 60"),):
        try:
            jn.fit(net, params, X, Y, steps=5, learning_rate=0.1, progress=False, **kwargs)
        except ValueError as e:
            assert msg in str(e), e
        else:
            raise AssertionError("no error")
    try:
        jn.fit(net, params, X[:, :250], Y[:, :250], steps=5, learning_rate=0.1, mesh=mesh)
    except ValueError as e:
        assert "do not split evenly" in str(e), e
    else:
        raise AssertionError("no error")
    report = jn.check_execution_modes(net, params, X, Y, mesh=mesh)
    print(report)
    assert report.ok and report.rows[-1][0].startswith("sharded (8 devices")
    print("MULTI-DEVICE OK")
""")


# appended to the suite's XLA_FLAGS (tests/conftest.py), which the subprocess inherits
EIGHT_DEVICES = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"


def test_data_parallel_on_8_cpu_devices():
    env = dict(os.environ, XLA_FLAGS=EIGHT_DEVICES,
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MULTI-DEVICE OK" in result.stdout
    assert "sharded (8 devices" in result.stdout


MULTI_DEVICE_LAYERS = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import jaxnet as jn
    from jax.sharding import PartitionSpec as P
    from jaxnet import training
    from jaxnet.training import place
    assert len(jax.devices()) == 8, jax.devices()
    jax.config.update("jax_enable_x64", True)
    mesh = jn.data_mesh()
    k = jax.random.key(5)
    # A CNN on images (C, H, W, m) with one-hot targets, and a character LSTM whose inputs and
    # targets are integer ids (T, m): the last axis is the one split over the devices.
    cnn = jn.Sequential([jn.Conv2D(4, 3, padding="same", activation="relu"), jn.MaxPool2D(2),
                         jn.Flatten(), jn.Dense(3, "softmax")], input_shape=(1, 6, 6))
    Xc = jax.random.normal(jax.random.key(0), (1, 6, 6, 64), jnp.float64)
    Yc = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (64,), 0, 3), 3, axis=0,
                        dtype=jnp.float64)
    lstm = jn.Sequential([jn.Embedding(7, 4), jn.LSTM(8, return_sequences=True),
                          jn.Dense(7, "softmax")], input_shape=(5,))
    Xs = jax.random.randint(jax.random.key(2), (5, 64), 0, 7)
    Ys = jnp.roll(Xs, -1, axis=0)
    # Full batch for the CNN, minibatches for the LSTM: each compile costs seconds here.
    for net, X, Y, kw in ((cnn, Xc, Yc, {}), (lstm, Xs, Ys, {"batch_size": 32, "key": k})):
        params = net.init(jax.random.key(1), dtype=jnp.float64)
        p1, h1 = jn.fit(net, params, X, Y, steps=20, learning_rate=0.05, optimizer="adam",
                        gradients="manual", progress=False, **kw)
        p8, h8 = jn.fit(net, params, X, Y, steps=20, learning_rate=0.05, optimizer="adam",
                        gradients="manual", progress=False, mesh=mesh, **kw)
        np.testing.assert_allclose(h1["cost"], h8["cost"], rtol=1e-9)
        for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)
            assert b.sharding.is_fully_replicated and len(b.sharding.device_set) == 8
        Xp, Yp, _ = place(mesh, X, Y, params)
        assert {s.data.shape[-1] for s in Xp.addressable_shards} == {8}, Xp.sharding
        assert Xp.sharding.spec[-1] == "data" and Yp.sharding.spec[-1] == "data"
        hlo = training._run_chunk.lower(*training.LAST_CALL).compile().as_text()
        assert "all-reduce" in hlo
        report = jn.check_execution_modes(net, params, X, Y, mesh=mesh)
        print(report)
        assert report.ok, report
    print("MULTI-DEVICE LAYERS OK")
""")


def test_data_parallel_sequential_on_8_cpu_devices():
    """mesh= on a Sequential: a CNN (4-D images) and a character LSTM (integer ids (T, m) as
    inputs and targets) train identically on one device and on 8, the examples split."""
    env = dict(os.environ, XLA_FLAGS=EIGHT_DEVICES,
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE_LAYERS], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MULTI-DEVICE LAYERS OK" in result.stdout
