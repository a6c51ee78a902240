"""Several processes on JAX's multi-controller runtime, on this machine (127.0.0.1, CPU, Gloo).

One run of three processes proves it all: a pair (2 processes × 2 CPU devices) and a reference
(1 process × 4 devices) execute the same script — `jaxnet train` through `cli.main`, then `fit`
of an MLP (global and per-process data), the digits CNN and a character LSTM (per-process data),
all with minibatches — and the pair must match the reference to float32 round-off, agree with
each other exactly, and write each file once.  Then process 1 of the pair kills itself in the
middle of a `fit`, and process 0 must exit with an error within the heartbeat timeout.
Every process runs under a hard timeout and is killed when it runs out.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxnet as jn

HEARTBEAT = 10  # s: process 0 must notice the killed process 1 within about this
LIMIT = int(os.environ.get("JAXNET_TEST_DIST_LIMIT", 420))  # s: hard timeout per process

WORKER = r"""
import json, os, signal, sys, time
import jax
import numpy as np
import jaxnet as jn
from jaxnet import cli

n_proc, pid, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
HEARTBEAT = int(sys.argv[5])
join = ["--num-processes", "1"] if n_proc == 1 else [
    "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n_proc),
    "--process-id", str(pid), "--heartbeat-timeout", str(HEARTBEAT)]
rc = cli.main(["train", "--dataset", "xor", "--hidden-sizes", "4", "--steps", "5",
               "--batch-size", "16", "--optimizer", "sgd", "--learning-rate", "0.1",
               "--no-gradcheck", "--quiet", "--out", f"{out}/cli", *join])
assert rc == 0, rc
print("CPU", time.process_time(), flush=True)
assert jax.process_count() == n_proc and jax.device_count() == 4

mesh = jn.data_mesh()
res = {}
for m_local in (3, 2 + 2 * pid):  # not a multiple of the local devices; not the same everywhere
    try:
        jn.data.global_batch(mesh, np.zeros((2, m_local)), np.zeros((1, m_local)))
        assert n_proc == 1 and m_local == 2, m_local
    except ValueError as err:
        assert "do not split over its" in str(err) or "the same number" in str(err), err
        print("ERROR OK:", err, flush=True)


def run(name, net, X, Y, modes, **kw):
    m = X.shape[-1]
    lo, hi = pid * m // n_proc, (pid + 1) * m // n_proc
    p0 = net.init(jax.random.key(1))
    for how in modes:
        Xg, Yg = (X, Y) if how == "global" else \
            jn.data.global_batch(mesh, X[..., lo:hi], Y[..., lo:hi])
        p, h = jn.fit(net, p0, Xg, Yg, mesh=mesh, progress=False, key=jax.random.key(2),
                      optimizer="adam", learning_rate=0.01, **kw)
        for i, leaf in enumerate(jax.tree.leaves(p)):
            res[f"{name}.{how}.p{i}"] = np.asarray(leaf)
        res[f"{name}.{how}.cost"] = h["cost"]
        res[f"{name}.{how}.final"] = h["final_cost"]
        if name == "mlp":  # the metrics take the same (global) arrays
            res[f"{name}.{how}.accuracy"] = jn.accuracy(net, p, Xg, Yg)
    return p, h


X, Y = jn.data.blobs(key=jax.random.key(0), m=64, n_x=2)
mlp = jn.MLP((2, 8, Y.shape[0]))
p, h = run("mlp", mlp, np.asarray(X), np.asarray(Y), ("global", "local"), steps=12,
           batch_size=16)
jn.save(f"{out}/mlp.npz", mlp, p, history={"cost": h["cost"]})
_, p_loaded = jn.load(f"{out}/mlp.npz")  # every process: the barrier let the write finish
assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p_loaded), jax.tree.leaves(p)))
# a restarted job: periodic checkpoints written once (process 0), every process resumes from
# the newest; the resumed 6 + 6 steps equal the uninterrupted 12 above ("mlp.global")
opts = dict(mesh=mesh, progress=False, key=jax.random.key(2), optimizer="adam",
            learning_rate=0.01, batch_size=16)
jn.fit(mlp, mlp.init(jax.random.key(1)), X, Y, steps=6, checkpoint=f"{out}/ckpt/mlp.npz",
       checkpoint_every=3, keep=1, **opts)
p_res, _ = jn.fit(mlp, None, X, Y, steps=12, resume=f"{out}/ckpt/mlp.npz", **opts)
for i, leaf in enumerate(jax.tree.leaves(p_res)):
    res[f"resumed.p{i}"] = np.asarray(leaf)
ds = jn.data.load("digits", key=jax.random.key(0))
run("cnn", jn.models.digits_cnn(widths=(2, 2)),
    np.asarray(ds.X_train[:, :32]).reshape(1, 8, 8, 32), np.asarray(ds.Y_train[:, :32]),
    ("local",), steps=4, batch_size=8)
ids = np.asarray(jax.random.randint(jax.random.key(3), (6, 32), 0, 5), np.int32)
run("lstm", jn.models.char_lstm(5, 5, hidden=4, d=3), ids[:5], ids[1:], ("local",), steps=4,
    batch_size=8)
np.savez(f"{out}/res{n_proc}_{pid}.npz", **res)
print("CPU", time.process_time(), flush=True)

