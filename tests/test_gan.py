"""GAN: losses vs numpy, derivatives vs jax.grad, both players' hand-written gradients three ways
(MLP and Sequential players, every loss), planted bugs named by leaf, the compiled game loop,
checkpoints, denoising pairs, and clear errors."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxnet as jn
from jaxnet import gan as gan_mod
from jaxnet.gan import GAN
from jaxnet.noise import noisy_pairs


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- the losses ------------------------------------------------------------------------------------
def test_losses_match_numpy_formulas_and_hand_values():
    rng = np.random.default_rng(0)
    lr, lf = rng.normal(size=(1, 7)) * 3, rng.normal(size=(1, 5)) * 3
    with jax.enable_x64(True):
        Dr, Df = np_sigmoid(lr), np_sigmoid(lf)
        want_d = np.mean(-np.log(Dr)) + np.mean(-np.log(1 - Df))
        assert rel(gan_mod.discriminator_loss(jnp.asarray(lr), jnp.asarray(lf)), want_d) < 1e-13
        assert rel(gan_mod.generator_loss(jnp.asarray(lf)), np.mean(-np.log(Df))) < 1e-13
        assert rel(gan_mod.minimax_generator_loss(jnp.asarray(lf)),
                   np.mean(np.log(1 - Df))) < 1e-13
        assert rel(gan_mod.ls_discriminator_loss(jnp.asarray(lr), jnp.asarray(lf)),
                   0.5 * np.mean((lr - 1) ** 2) + 0.5 * np.mean(lf ** 2)) < 1e-13
        assert rel(gan_mod.ls_generator_loss(jnp.asarray(lf)),
                   0.5 * np.mean((lf - 1) ** 2)) < 1e-13
        zero = jnp.zeros((1, 4))
        assert float(gan_mod.discriminator_loss(zero, zero)) == pytest.approx(2 * np.log(2), 1e-14)
        assert float(gan_mod.generator_loss(zero)) == pytest.approx(np.log(2), 1e-14)
        assert float(gan_mod.minimax_generator_loss(zero)) == pytest.approx(-np.log(2), 1e-14)
        s_r, s_f = jnp.asarray([[1.0, 3.0]]), jnp.asarray([[0.0, 2.0]])
        assert float(gan_mod.ls_discriminator_loss(s_r, s_f)) == 2.0  # ½·mean(0, 4) + ½·mean(0, 4)
        assert float(gan_mod.ls_generator_loss(s_f)) == 0.5  # ½·mean(1, 1)


PAIRS = [(gan_mod.discriminator_loss, gan_mod.discriminator_loss_grad, 2),
         (gan_mod.ls_discriminator_loss, gan_mod.ls_discriminator_loss_grad, 2),
         (gan_mod.generator_loss, gan_mod.generator_loss_grad, 1),
         (gan_mod.minimax_generator_loss, gan_mod.minimax_generator_loss_grad, 1),
         (gan_mod.ls_generator_loss, gan_mod.ls_generator_loss_grad, 1)]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([0.1, 3.0, 40.0]),
       m=st.sampled_from([1, 5]))
def test_loss_derivatives_equal_jax_grad(seed, scale, m):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        args = [jnp.asarray(rng.normal(size=(1, m + k)) * scale) for k in range(2)]
        for loss, grad, n in PAIRS:
            manual = grad(*args[:n])
            auto = jax.grad(loss, argnums=tuple(range(n)))(*args[:n])
            manual = manual if n > 1 else (manual,)
            for a, b in zip(manual, auto):
                assert a.shape == b.shape
                assert rel(a, b) <= 1e-12, loss.__name__


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_losses_and_derivatives_finite_for_huge_logits(dtype):
    with jax.enable_x64(True):
        big = jnp.asarray([[1e4, -1e4, 0.0]], dtype)
        for loss, grad, n in PAIRS[:1] + PAIRS[2:4]:
            args = (big, -big)[:n]
            assert np.isfinite(float(loss(*args))), loss.__name__
            g = grad(*args)
            assert all(np.all(np.isfinite(np.asarray(x))) for x in (g if n > 1 else (g,)))
        one = jnp.ones((1, 1), dtype) * 1e4
        assert float(gan_mod.discriminator_loss(one, -one)) == 0.0  # D right and sure
        assert float(gan_mod.discriminator_loss(-one, -one)) == pytest.approx(1e4)  # D sure, wrong
        assert float(gan_mod.generator_loss(-one)) == pytest.approx(1e4)
        assert float(gan_mod.minimax_generator_loss(one)) == pytest.approx(-1e4)
        # The saturation the non-saturating loss avoids: D rejects the fakes (l_f = −1e4).
        assert float(gan_mod.minimax_generator_loss_grad(-one)[0, 0]) == 0.0
        assert float(gan_mod.generator_loss_grad(-one)[0, 0]) == -1.0


# --- both players, three ways --------------------------------------------------------------------
def mlp_gan(loss="non_saturating"):
    G = jn.MLP((3, 8, 4), hidden="relu", output="tanh")
    D = jn.MLP((4, 8, 1), hidden="relu", output="sigmoid")
    return GAN(G, D, loss=loss)


def seq_gan(loss):
    G = jn.Sequential((jn.Dense(8, "tanh"), jn.Dense(6, "leaky_relu"), jn.Dense(4, "identity")),
                      input_shape=(3,))
    out = "identity" if loss == "least_squares" else "sigmoid"
    D = jn.Sequential((jn.Dense(8, "tanh"), jn.Dense(1, out)), input_shape=(4,))
    return GAN(G, D, loss=loss)


def data(gan, key, m_real=9, m_fake=7):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (*gan.sample_shape, m_real)), gan.noise(k2, m_fake)


def check_generator(gan, params, Z, grad_fn=None, **options):
    grad_fn = grad_fn or (lambda gp, dp, Z: gan.generator_backprop(
        {"generator": gp, "discriminator": dp}, Z))
    return jn.check_grad(
        lambda gp, dp, Z: gan.generator_cost({"generator": gp, "discriminator": dp}, Z),
        grad_fn, params["generator"], params["discriminator"], Z, **options)


def check_discriminator(gan, params, X, Z, grad_fn=None, **options):
    grad_fn = grad_fn or (lambda dp, gp, X, Z: gan.discriminator_backprop(
        {"generator": gp, "discriminator": dp}, X, Z))
    return jn.check_grad(
        lambda dp, gp, X, Z: gan.discriminator_cost({"generator": gp, "discriminator": dp}, X, Z),
        grad_fn, params["discriminator"], params["generator"], X, Z, **options)


@pytest.mark.parametrize("make,loss", [(mlp_gan, "non_saturating"), (seq_gan, "minimax"),
                                       (seq_gan, "least_squares")],
                         ids=["MLP-non_saturating", "Sequential-minimax",
                              "Sequential-least_squares"])
def test_both_players_gradients_three_ways(make, loss, getkey):
    gan = make(loss)
    params = gan.init(getkey())
    X, Z = data(gan, getkey())
    taylor = make is mlp_gan  # the Taylor test once; manual, autodiff and FD every time
    for report in (check_generator(gan, params, Z, taylor=taylor),
                   check_discriminator(gan, params, X, Z, taylor=taylor)):
        assert report.ok, str(report)
        assert [leaf.name for leaf in report.leaves] == ["[0]['W']", "[0]['b']", "[1]['W']",
                                                         "[1]['b']", "[2]['W']", "[2]['b']"][
            :len(report.leaves)]


def test_discriminator_step_detaches_the_generator(getkey):
    """jax.grad of J_D has exactly zero generator leaves (G(z) is data in D's step); D's leaves
    are compared with the hand-written ones in the three-way checks above."""
    gan = mlp_gan()
    params = gan.init(getkey())
    X, Z = data(gan, getkey())
    auto = jax.jit(jax.grad(gan.discriminator_cost))(params, X, Z)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(auto["generator"]))
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(auto["discriminator"]))
    manual = jax.jit(gan.discriminator_backprop)(params, X, Z)
    assert jax.tree.structure(manual) == jax.tree.structure(auto["discriminator"])


# --- planted bugs: the checker fails and names the leaves ------------------------------------------
def test_planted_bug_generator_gradient_skips_sigmoid_shortcut(getkey):
    """The logits' gradient fed to D's backward as if it were dA (through σ' once more)."""
    gan = mlp_gan()
    params = gan.init(getkey())
    _, Z = data(gan, getkey())

    def buggy(gp, dp, Z):
        _, X_fake, caches_g = gan._G._forward(gp, Z)
        logits, _, caches_d = gan._D._forward(dp, X_fake)
        dX, _ = gan._D.backward_chain(dp, caches_d, gan_mod.generator_loss_grad(logits),
                                      from_logits=False)  # BUG: should start from dZ^[L]
        return gan._G.backward_chain(gp, caches_g, dX)[1]

    report = check_generator(gan, params, Z, buggy, taylor=False)
    assert not report.ok
    assert report.failing == ["[0]['W']", "[0]['b']", "[1]['W']", "[1]['b']"]


def test_planted_bug_discriminator_fake_term_sign_flipped(getkey):
    gan = mlp_gan()
    params = gan.init(getkey())
    X, Z = data(gan, getkey())

    def buggy(dp, gp, X, Z):
        X_fake = gan._G._forward(gp, Z)[1]
        s, _, caches = gan._D._forward(dp, jnp.concatenate([X, X_fake], axis=-1))
        d_r, d_f = gan_mod.discriminator_loss_grad(s[:, :X.shape[1]], s[:, X.shape[1]:])
        d = jnp.concatenate([d_r, -d_f], axis=-1)  # BUG: the fake term's sign
        return gan._D.backward_chain(dp, caches, d, from_logits=True)[1]

    report = check_discriminator(gan, params, X, Z, buggy, taylor=False)
    assert report.failing == ["[0]['W']", "[0]['b']", "[1]['W']", "[1]['b']"]


def test_planted_bug_one_leaf_is_named(getkey):
    """Only the generator's first bias is wrong (a mean where the sum belongs): only it fails."""
    gan = mlp_gan()
    params = gan.init(getkey())
    _, Z = data(gan, getkey())

    def buggy(gp, dp, Z):
        grads = gan.generator_backprop({"generator": gp, "discriminator": dp}, Z)
        grads[0] = {**grads[0], "b": grads[0]["b"] / Z.shape[1]}
        return grads

    report = check_generator(gan, params, Z, buggy, taylor=False)
    assert report.failing == ["[0]['b']"]


# --- the compiled game -------------------------------------------------------------------------
def small_game():
    gan = mlp_gan()
    X = jnp.tanh(jax.random.normal(jax.random.key(1), (4, 64)))
    kw = dict(steps=6, key=jax.random.key(2), batch_size=16, learning_rate=1e-3, progress=False)
    return gan, gan.init(jax.random.key(0)), X, kw


def test_train_history_and_compiles_once():
    gan, params, X, kw = small_game()
    p1, h1 = gan_mod.train(gan, params, X, **kw, noise_dim=3)
    for name in gan_mod.RECORDS:
        assert h1[name].shape == (6,) and np.all(np.isfinite(h1[name])), name
    assert np.all((h1["d_real"] > 0) & (h1["d_real"] < 1) & (h1["d_fake"] > 0))
    assert h1["steps_run"] == 6 and h1["stopped"] == "steps" and h1["k_disc"] == 1
    assert jax.tree.structure(p1) == jax.tree.structure(params)
    assert not np.allclose(p1["generator"][0]["W"], params["generator"][0]["W"])

    traces = gan_mod.TRACE_COUNT[0]
    p2, h2 = gan_mod.train(gan, params, X, **{**kw, "learning_rate": 2e-3,
                                               "key": jax.random.key(3)})
    assert gan_mod.TRACE_COUNT[0] == traces, "a second call with the same shapes retraced"
    assert not np.allclose(h2["d_loss"], h1["d_loss"])
    p5, h5 = gan_mod.train(gan, params, X, **kw, snapshots=(3, 6))
    assert gan_mod.TRACE_COUNT[0] == traces, "snapshots recompiled the loop"
    assert sorted(h5["snapshots"]) == [3, 6]
    for a, b in zip(jax.tree.leaves(h5["snapshots"][6]), jax.tree.leaves(p1)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(h5["snapshots"][3]["generator"][0]["W"], p1["generator"][0]["W"])

    # Chunks change nothing: step t draws from fold_in(key, t).
    p3, h3 = gan_mod.train(gan, params, X, **kw, chunk=3)
    np.testing.assert_allclose(h3["g_loss"], h1["g_loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p3), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_train_divergence_keeps_last_finite_params():
    gan, params, X, kw = small_game()
    traces = gan_mod.TRACE_COUNT[0]
    with pytest.warns(jn.DivergenceWarning, match="non-finite"):
        out, h = gan_mod.train(gan, params, 1e3 * X, **{**kw, "learning_rate": 1e30})
    assert h["stopped"] == "diverged" and h["steps_run"] < 6
    assert not np.isfinite(h["d_loss"][-1] + h["g_loss"][-1] + h["g_grad_norm"][-1])
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(out))
    with pytest.raises(jn.DivergenceError):
        gan_mod.train(gan, params, 1e3 * X, **{**kw, "learning_rate": 1e30},
                      on_divergence="raise")
    assert gan_mod.TRACE_COUNT[0] <= traces + 1  # compiled once at most (shared with the above)


def reference_game(params, X, *, steps, key, k_disc, lr_g, lr_d):
    """The documented game with plain jax.grad and SGD, for `seq_gan("least_squares")`: step t
    draws from fold_in(key, t); discriminator step j from fold_in(., j) split into (real, noise)
    keys; full batch; the generator step on the last discriminator step's noise."""
    acts = {"tanh": jnp.tanh, "identity": lambda z: z,
            "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z)}

    def net(p, A, names):
        for layer, g in zip(p, names):
            A = acts[g](layer["W"] @ A + layer["b"])
        return A

    G = lambda gp, Z: net(gp, Z, ("tanh", "leaky_relu", "identity"))
    D = lambda dp, A: net(dp, A, ("tanh", "identity"))
    J_D = lambda dp, gp, Z: 0.5 * jnp.mean((D(dp, X) - 1) ** 2) + 0.5 * jnp.mean(D(dp, G(gp, Z)) ** 2)
    J_G = lambda gp, dp, Z: 0.5 * jnp.mean((D(dp, G(gp, Z)) - 1) ** 2)
    sgd = jax.jit(lambda J, lr, p, *a: jax.tree.map(lambda w, g: w - lr * g, p,
                                                    jax.grad(J)(p, *a)), static_argnums=0)
    gp, dp = params["generator"], params["discriminator"]
    for t in range(steps):
        for j in range(k_disc):
            _, k_z = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, t), j))
            Z = jax.random.normal(k_z, (3, X.shape[1]))
            dp = sgd(J_D, lr_d, dp, gp, Z)
        gp = sgd(J_G, lr_g, gp, dp, Z)
    return {"generator": gp, "discriminator": dp}


def test_train_equals_plain_jax_reference_with_k_disc():
    """k_disc=2, both gradient modes, an optax optimizer and a name in the per-player dicts."""
    gan = seq_gan("least_squares")
    params = gan.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (4, 32))
    kw = dict(steps=4, key=jax.random.key(2), progress=False, k_disc=2,
              optimizer={"generator": optax.sgd(0.05), "discriminator": "sgd"},
              learning_rate={"generator": None, "discriminator": 0.1})
    want = reference_game(params, X, steps=4, key=jax.random.key(2), k_disc=2, lr_g=0.05,
                          lr_d=0.1)
    for gradients in ("manual", "autodiff"):
        got, h = gan_mod.train(gan, params, X, **kw, gradients=gradients)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=gradients)
    assert h["learning_rate"] == {"generator": None, "discriminator": 0.1}
    assert h["k_disc"] == 2 and h["d_loss"].shape == (4,)
    one_step = reference_game(params, X, steps=4, key=jax.random.key(2), k_disc=1, lr_g=0.05,
                              lr_d=0.1)
    assert not np.allclose(one_step["discriminator"][0]["W"], got["discriminator"][0]["W"])


