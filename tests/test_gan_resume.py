"""GAN long runs: `train(steps=2N)` equals `train(steps=N)` checkpointed and resumed to 2N (both
optimizers' states, a schedule, minibatches, clipping, k_disc = 2), rotating checkpoints, clear
errors for a resume that differs, and SIGINT stopping the game at a chunk boundary."""

import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet as jn
from jaxnet import gan as gm

G = jn.MLP((2, 8, 2), hidden="relu", output="identity")
D = jn.MLP((2, 8, 1), hidden="relu", output="sigmoid")
GAN = gm.GAN(G, D)
X = jax.random.normal(jax.random.key(1), (2, 64))
SCHEDULE = optax.exponential_decay(0.01, 10, 0.9)
KW = dict(key=jax.random.key(3), batch_size=16, k_disc=2, progress=False, chunk=16,
          optimizer={"generator": optax.chain(optax.clip_by_global_norm(1.0), optax.adam(SCHEDULE)),
                     "discriminator": "adam"},
          learning_rate={"generator": None, "discriminator": 0.005})


def worst(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                              jax.tree.leaves(b)))


def test_resume_equals_an_uninterrupted_run(tmp_path):
    p0 = GAN.init(jax.random.key(0))
    full, h_full = gm.train(GAN, p0, X, steps=40, **KW)
    path = tmp_path / "g.npz"
    half, h_half = gm.train(GAN, p0, X, steps=20, checkpoint=path, checkpoint_every=7, keep=2, **KW)
    # path is the newest (step 20); the two newest step-named files lie beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.npz", "g.step-00000014.npz", "g.step-00000020.npz"]
    ck = gm.load_checkpoint(path)
    assert ck.step == 20 and worst(ck.params, half) == 0.0
    resumed, h = gm.train(GAN, p0, X, steps=40, resume=path, **KW)
    # Step s draws from fold_in(key, s) and the same compiled chunk (chunk=16) runs: measured worst
    # difference 0.0 (bitwise); allow float32 round-off in case XLA fuses differently.
    assert worst(resumed, full) <= 1e-6
    assert h["steps_run"] == 40 and h["stopped"] == "steps"
    np.testing.assert_allclose(h["d_loss"], h_full["d_loss"], rtol=1e-6)
    # from an older rotated file: also to the end
    again, _ = gm.train(GAN, p0, X, steps=40, resume=tmp_path / "g.step-00000014.npz", **KW)
    assert worst(again, full) <= 1e-6
    # a resume whose settings differ says which
    with pytest.raises(ValueError, match="batch_size: 16 there, 8 now"):
        gm.train(GAN, p0, X, steps=40, resume=path, **{**KW, "batch_size": 8})
    with pytest.raises(ValueError, match="key differs"):
        gm.train(GAN, p0, X, steps=40, resume=path, **{**KW, "key": jax.random.key(4)})
    with pytest.raises(ValueError, match="past steps=10"):
        gm.train(GAN, p0, X, steps=10, resume=path, **KW)
    plain = gm.save(tmp_path / "plain.npz", GAN, half)
    with pytest.raises(ValueError, match="no optimizer state"):
        gm.train(GAN, p0, X, steps=40, resume=plain, **KW)
    # gan.save with the returned optimizer states is resumable too
    own = gm.save(tmp_path / "own.npz", GAN, half, history=h_half,
                  opt_state=h_half["opt_state"], step=20)
    assert worst(gm.train(GAN, p0, X, steps=40, resume=own, **KW)[0], full) <= 1e-6


def test_sigint_stops_at_a_chunk_boundary_and_resumes(tmp_path):
    p0 = GAN.init(jax.random.key(0))
    path = tmp_path / "g.npz"
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        params, h = gm.train(GAN, p0, X, steps=10**7, checkpoint=path, **KW)
    finally:
        timer.cancel()
    assert h["stopped"] == "interrupted" and h["signal"] == "SIGINT" and 0 < h["steps_run"] < 10**7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler put back
    ck = gm.load_checkpoint(path)
    assert ck.step == h["steps_run"] and worst(ck.params, params) == 0.0
    n = h["steps_run"] + 3
    resumed, _ = gm.train(GAN, p0, X, steps=n, resume=path, **KW)
    full, _ = gm.train(GAN, p0, X, steps=n, **KW)
    assert worst(resumed, full) <= 1e-6