if n_proc == 2:  # a fault: process 1 dies in the middle of training
    jn.distributed.barrier("kill")
    print("KILL-PHASE", flush=True)
    if pid == 1:
        time.sleep(2)
        os.kill(os.getpid(), signal.SIGKILL)
    jn.fit(mlp, p, X, Y, mesh=mesh, steps=10**8, learning_rate=0.01, progress=False,
           chunk=500)
    print("process 0 was not stopped", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n_proc, pid, port, out, devices, log):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + f" --xla_force_host_platform_device_count={devices}")
    with open(log, "w") as f:  # a file, not a pipe: a full pipe would block the process
        return subprocess.Popen([sys.executable, "-c", WORKER, str(n_proc), str(pid), str(port),
                                 str(out), str(HEARTBEAT)], env=env, stdout=f,
                                stderr=subprocess.STDOUT, text=True)


def finish(procs, logs, deadline):
    """Poll every process until it exits or `deadline` passes (then kill them all).

    Returns one `(exit status, output, exit time)` per process."""
    ended = [None] * len(procs)
    while None in ended and time.time() < deadline:
        for k, p in enumerate(procs):
            if ended[k] is None and p.poll() is not None:
                ended[k] = time.time()
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    outputs = [log.read_text() for log in logs]
    if None in ended:
        pytest.fail(f"a process ran past {LIMIT} s and was killed:\n"
                    + "\n".join(o[-2000:] for o in outputs))
    return [(p.returncode, o, t) for p, o, t in zip(procs, outputs, ended)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pair, ref = tmp_path_factory.mktemp("pair"), tmp_path_factory.mktemp("ref")
    logs = tmp_path_factory.mktemp("logs")  # each process's output, to read after a failure
    files = [logs / f"{name}.txt" for name in ("pair0", "pair1", "ref")]
    port = free_port()
    procs = [launch(2, 0, port, pair, 2, files[0]), launch(2, 1, port, pair, 2, files[1]),
             launch(1, 0, 0, ref, 4, files[2])]
    return pair, ref, finish(procs, files, time.time() + LIMIT)


def load(path):
    with np.load(path) as f:
        return dict(f)


def test_two_processes_equal_one_process_and_write_once(runs):
    pair, ref, results = runs
    rc_ref, out_ref, _ = results[2]
    assert rc_ref == 0, out_ref[-3000:]
    for _, output, _ in results[:2]:
        assert "KILL-PHASE" in output, output[-3000:]  # the equality part completed
        assert "do not split over its 2 devices" in output
        assert "every process must hold the same number of examples; they hold [2, 4]" in output
    assert "do not split over its 4 devices" in out_ref
    r0, r1, want = (load(pair / "res2_0.npz"), load(pair / "res2_1.npz"),
                    load(ref / "res1_0.npz"))
    assert set(r0) == set(want) and len(want) > 20
    for k in want:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)  # the same on every process
        np.testing.assert_allclose(r0[k], want[k], rtol=2e-5, atol=2e-6, err_msg=k)
    # the CLI: one model.npz, cost.png, metrics.json, no temporary files; same parameters
    assert sorted(os.listdir(pair / "cli")) == ["cost.png", "metrics.json", "model.npz"]
    assert sorted(os.listdir(pair)) == ["ckpt", "cli", "mlp.npz", "res2_0.npz", "res2_1.npz"]
    assert sorted(os.listdir(pair / "ckpt")) == ["mlp.npz", "mlp.step-00000006.npz"]
    for i in range(4):  # resumed across the two processes = never stopped
        np.testing.assert_allclose(r0[f"resumed.p{i}"], r0[f"mlp.global.p{i}"], rtol=2e-5,
                                   atol=2e-6)
    _, p2 = jn.load(pair / "cli" / "model.npz")
    _, p1 = jn.load(ref / "cli" / "model.npz")
    for a, b in zip(p2, p1):
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=2e-5, atol=2e-6)
    metrics = json.loads((pair / "cli" / "metrics.json").read_text())
    assert metrics["steps_run"] == 5
    assert results[0][1].count("wrote ") == 1 and "wrote " not in results[1][1]


def test_a_killed_process_stops_the_other(runs):
    _, _, results = runs
    (rc0, out0, t0), (rc1, _, t1) = results[:2]
    assert rc1 == -signal.SIGKILL
    assert rc0 != 0 and "process 0 was not stopped" not in out0
    assert "heartbeat" in out0 or "Terminating process" in out0, out0[-3000:]
    # process 0 ended within the heartbeat timeout plus slack (it would otherwise hang)
    assert 0 < t0 - t1 < HEARTBEAT + 60, t0 - t1


def test_bad_settings_and_sizes(capsys, monkeypatch):
    for name in jn.distributed.ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="missing: process_id"):
        jn.distributed.settings("127.0.0.1:1234", 2, None)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        jn.distributed.settings("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="HOST:PORT"):
        jn.distributed.settings("127.0.0.1", 2, 0)
    assert jn.distributed.settings() is None
    from jaxnet import cli
    assert cli.main(["train", "--coordinator", "127.0.0.1:1234", "--process-id", "0"]) == 2
    assert "missing: num_processes" in capsys.readouterr().err
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer"):
        jn.distributed.settings()
    mesh = jn.data_mesh()
    n = mesh.size
    with pytest.raises(ValueError, match="do not split"):
        jn.data.global_batch(mesh, np.zeros((2, 0)), np.zeros((1, 0)))
    with pytest.raises(ValueError, match="Y_local has 3"):
        jn.data.global_batch(mesh, np.zeros((2, 4)), np.zeros((1, 3)))
    X, Y = jn.data.global_batch(mesh, np.ones((2, 4 * n)), np.zeros((1, 4 * n)))
    assert X.shape == (2, 4 * n) and Y.shape == (1, 4 * n)