# --- checkpoints ---------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, getkey):
    G = jn.MLP((3, 8, 4), hidden="relu", output="tanh")
    D = jn.Sequential((jn.Dense(8, "relu"), jn.Dense(1, "identity")), input_shape=(4,))
    gan = GAN(G, D, loss="least_squares")
    params = gan.init(getkey())
    history = {"d_loss": np.arange(3.0), "stopped": "steps"}
    path = gan_mod.save(tmp_path / "g.npz", gan, params, history=history)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]  # no temporary file left
    gan2, params2 = gan_mod.load(path)
    assert gan2 == gan and isinstance(gan2.generator, jn.MLP)
    for a, b in zip(jax.tree.leaves(params2), jax.tree.leaves(params)):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    ck = gan_mod.load_checkpoint(path)
    assert np.array_equal(ck.history["d_loss"], history["d_loss"])
    assert ck.history["stopped"] == "steps" and ck.metadata["loss"] == "least_squares"

    with pytest.raises(jn.CheckpointError, match="not a jaxnet checkpoint"):
        jn.load(path)  # a GAN file is not a single network's
    single = jn.save(tmp_path / "one.npz", G, params["generator"])
    with pytest.raises(jn.CheckpointError, match="use jaxnet.load"):
        gan_mod.load(single)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(bad, "w") as out:
        for name in z.namelist():
            data_ = z.read(name)
            if name == "__jaxnet__.npy":
                meta = json.loads(np.load(path)["__jaxnet__"].tobytes())
                meta["loss"] = "no_such_loss"
                arr = np.frombuffer(json.dumps(meta).encode(), np.uint8)
                import io
                buf = io.BytesIO()
                np.save(buf, arr)
                data_ = buf.getvalue()
            out.writestr(name, data_)
    with pytest.raises(jn.CheckpointError, match="invalid GAN"):
        gan_mod.load(bad)
    with pytest.raises(ValueError, match="non-finite"):
        broken = jax.tree.map(lambda a: a, params)
        broken["discriminator"][0]["W"] = broken["discriminator"][0]["W"].at[0, 0].set(jnp.nan)
        gan_mod.save(tmp_path / "nan.npz", gan, broken)


