"""The checker's memory: the batch of loss evaluations follows from the model's memory and the
budget, never changes the verdict, and an out-of-memory is a clear error (one line from the CLI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet.gradcheck as gc
from jaxnet.cli import main, memory_size
from jaxnet.gradcheck import CheckMemoryError, check_grad, taylor_test


def loss(params, X):
    """J = Σ tanh(W X + b)² / m: its gradient worked by hand in `grad` below."""
    Z = params["W"] @ X + params["b"]
    return jnp.sum(jnp.tanh(Z) ** 2) / X.shape[1]


def grad(params, X):
    A = jnp.tanh(params["W"] @ X + params["b"])
    dZ = 2 * A * (1 - A ** 2) / X.shape[1]
    return {"W": dZ @ X.T, "b": jnp.sum(dZ, axis=1, keepdims=True)}


def problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((n, n)) / np.sqrt(n), "b": rng.standard_normal((n, 1))}
    return params, rng.standard_normal((n, m))


def chunk_of(params, X, want=512, budget=gc.MEMORY_BUDGET):
    with jax.enable_x64(True):
        ctx, theta, _ = gc._prepare(loss, grad, params, (X,))
        return ctx.choose_chunk(theta, want, budget)


def test_a_bigger_model_gets_a_smaller_batch_within_the_budget():
    small = chunk_of(*problem(4, 8), budget=2**20)
    big = chunk_of(*problem(16, 4096), budget=2**20)  # one evaluation: ~0.5 MiB of Z and A
    assert small == 512 and big < small and big >= 1
    for c in (small, big):
        assert c & (c - 1) == 0  # a power of two: one compilation per check
    # the compiled batch XLA reports fits the budget (one evaluation is the least it can do)
    params, X = problem(16, 4096)
    with jax.enable_x64(True):
        ctx, theta, _ = gc._prepare(loss, grad, params, (X,))
        ctx.chunk = big
        Vp = jnp.zeros((gc.TAYLOR_DIRECTIONS + 1, len(theta)))
        used = gc._memory(gc._values.lower(*ctx._values_args(theta, Vp, np.zeros(0, np.int64),
                                                             np.zeros(0))).compile())
    assert used is None or used <= 2**20 or big == 1


def test_a_tiny_budget_gives_one_evaluation_at_a_time_and_the_same_report(monkeypatch):
    params, X = problem(3, 5)
    chosen = []
    choose = gc._choose_chunk
    monkeypatch.setattr(gc, "_choose_chunk", lambda *a: chosen.append(choose(*a)) or chosen[-1])
    wide = check_grad(loss, grad, params, X, key=jax.random.key(1))
    narrow = check_grad(loss, grad, params, X, key=jax.random.key(1), memory_budget=1)
    assert chosen[0] >= 16 and chosen[1] == 1
    assert wide.ok and narrow.ok
    for a, b in zip(wide.leaves, narrow.leaves):
        assert a.name == b.name and a.fd_entries == b.fd_entries
        assert a.manual_vs_autodiff == b.manual_vs_autodiff  # no evaluation involved
        assert abs(a.autodiff_vs_fd - b.autodiff_vs_fd) <= 1e-9  # the same differences
    assert abs(wide.taylor.order - narrow.taylor.order) <= 1e-6
    with pytest.raises(ValueError, match="memory_budget must be a positive"):
        check_grad(loss, grad, params, X, memory_budget=0)


def test_without_xla_memory_analysis_the_traced_program_bounds_an_evaluation(monkeypatch):
    params, X = problem(8, 256)
    with jax.enable_x64(True):
        ctx, theta, _ = gc._prepare(loss, grad, params, (X,))
        traced = gc._traced_bytes(lambda t, d: gc._loss(loss, ctx.spec, ctx.static, t, d),
                                  theta, ctx.dyn)
        xla = gc._memory(jax.jit(lambda t, d: gc._loss(loss, ctx.spec, ctx.static, t, d))
                         .lower(theta, ctx.dyn).compile())
    assert traced >= 2 * 8 * 256 * 8  # at least Z and tanh(Z), float64
    assert xla is None or traced >= xla
    monkeypatch.setattr(gc, "_memory", lambda lowered: None)  # a backend with no analysis
    budget = 4 * (traced + 8 * len(theta))
    assert chunk_of(params, X, budget=budget) == 4
    report = check_grad(loss, grad, params, X, entries=3, memory_budget=budget)
    assert report.ok


OOM = "RESOURCE_EXHAUSTED: Out of memory allocating 25428185088 bytes."


def raise_oom(*args, **kwargs):
    raise jax.errors.JaxRuntimeError(OOM)


def test_out_of_memory_is_a_memory_error_with_advice(monkeypatch):
    params, X = problem(3, 5)
    monkeypatch.setattr(gc._Ctx, "values", raise_oom)
    for run in (lambda: check_grad(loss, grad, params, X),
                lambda: taylor_test(loss, grad, params, X, memory_budget=2**20)):
        with pytest.raises(CheckMemoryError) as info:
            run()
        assert isinstance(info.value, MemoryError)
        text = str(info.value)
        assert OOM in text and "examples" in text and "entries" in text and "memory_budget" in text

    def other(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(gc._Ctx, "values", other)
    with pytest.raises(jax.errors.JaxRuntimeError, match="something else"):
        check_grad(loss, grad, params, X)


def test_cli_out_of_memory_is_one_line_naming_the_flags(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gc._Ctx, "choose_chunk", raise_oom)  # before any compilation: quick
    argv = ["--dataset", "xor", "--hidden-sizes", "3", "--hidden", "tanh"]
    assert main(["gradcheck", *argv, "--examples", "8", "--check-memory", "1MiB"]) == 2
    assert main(["train", *argv, "--quiet", "--out", str(tmp_path / "never"), "--examples", "4",
                 "--entries", "2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err)
    for line in err:
        assert line.startswith("jaxnet: error: the gradient check ran out of memory (" + OOM)
        assert "--examples" in line and "--entries" in line and "--check-memory" in line
    assert "(now 8)" in err[0] and "--check-memory (now 1,048,576 bytes)" in err[0]
    assert "--entries (now 2)" in err[1]
    assert not (tmp_path / "never").exists()


def test_memory_sizes():
    assert memory_size("2GiB") == 2 * 2**30 and memory_size("512 MiB") == 512 * 2**20
    assert memory_size("1.5GB") == 1_500_000_000 and memory_size("800mb") == 800_000_000
    assert memory_size("4096") == 4096 and memory_size("1kb") == 1000
    for bad in ("lots", "-1GiB", "0", "GiB", "nan", "1TB"):
        with pytest.raises(Exception, match="expected a memory size"):
            memory_size(bad)
    assert main(["gradcheck", "--check-memory", "lots"]) == 2
