"""Long runs: exact resume, checkpoints every N steps, safe interrupts, early stopping."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet as jn
from jaxnet import long_runs, training

SCHED = optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, 40)
# Adam + a schedule + minibatches + clip_norm: every part of the state a resume must restore.
# m = 24, batches of 16: one step per epoch, so every step starts a new epoch's permutation.
OPTS = dict(learning_rate=SCHED, optimizer="adam", batch_size=16, key=jax.random.key(3),
            clip_norm=0.5, progress=False, chunk=10)


@pytest.fixture(scope="module")
def toy():
    X = jax.random.normal(jax.random.key(0), (3, 24))
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(jnp.float32)
    net = jn.MLP((3, 8, 1), hidden="relu", output="sigmoid")
    return net, net.init(jax.random.key(1)), X, Y


def _tokens(vocab, T, m, seed):
    ids = jax.random.randint(jax.random.key(seed), (T + 1, m), 0, vocab)
    return ids[:-1], ids[1:]


def _cases():
    X = jax.random.normal(jax.random.key(5), (1, 8, 8, 24))
    Y = jax.random.randint(jax.random.key(6), (24,), 0, 3)
    yield "cnn", jn.models.digits_cnn(3, widths=(2, 3)), X, Y
    yield "lstm", jn.models.char_lstm(5, 4, hidden=6, d=4), *_tokens(5, 4, 24, 7)
    yield "transformer", jn.models.char_transformer(5, 4, d=8, heads=2, blocks=1,
                                                    mlp_width=8), *_tokens(5, 4, 24, 8)


def _max_rel(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_batch_indices_are_the_epoch_permutations():
    """Step s of an epoch of 3 steps takes slice s mod 3 of permutation(fold_in(key, s // 3))."""
    key, m, b = jax.random.key(4), 10, 3
    for s in range(8):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, s // 3), m))
        want = perm[(s % 3) * b:(s % 3 + 1) * b]
        np.testing.assert_array_equal(long_runs.batch_indices(key, s, m, b), want)


def test_resume_sees_the_same_batches_and_ends_bitwise_equal(toy, tmp_path, monkeypatch):
    """fit(40) against fit(20), jn.save, fit(resume=file) to 40: every step's batch indices are
    the same (recorded from inside the compiled loop) and so are the parameters, bit for bit
    (the compiled step is the same: chunks of 10, resumed at a chunk boundary)."""
    net, params, X, Y = toy
    seen = []

    def spy(key, step, m, batch_size):
        idx = long_runs.batch_indices(key, step, m, batch_size)
        jax.debug.callback(lambda s, i: seen.append((int(s), tuple(np.asarray(i)))), step, idx)
        return idx

    monkeypatch.setattr(training, "batch_indices", spy)
    opts = dict(OPTS, clip_norm=0.4999)  # a config of its own: traced afresh with the spy
    p_full, h_full = jn.fit(net, params, X, Y, steps=40, **opts)
    full = dict(seen)
    seen.clear()
    p_half, h_half = jn.fit(net, params, X, Y, steps=20, **opts)
    path = jn.save(tmp_path / "half.npz", net, p_half, history=h_half)
    p_res, h_res = jn.fit(net, None, X, Y, steps=40, resume=path, **opts)
    resumed = dict(seen)
    assert sorted(full) == sorted(resumed) == list(range(40))
    assert full == resumed
    for s, idx in full.items():  # and they are the documented function of (key, s)
        assert idx == tuple(np.asarray(long_runs.batch_indices(OPTS["key"], s, 24, 16)))
    assert _max_rel(p_res, p_full) == 0.0
    np.testing.assert_array_equal(h_res["cost"], h_full["cost"])  # the old costs come first
    np.testing.assert_array_equal(h_res["learning_rate"], h_full["learning_rate"])
    assert h_res["steps_run"] == 40 and h_res["stopped"] == "steps"


@pytest.mark.parametrize("name,net,X,Y", list(_cases()), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_resume_equals_an_uninterrupted_run(name, net, X, Y, tmp_path):
    """20 + 20 steps against 40 for the digits CNN, a character LSTM and a character
    transformer (tiny): measured worst relative parameter difference 0 (bitwise: the same
    compiled step, chunks of 10)."""
    params = net.init(jax.random.key(2))
    p_full, _ = jn.fit(net, params, X, Y, steps=40, **OPTS)
    p_half, h_half = jn.fit(net, params, X, Y, steps=20, **OPTS)
    ckpt = jn.load_checkpoint(jn.save(tmp_path / "c.npz", net, p_half, history=h_half))
    assert ckpt.step == 20 and len(ckpt.opt_state) == len(jax.tree.leaves(h_half["opt_state"]))
    p_res, _ = jn.fit(net, params, X, Y, steps=40, resume=ckpt, **OPTS)
    assert _max_rel(p_res, p_full) <= 1e-6  # float32 round-off; measured 0


def test_opt_state_round_trips_through_a_checkpoint(toy, tmp_path):
    net, params, _, _ = toy
    state = optax.adam(0.1).init(params)
    ckpt = jn.load_checkpoint(jn.save(tmp_path / "o.npz", net, params, opt_state=state, step=7))
    assert ckpt.step == 7 and ckpt.settings is None
    for a, b in zip(ckpt.opt_state, jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    net2, params2, history, _ = ckpt  # still the 4-tuple it was
    assert history is None and net2 == net


def test_resume_refuses_other_settings(toy, tmp_path):
    net, params, X, Y = toy
    _, h = jn.fit(net, params, X, Y, steps=10, **OPTS)
    path = jn.save(tmp_path / "c.npz", net, params, history=h)
    for change, match in ((dict(optimizer="sgd"), "optimizer: 'adam' there, 'sgd' now"),
                          (dict(batch_size=8), "batch_size: 16 there, 8 now"),
                          (dict(clip_norm=None), "clip_norm: 0.5 there, None now"),
                          (dict(learning_rate=optax.constant_schedule(0.01)), "schedule")):
        with pytest.raises(ValueError, match=match):
            jn.fit(net, None, X, Y, steps=20, resume=path, **dict(OPTS, **change))
    with pytest.raises(ValueError, match="holds no training state"):
        jn.fit(net, None, X, Y, steps=20, resume=jn.save(tmp_path / "p.npz", net, params),
               **OPTS)
    with pytest.raises(ValueError, match="patience .* needs validation"):
        jn.fit(net, params, X, Y, steps=20, patience=3, **OPTS)


def test_periodic_checkpoints_keep_the_newest(toy, tmp_path):
    net, params, X, Y = toy
    path = tmp_path / "run" / "model.npz"
    p, h = jn.fit(net, params, X, Y, steps=40, checkpoint=path, checkpoint_every=10, keep=2,
                  **OPTS)
    names = sorted(f.name for f in path.parent.iterdir())
    assert names == ["model.npz", "model.step-00000030.npz", "model.step-00000040.npz"]
    final = jn.load_checkpoint(path)
    assert final.step == 40 and final.history["stopped"] == "steps"
    assert _max_rel(final.params, p) == 0.0
    at30 = jn.load_checkpoint(path.parent / "model.step-00000030.npz")
    assert at30.step == 30 and at30.history["stopped"] == "running"
    assert len(at30.history["cost"]) == 30
    p_res, _ = jn.fit(net, None, X, Y, steps=40, resume=at30, **OPTS)
    assert _max_rel(p_res, p) == 0.0


CHILD = """
    import sys, time
    import jax, jax.numpy as jnp, optax
    import jaxnet as jn
    from jaxnet import checkpoint
    save = checkpoint.save

    def slow_save(*args, **kwargs):  # a long run: time passes between checkpoints
        out = save(*args, **kwargs)
        time.sleep(1.0)
        return out

    checkpoint.save = slow_save
    X = jax.random.normal(jax.random.key(0), (3, 24))
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(jnp.float32)
    net = jn.MLP((3, 8, 1), hidden="relu", output="sigmoid")
    sched = optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, 40)  # the tests' SCHED
    jn.fit(net, net.init(jax.random.key(1)), X, Y, steps=40, learning_rate=sched,
           optimizer="adam", batch_size=16, key=jax.random.key(3), clip_norm=0.5,
           progress=False, chunk=10, checkpoint=sys.argv[1], checkpoint_every=5)
"""


def test_sigkill_between_checkpoints_then_resume(toy, tmp_path):
    """A run killed with SIGKILL resumes from the newest file and ends as if never stopped."""
    net, params, X, Y = toy
    path = tmp_path / "model.npz"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        deadline = time.monotonic() + 120
        while not (path.exists() and jn.load_checkpoint(path).step >= 10):
            assert child.poll() is None and time.monotonic() < deadline, "child ended early"
            time.sleep(0.05)
        child.kill()
    finally:
        child.wait()
    ckpt = jn.load_checkpoint(path)
    assert 10 <= ckpt.step < 40 and ckpt.history["stopped"] == "running"
    p_res, h_res = jn.fit(net, None, X, Y, steps=40, resume=path, **OPTS)
    p_full, h_full = jn.fit(net, params, X, Y, steps=40, **OPTS)
    assert _max_rel(p_res, p_full) <= 1e-6  # another process, same program: measured 0
    np.testing.assert_allclose(h_res["cost"], h_full["cost"], rtol=1e-6)


class _SignalAfter(long_runs.ChunkSizer):
    """Sends `signals` to this process from a timer thread once the first chunk is done, and
    waits for them there (Python runs the handlers in the main thread, during the sleep), so
    they arrive while training runs, at a known step."""

    signals: tuple = ()

    def done(self, ran):
        super().done(ran)
        if self.signals:
            sigs, type(self).signals = self.signals, ()
            threading.Timer(0.05, lambda: [os.kill(os.getpid(), s) for s in sigs]).start()
            time.sleep(1.0)


def test_sigint_stops_at_a_chunk_boundary_and_resumes(toy, monkeypatch):
    net, params, X, Y = toy
    monkeypatch.setattr(training, "ChunkSizer", _SignalAfter)
    monkeypatch.setattr(_SignalAfter, "signals", (signal.SIGINT,), raising=False)
    before = signal.getsignal(signal.SIGINT)
    p, h = jn.fit(net, params, X, Y, steps=10**7, **dict(OPTS, chunk=None))
    assert h["stopped"] == "interrupted" and h["signal"] == "SIGINT"
    assert 0 < h["steps_run"] < 10**7 and len(h["cost"]) == h["steps_run"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    n = h["steps_run"]
    p_res, _ = jn.fit(net, p, X, Y, steps=n + 20, resume=h, **OPTS)
    # the same 20 steps from the same state, without the detour: a run from scratch to n + 20
    p_full, _ = jn.fit(net, params, X, Y, steps=n + 20, **OPTS)
    assert _max_rel(p_res, p_full) <= 1e-5  # other chunk boundaries: float32 round-off


def test_second_sigint_aborts(toy, monkeypatch):
    net, params, X, Y = toy
    monkeypatch.setattr(training, "ChunkSizer", _SignalAfter)
    monkeypatch.setattr(_SignalAfter, "signals", (signal.SIGTERM, signal.SIGINT), raising=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        jn.fit(net, params, X, Y, steps=10**7, **dict(OPTS, chunk=None))
    assert signal.getsignal(signal.SIGTERM) is before


def test_fit_many_is_interrupted_cleanly_and_resumes(toy, monkeypatch):
    net, _, X, Y = toy
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(9), 3))
    kw = dict(learning_rate=0.05, optimizer="adam", batch_size=16, key=jax.random.key(3),
              progress=False, chunk=10)
    p_full, h_full = jn.fit_many(net, batch, X, Y, steps=40, **kw)
    monkeypatch.setattr(training, "ChunkSizer", _SignalAfter)
    monkeypatch.setattr(_SignalAfter, "signals", (signal.SIGTERM,), raising=False)
    p, h = jn.fit_many(net, batch, X, Y, steps=40, **kw)
    assert list(h["stopped"]) == ["interrupted"] * 3 and h["signal"] == "SIGTERM"
    assert list(h["steps_run"]) == [10] * 3  # the first chunk: stopped at its end
    p_res, h_res = jn.fit_many(net, p, X, Y, steps=40, resume=h, **kw)
    assert list(h_res["stopped"]) == ["steps"] * 3
    assert _max_rel(p_res, p_full) == 0.0  # chunks of 10 either way: the same program
    np.testing.assert_array_equal(h_res["cost"], h_full["cost"])


def test_early_stopping_returns_the_best_parameters():
    """A line y = w x fitted to y = 2x by gradient descent, validated on y = x: w grows
    monotonically from about 0 to 2, so the validation cost falls until w passes 1, then
    rises.  Training stops `patience` evaluations after the best and returns the parameters of
    a run of exactly `best_step` steps."""
    net = jn.Perceptron(1, task="regression")
    params = net.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (1, 24))
    kw = dict(learning_rate=0.05, progress=False, val_every=3, validation=(X, X))
    p, h = jn.fit(net, params, X, 2 * X, steps=300, patience=4, **kw)
    assert h["stopped"] == "early_stopped"
    i = int(np.argmin(h["val_cost"]))
    assert 0 < i and h["val_cost"][i + 1] > h["val_cost"][i]  # a real minimum, inside
    assert h["best_step"] == h["val_step"][i] and h["best_val_cost"] == h["val_cost"][i]
    assert h["steps_run"] == h["val_step"][i + 4] + 1  # stopped at the 4th evaluation after it
    p_best, _ = jn.fit(net, params, X, 2 * X, steps=h["best_step"], **kw)
    assert _max_rel(p, p_best) <= 1e-6
    assert h["final_cost"] == pytest.approx(float(net.cost(p, X, 2 * X)), rel=1e-5)
    p_last, h_last = jn.fit(net, params, X, 2 * X, steps=300, patience=4, restore_best=False,
                            **kw)
    assert h_last["steps_run"] == h["steps_run"] and _max_rel(p_last, p) > 1e-3


def test_validation_includes_the_last_step_and_schedule_is_recorded(toy):
    net, params, X, Y = toy
    sched = optax.exponential_decay(0.5, transition_steps=10, decay_rate=0.5)
    p, h = jn.fit(net, params, X, Y, steps=30, learning_rate=sched, val_every=7,
                  validation=(X[:, :10], Y[:, :10]), progress=False)
    np.testing.assert_array_equal(h["val_step"], [0, 7, 14, 21, 28, 30])
    assert h["val_cost"][-1] == pytest.approx(float(net.cost(p, X[:, :10], Y[:, :10])),
                                              rel=1e-5)
    np.testing.assert_allclose(h["learning_rate"], 0.5 * 0.5 ** (np.arange(30) / 10),
                               rtol=1e-6)