# --- denoising pairs ----------------------------------------------------------------------------
def test_noisy_pairs_statistics_and_determinism():
    X = jax.random.uniform(jax.random.key(0), (64, 300), minval=0.5, maxval=1.0)
    noisy, clean = noisy_pairs(X, key=jax.random.key(1), kind="gaussian", level=0.3)
    assert clean is X or np.array_equal(clean, X)
    eps = np.asarray(noisy - X)
    n = eps.size
    assert abs(eps.mean()) < 4 * 0.3 / np.sqrt(n)
    assert abs(eps.std() - 0.3) < 0.01
    again, _ = noisy_pairs(X, key=jax.random.key(1), kind="gaussian", level=0.3)
    assert np.array_equal(again, noisy)
    other, _ = noisy_pairs(X, key=jax.random.key(2), kind="gaussian", level=0.3)
    assert not np.allclose(other, noisy)
    clipped, _ = noisy_pairs(X, key=jax.random.key(1), level=0.3, clip=(0.0, 1.0))
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0
    assert float(noisy.max()) > 1.0  # not clipped by default

    masked, clean = noisy_pairs(X, key=jax.random.key(3), kind="masking", level=0.25, copies=3)
    assert masked.shape == clean.shape == (64, 900)
    np.testing.assert_array_equal(clean[:, 600:], X)
    zero = np.asarray(masked) == 0
    assert abs(zero.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / zero.size)
    np.testing.assert_array_equal(np.asarray(masked)[~zero], np.asarray(clean)[~zero])
    # the copies differ from one another
    assert not np.array_equal(zero[:, :300], zero[:, 300:600])


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="salt", level=0.1), "unknown noise kind"),
    (dict(level=-0.1), "level must be"),
    (dict(level=float("nan")), "level must be"),
    (dict(kind="masking", level=1.5), "probability"),
    (dict(level=0.1, copies=0), "copies"),
    (dict(level=0.1, clip=(1, 0)), "clip"),
])
def test_noisy_pairs_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        noisy_pairs(jnp.ones((4, 3)), key=jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match="key"):
        noisy_pairs(jnp.ones((4, 3)), key=0, level=0.1)
    with pytest.raises(ValueError, match="floating"):
        noisy_pairs(jnp.ones((4, 3), jnp.int32), key=jax.random.key(0), level=0.1)


# --- clear errors -------------------------------------------------------------------------------
def test_bad_networks_and_inputs():
    G = jn.MLP((3, 8, 4), output="tanh")
    with pytest.raises(ValueError, match=r"output shape \(4,\) must equal .* input shape \(5,\)"):
        GAN(G, jn.MLP((5, 8, 1)))
    with pytest.raises(ValueError, match="single unit"):
        GAN(G, jn.MLP((4, 8, 2), output="softmax"))
    with pytest.raises(ValueError, match="sigmoid unit"):
        GAN(G, jn.MLP((4, 8, 1), output="identity"))
    GAN(G, jn.MLP((4, 8, 1), output="identity"), loss="least_squares")  # fine
    with pytest.raises(ValueError, match="unknown GAN loss"):
        GAN(G, jn.MLP((4, 8, 1)), loss="wasserstein")
    with pytest.raises(TypeError, match="MLP or Sequential"):
        GAN("G", jn.MLP((4, 8, 1)))
    with pytest.raises(ValueError):
        jn.MLP((0, 8, 4))  # a generator cannot take noise of size 0

    gan = GAN(G, jn.MLP((4, 8, 1)))
    params = gan.init(jax.random.key(0))
    X, Z = jnp.ones((4, 5)), jnp.ones((3, 5))
    with pytest.raises(ValueError, match="X_real"):
        gan.discriminator_cost(params, jnp.ones((3, 5)), Z)
    with pytest.raises(ValueError, match="noise Z"):
        gan.generator_cost(params, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="keys"):
        gan.generator_backprop({"generator": params["generator"]}, Z)
    with pytest.raises(ValueError, match=r"params\['discriminator'\]"):
        gan.discriminator_backprop({**params, "discriminator": params["discriminator"][:1]}, X, Z)
    with pytest.raises(ValueError, match="m must be"):
        gan.noise(jax.random.key(0), 0)
    train = lambda **kw: gan_mod.train(gan, params, kw.pop("X", X), **{
        "steps": 2, "key": jax.random.key(0), "learning_rate": 0.1, "progress": False, **kw})
    for kw, match in [(dict(noise_dim=0), "noise_dim"), (dict(noise_dim=4), "noise_dim"),
                      (dict(k_disc=0), "k_disc"), (dict(steps=0), "steps"),
                      (dict(batch_size=6), "batch_size"), (dict(X=jnp.ones((4,))), "X_real"),
                      (dict(X=jnp.ones((5, 8))), "X_real"), (dict(key=1), "key"),
                      (dict(learning_rate={"generator": 0.1}), "learning_rate"),
                      (dict(optimizer="adamw"), "unknown optimizer"),
                      (dict(snapshots=(0,)), "snapshots"), (dict(snapshots=(3,)), "snapshots")]:
        with pytest.raises(ValueError, match=match):
            train(**kw)
