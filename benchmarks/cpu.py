"""CPU benchmark: `jaxnet.fit` against numpy, PyTorch eager and plain JAX, in one process.

Every implementation trains the same network from the same initial parameters on the same data
(float32, full-batch gradient descent, fixed learning rate).  The script first checks that all of
them reach the same final cost (relative 1e-3) and fails loudly otherwise; then it times them
interleaved (round-robin, ``--repeats`` rounds) and reports medians of steps/s and their ratios,
with compile time reported separately.  It also measures the float32 matmul peak of this
machine (numpy, torch, ``jax.jit(jnp.dot)``) and the fraction of it that workload L reaches.

    python benchmarks/cpu.py                      # T, M, L; 5 rounds; benchmarks/results/cpu.{md,json}
    python benchmarks/cpu.py --tiny --out /tmp/b  # seconds: the CI smoke test

PyTorch is optional (the ``bench`` extra); without it the torch rows are skipped, with a note.
If ``OPENBLAS_CORETYPE`` is set, numpy may run a slower BLAS kernel than the CPU supports: the
report records which kernel ran (via threadpoolctl, when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnet as jn
from jaxnet import training

try:
    import torch
except ImportError:  # the optional `bench` group
    torch = None
try:
    import threadpoolctl
except ImportError:  # then numpy runs on its BLAS's default threads
    threadpoolctl = None

REL_TOL = 1e-3  # final costs must agree this closely before anything is timed
# Pause before each timed run: BLAS and OpenMP worker threads of the library that ran last
# keep spinning for a while after their work, and on 2 cores they would slow the next one.
SETTLE_S = [0.2]  # 0 with --tiny
NOISE_FLOOR = 0.02  # smallest relative noise allowed for "no slower than" targets


@dataclass(frozen=True)
class Workload:
    """One network and its training run: `sizes`, ReLU hidden layers, `output`, `m`, `steps`."""

    name: str
    sizes: tuple[int, ...]
    output: str
    m: int
    steps: int
    learning_rate: float

    @property
    def n_params(self) -> int:
        return sum(n * (p + 1) for p, n in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def flops_per_step(self) -> int:
        """The usual 6·parameters·m: 2 for the forward pass, 4 for the backward pass."""
        return 6 * self.n_params * self.m

    @property
    def computed_flops_per_step(self) -> int:
        """6·parameters·m less the product `W^[1]ᵀ dZ^[1]` (`dX`), which nobody computes."""
        return self.flops_per_step - 2 * self.sizes[0] * self.sizes[1] * self.m


WORKLOADS = {
    "T": Workload("T", (2, 2, 1), "sigmoid", 256, 5000, 0.5),
    "M": Workload("M", (64, 128, 128, 1), "sigmoid", 1024, 1000, 0.1),
    "L": Workload("L", (784, 512, 512, 10), "softmax", 512, 200, 0.1),
}
TINY = {"m": 32, "steps": 10}  # same architectures, a few steps on a few examples


@dataclass
class Problem:
    """A workload made concrete: the network, initial parameters and data (jax and numpy)."""

    work: Workload
    net: jn.MLP
    params: list
    X: jax.Array
    Y: jax.Array

    def numpy_params(self):
        return [{"W": np.array(p["W"]), "b": np.array(p["b"])} for p in self.params]


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def make_data(n_x: int, n_y: int, m: int, softmax: bool):
    """X ~ N(0, 1) `(n_x, m)`; labels `(n_y, m)` from a fixed random linear rule (a teacher)."""
    X = jax.random.normal(jax.random.key(1), (n_x, m), jnp.float32)
    scores = jax.random.normal(jax.random.key(2), (n_y, n_x), jnp.float32) @ X
    if softmax:
        return X, jax.nn.one_hot(jnp.argmax(scores, axis=0), n_y, axis=0, dtype=jnp.float32)
    return X, (scores > 0).astype(jnp.float32)


def make_problem(work: Workload) -> Problem:
    """Initial parameters from `net.init(key(0))` (jitted: one compile instead of one per op)."""
    net = jn.MLP(sizes=work.sizes, hidden="relu", output=work.output)
    params = jax.jit(net.init)(jax.random.key(0))
    X, Y = make_data(work.sizes[0], work.sizes[-1], work.m, work.output == "softmax")
    return Problem(work, net, params, X, Y)


# --- the implementations: each returns `(run, compile_s)`; run() trains and returns final J ---
def jaxnet_fit(pb: Problem, gradients: str):
    """`jaxnet.fit` as a user calls it; its compile time is measured from the first call."""
    w = pb.work

    def run():
        _, history = jn.fit(pb.net, pb.params, pb.X, pb.Y, steps=w.steps,
                            learning_rate=w.learning_rate, gradients=gradients, progress=False)
        return history["final_cost"]

    return run, None


def numpy_loop(pb: Problem):
    """The document's formulas in plain numpy: column layout, full batch, J recorded each step."""
    w, init = pb.work, pb.numpy_params()
    X, Y = np.asarray(pb.X), np.asarray(pb.Y)
    m, L = X.shape[1], len(init)
    softmax = w.output == "softmax"

    def forward(params):
        A, cache = X, []
        for l, p in enumerate(params):
            Z = p["W"] @ A + p["b"]
            cache.append((A, Z))
            if l < L - 1:
                A = np.maximum(Z, 0)
            elif softmax:
                E = np.exp(Z - Z.max(axis=0, keepdims=True))
                A = E / E.sum(axis=0, keepdims=True)
            else:
                A = 0.5 * (1 + np.tanh(0.5 * Z))  # σ(Z) without exp overflow
        return A, cache

    def cost(Z_L):
        # From the logits, as jaxnet does: finite for any finite Z.
        if softmax:
            shifted = Z_L - Z_L.max(axis=0, keepdims=True)
            log_a = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
            return float(-(Y * log_a).sum() / m)
        return float((np.logaddexp(0, Z_L) - Y * Z_L).sum() / m)

    def train(steps):
        params = [{k: v.copy() for k, v in p.items()} for p in init]
        history = []
        for _ in range(steps):
            A_L, cache = forward(params)
            history.append(cost(cache[-1][1]))
            dZ = A_L - Y  # sigmoid + BCE and softmax + CCE
            for l in reversed(range(L)):
                A_prev, _ = cache[l]
                dW = (dZ @ A_prev.T) / m
                db = dZ.sum(axis=1, keepdims=True) / m
                if l > 0:
                    dZ = (params[l]["W"].T @ dZ) * (cache[l - 1][1] > 0)
                params[l]["W"] -= w.learning_rate * dW
                params[l]["b"] -= w.learning_rate * db
        return cost(forward(params)[1][-1][1])

    if threadpoolctl is None:
        return lambda: train(w.steps), None
    n = THREADS.setdefault("numpy loop", {})[w.name] = _fastest_threads(
        _numpy_threads, lambda: train(max(1, min(w.steps, 100))))
    return lambda: _with_threads(_numpy_threads, n, lambda: train(w.steps)), None


def torch_eager(pb: Problem):
    """PyTorch eager with autograd and `torch.optim.SGD`, from the same initial parameters.

    Runs on as many threads as there are cores, unless one thread is faster for this workload
    (tiny tensors on a loaded 2-core machine: each parallel region then waits for a descheduled
    thread); the probe picks the stronger baseline and the report says which it used.
    """
    w = pb.work
    init = [torch.from_numpy(a) for p in pb.numpy_params() for a in (p["W"], p["b"])]
    X, Y = torch.from_numpy(np.array(pb.X)), torch.from_numpy(np.array(pb.Y))
    m = X.shape[1]

    def cost(params):
        A, L = X, len(params) // 2
        for l in range(L):
            Z = params[2 * l] @ A + params[2 * l + 1]
            if l < L - 1:
                A = torch.relu(Z)
        if w.output == "softmax":
            return -(Y * torch.log_softmax(Z, dim=0)).sum() / m
        return torch.nn.functional.binary_cross_entropy_with_logits(Z, Y, reduction="sum") / m

    def train(steps):
        params = [t.clone().requires_grad_(True) for t in init]
        opt = torch.optim.SGD(params, lr=w.learning_rate)
        history = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            J = cost(params)
            J.backward()
            opt.step()
            history.append(J.detach())
        with torch.no_grad():
            return float(cost(params))

    n = THREADS.setdefault("torch eager", {})[w.name] = _fastest_threads(
        _torch_threads, lambda: train(max(1, min(w.steps, 100))))
    return lambda: _with_threads(_torch_threads, n, lambda: train(w.steps)), None


# --- thread counts of the baselines ---------------------------------------------------------
# On a loaded 2-core machine a library that splits each call over both cores waits for
# whichever thread the OS has descheduled; one thread can then be many times faster.  The
# baselines run with whichever of 1 and all cores is faster, so that the ratios are not won
# against a handicapped baseline; the report says which count each used.
THREADS: dict[str, dict[str, int]] = {}  # implementation -> workload -> thread count


def _torch_threads(n: int):
    torch.set_num_threads(n)


def _numpy_threads(n: int):
    """Set numpy's BLAS threads (only called when threadpoolctl is installed)."""
    threadpoolctl.ThreadpoolController().select(user_api="blas").limit(limits=n)


def _with_threads(set_threads, n: int, fn):
    set_threads(n)
    try:
        return fn()
    finally:
        set_threads(os.cpu_count())


PROBE_TRIES = [3]  # alternating tries per thread count; 1 with --tiny


def _fastest_threads(set_threads, probe) -> int:
    """1 or all cores, whichever runs `probe` faster (best of alternating tries each)."""
    counts = sorted({1, os.cpu_count()})
    best = {n: float("inf") for n in counts}
    for _ in range(PROBE_TRIES[0]):
        for n in counts:
            t0 = time.perf_counter()
            _with_threads(set_threads, n, probe)
            best[n] = min(best[n], time.perf_counter() - t0)
    return min(best, key=best.get)


def plain_jax(pb: Problem):
    """`lax.scan` over steps of `params − α·jax.grad(J)`, one jit, compiled ahead of the timing."""
    w = pb.work
    softmax = w.output == "softmax"

    def cost(params, X, Y):
        A = X
        for p in params[:-1]:
            A = jax.nn.relu(p["W"] @ A + p["b"])
        Z = params[-1]["W"] @ A + params[-1]["b"]
        if softmax:
            return -jnp.sum(Y * jax.nn.log_softmax(Z, axis=0)) / X.shape[1]
        return jnp.sum(jax.nn.softplus(Z) - Y * Z) / X.shape[1]

    def step(params, _):
        grads = jax.grad(cost)(params, pb.X, pb.Y)
        return jax.tree.map(lambda p, g: p - w.learning_rate * g, params, grads), None

    @jax.jit
    def train(params, X, Y):
        del X, Y  # passed so that they are arguments, not constants folded into the program
        return jax.lax.scan(step, params, None, length=w.steps)[0]

    t0 = time.perf_counter()
    compiled = train.lower(pb.params, pb.X, pb.Y).compile()
    cost_jit = jax.jit(cost)
    jax.block_until_ready(cost_jit(pb.params, pb.X, pb.Y))
    compile_s = time.perf_counter() - t0

    def run():
        return float(cost_jit(compiled(pb.params, pb.X, pb.Y), pb.X, pb.Y))

    return run, compile_s


IMPLEMENTATIONS: dict[str, Callable] = {
    "jaxnet.fit manual": lambda pb: jaxnet_fit(pb, "manual"),
    "jaxnet.fit autodiff": lambda pb: jaxnet_fit(pb, "autodiff"),
    "numpy loop": numpy_loop,
    "torch eager": torch_eager,
    "plain JAX scan+grad": plain_jax,
}
JAXNET = ("jaxnet.fit manual", "jaxnet.fit autodiff")


# --- counting compiles ---------------------------------------------------------------------
class CompileCounter:
    """Counts, over a `with` block, fit's loop traces and XLA backend compiles of any jit."""

    backend_compiles = 0

    @classmethod
    def install(cls):
        def listener(event, duration, **kwargs):
            if event == "/jax/core/compile/backend_compile_duration":
                cls.backend_compiles += 1

        jax.monitoring.register_event_duration_secs_listener(listener)

    def __enter__(self):
        self._traces, self._compiles = training.TRACE_COUNT[0], CompileCounter.backend_compiles
        return self

    def __exit__(self, *exc):
        self.traces = training.TRACE_COUNT[0] - self._traces
        self.compiles = CompileCounter.backend_compiles - self._compiles


# --- measuring -----------------------------------------------------------------------------
def check_costs(name: str, costs: dict[str, float]):
    """Fail loudly unless every final cost is within REL_TOL of jaxnet's hand-written one."""
    ref = costs["jaxnet.fit manual"]
    bad = {k: c for k, c in costs.items() if not abs(c - ref) <= REL_TOL * abs(ref)}
    if bad:
        lines = "\n".join(f"  {k:22s} {c:.8g}" for k, c in costs.items())
        raise SystemExit(f"workload {name}: final costs disagree (rel tol {REL_TOL}):\n{lines}")


def bench_workload(work: Workload, impls: dict[str, Callable], repeats: int) -> dict:
    """First calls (compile + the cost check), then `repeats` interleaved timed rounds."""
    pb = make_problem(work)
    runners, first, costs, compile_s = {}, {}, {}, {}
    for name, make in impls.items():
        run, compile_s[name] = make(pb)
        t0 = time.perf_counter()
        costs[name] = run()
        first[name] = time.perf_counter() - t0
        runners[name] = run
    print("  final costs: " + ", ".join(f"{k} {c:.6g}" for k, c in costs.items()))
    check_costs(work.name, costs)

    seconds = {name: [] for name in runners}
    compiles = {name: [] for name in runners}
    for _ in range(repeats):  # round-robin, so drifts in machine load hit all alike
        for name, run in runners.items():
            time.sleep(SETTLE_S[0])
            with CompileCounter() as cc:
                t0 = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - t0)
            compiles[name].append({"traces": cc.traces, "backend_compiles": cc.compiles})

    rows = {}
    for name in runners:
        med = statistics.median(seconds[name])
        q = np.percentile(seconds[name], [25, 75])
        rows[name] = {
            "final_cost": costs[name],
            "median_s": med,
            "steps_per_s": work.steps / med,
            "rel_iqr": float((q[1] - q[0]) / med),
            "gflops": work.flops_per_step * work.steps / med / 1e9,
            "compile_s": compile_s[name] if compile_s[name] is not None else
            max(first[name] - med, 0.0),
            "first_call_s": first[name],
            "seconds": seconds[name],
            "compiles_in_timed_calls": compiles[name],
        }
        print(f"  {name:22s} {rows[name]['steps_per_s']:12.1f} steps/s  "
              f"(±{100 * rows[name]['rel_iqr']:.1f}% IQR, compile {rows[name]['compile_s']:.2f} s)")
    for name in rows:
        rows[name]["threads"] = THREADS.get(name, {}).get(work.name)
    return {"workload": asdict(work), "n_params": work.n_params,
            "flops_per_step": work.flops_per_step,
            "computed_flops_per_step": work.computed_flops_per_step, "results": rows}


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (and compile, for jax)
    time.sleep(SETTLE_S[0])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int, k: int, p: int, transpose_b: bool, repeats: int) -> dict[str, float]:
    """GFLOP/s of an `(n, k) @ (k, p)` float32 product in numpy, torch and `jax.jit(jnp.dot)`.

    With `transpose_b` the right operand is stored as `(p, k)` and used transposed, the layout
    of `dW = dZ · A_prevᵀ`.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal((p, k) if transpose_b else (k, p), dtype=np.float32)
    flops = 2 * n * k * p
    out = {}
    out["numpy"] = flops / _median_seconds(lambda: a @ (b.T if transpose_b else b), repeats)
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch"] = flops / _median_seconds(lambda: ta @ (tb.T if transpose_b else tb), repeats)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(lambda x, y: jnp.dot(x, y.T if transpose_b else y))
    out["jax.jit(jnp.dot)"] = flops / _median_seconds(
        lambda: dot(ja, jb).block_until_ready(), repeats)
    return {lib: g / 1e9 for lib, g in out.items()}


def matmul_peaks(tiny: bool, repeats: int) -> dict:
    """The machine's float32 matmul peak (the best library at a large square size), and the
    same libraries at workload L's own shapes."""
    size = 256 if tiny else 2048
    L = WORKLOADS["L"]
    m = TINY["m"] if tiny else L.m
    n0, n1 = L.sizes[0], L.sizes[1]
    shapes = {
        f"{size}x{size}x{size}": (size, size, size, False),
        f"L W1·X ({n1}x{n0})·({n0}x{m})": (n1, n0, m, False),
        f"L dZ1·Xᵀ ({n1}x{m})·({n0}x{m})ᵀ": (n1, m, n0, True),
        f"L W2·A1 ({n1}x{n1})·({n1}x{m})": (n1, n1, m, False),
    }
    table = {name: matmul_gflops(*dims, repeats=repeats) for name, dims in shapes.items()}
    square = table[f"{size}x{size}x{size}"]
    best = max(square, key=square.get)
    return {"gflops": table, "peak_gflops": square[best], "peak_library": best,
            "peak_shape": f"{size}x{size}x{size}"}


# --- the report ----------------------------------------------------------------------------
def jaxnet_steps(res: dict) -> tuple[float, str]:
    """The slower of fit's two gradient modes: a target holds whichever the user picks."""
    name = min(JAXNET, key=lambda k: res[k]["steps_per_s"])
    return res[name]["steps_per_s"], name


def targets(results: dict, peaks: dict) -> list[dict]:
    """Each target of the issue: the measured ratio and whether it is met."""
    out = []

    def add(work, what, ratio, goal, note=""):
        out.append({"workload": work, "target": what, "ratio": ratio, "goal": goal,
                    "met": bool(ratio is not None and ratio >= goal), "note": note})

    goals = {"T": {"numpy loop": 12, "torch eager": 30, "plain JAX scan+grad": 1.2},
             "M": {"numpy loop": 2, "torch eager": 1.3},
             "L": {"torch eager": 1.0}}
    for work, res in results.items():
        res = res["results"]
        fit_sps, which = jaxnet_steps(res)
        for base, goal in goals.get(work, {}).items():
            ratio = fit_sps / res[base]["steps_per_s"] if base in res else None
            add(work, f"jaxnet.fit ≥ {goal}× {base}", ratio, goal,
                f"{which}" if base in res else f"{base} not run")
        if work == "L" and peaks:
            frac = fit_sps * results[work]["flops_per_step"] / 1e9 / peaks["peak_gflops"]
            computed = frac * results[work]["computed_flops_per_step"] \
                / results[work]["flops_per_step"]
            add(work, "jaxnet.fit ≥ 90% of matmul peak", frac, 0.9,
                f"{which}; peak {peaks['peak_gflops']:.0f} GFLOP/s ({peaks['peak_library']}); "
                f"{computed:.0%} counting only the products computed (no dX)")
        man, auto = res["jaxnet.fit manual"], res["jaxnet.fit autodiff"]
        time_ratio = man["median_s"] / auto["median_s"]
        noise = max(NOISE_FLOOR, man["rel_iqr"], auto["rel_iqr"])
        out.append({"workload": work, "target": "manual time / autodiff time ≤ 1.0",
                    "ratio": time_ratio, "goal": 1.0, "met": time_ratio <= 1.0 + noise,
                    "note": f"within noise ±{100 * noise:.0f}%"})
        counts = [c for k in JAXNET for c in res[k]["compiles_in_timed_calls"]]
        traced = sum(c["traces"] for c in counts)
        compiled = sum(c["backend_compiles"] for c in counts)
        out.append({"workload": work, "target": "second fit call compiles nothing",
                    "ratio": None, "goal": None, "met": traced == 0 and compiled == 0,
                    "note": f"{traced} traces, {compiled} XLA compiles in {len(counts)} timed calls"})
    return out


def blas_info() -> list[dict]:
    if threadpoolctl is None:
        return [{"note": "threadpoolctl not installed: numpy's BLAS kernel unknown"}]
    return threadpoolctl.threadpool_info()


def environment(args) -> dict:
    return {
        "command": " ".join(["python benchmarks/cpu.py", *sys.argv[1:]]),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "jax": jax.__version__, "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "baseline_threads": THREADS,  # filled in as the workloads run
        "load_average_at_start": os.getloadavg(),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OPENBLAS_NUM_THREADS") if k in os.environ},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "blas": blas_info(),
        "repeats": args.repeats, "tiny": args.tiny,
    }


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def markdown(env: dict, results: dict, peaks: dict, tgts: list[dict]) -> str:
    """The report: targets, steps/s per implementation, matmul peaks, and how it was run."""
    names = [n for n in IMPLEMENTATIONS if any(n in r["results"] for r in results.values())]
    lines = [f"# CPU benchmark{' (tiny smoke run: numbers mean nothing)' if env['tiny'] else ''}",
             "", f"`{env['command']}` — {env['cpu_count']} CPUs, jax {env['jax']}, "
             f"numpy {env['numpy']}, torch {env['torch'] or 'not installed'}, "
             f"medians of {env['repeats']} interleaved runs.", "",
             "| workload | target | measured | met |", "|---|---|---|---|"]
    for t in tgts:
        spec = ".1%" if "peak" in t["target"] else ".2f"
        lines.append(f"| {t['workload']} | {t['target']} | {fmt(t['ratio'], spec)} "
                     f"({t['note']}) | {'met' if t['met'] else '**not met**'} |")
    lines += ["", "Median steps/s (relative IQR; compile s):", "",
              "| workload | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for work, r in results.items():
        cells = [f"{r['results'][n]['steps_per_s']:.1f} (±{100 * r['results'][n]['rel_iqr']:.0f}%; "
                 f"{r['results'][n]['compile_s']:.2f})" if n in r["results"] else "skipped"
                 for n in names]
        lines.append(f"| {work} | " + " | ".join(cells) + " |")
    if "L" in results:
        r = results["L"]["results"]
        lines += ["", "L achieved GFLOP/s (6·parameters·m per step): " + ", ".join(
            f"{n} {r[n]['gflops']:.0f}" for n in names if n in r)]
    if peaks:
        libs = list(next(iter(peaks["gflops"].values())))
        lines += ["", "float32 matmul GFLOP/s (median):", "",
                  "| shape | " + " | ".join(libs) + " |", "|---" * (len(libs) + 1) + "|"]
        for shape, g in peaks["gflops"].items():
            lines.append(f"| {shape} | " + " | ".join(f"{g[lib]:.0f}" for lib in libs) + " |")
        lines += ["", f"Peak: {peaks['peak_gflops']:.0f} GFLOP/s ({peaks['peak_library']}, "
                      f"{peaks['peak_shape']})."]
    kernels = [b.get("architecture") for b in env["blas"] if "architecture" in b]
    for impl, counts in env["baseline_threads"].items():
        lines += ["", f"{impl} threads (the faster of 1 and {env['cpu_count']}, per workload): "
                  + ", ".join(f"{k} {n}" for k, n in counts.items())]
    lines += ["", "Load average (1, 5, 15 min) at start {:.1f}, {:.1f}, {:.1f}; at end "
              "{:.1f}, {:.1f}, {:.1f}: other processes share these cores.".format(
                  *env["load_average_at_start"], *env["load_average_at_end"])]
    lines += ["", f"numpy BLAS kernel: {', '.join(kernels) or 'unknown'}; OPENBLAS env: "
                  f"{env['openblas_env'] or 'unset'}; XLA_FLAGS: {env['xla_flags'] or 'unset'}."]
    if torch is None:
        lines += ["", "PyTorch is not installed (`pip install -e .[bench]`): torch rows skipped."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="T,M,L", help="comma-separated subset of T,M,L")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds per implementation (default 5; 2 with --tiny)")
    p.add_argument("--tiny", action="store_true",
                   help=f"smoke test: {TINY['steps']} steps on m={TINY['m']}, small matmuls")
    p.add_argument("--out", default="benchmarks/results", help="folder for cpu.md and cpu.json")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.tiny else 5)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; valid are {list(WORKLOADS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
    CompileCounter.install()
    if args.tiny:
        PROBE_TRIES[0], SETTLE_S[0] = 1, 0.0
    env = environment(args)
    if env["openblas_env"]:
        print(f"note: {env['openblas_env']} is set; numpy may use a slower BLAS kernel")
    impls = dict(IMPLEMENTATIONS)
    if torch is None:
        print("note: PyTorch is not installed (the optional `bench` group): torch rows skipped")
        del impls["torch eager"]

    results = {}
    for name in args.workloads:
        work = WORKLOADS[name]
        if args.tiny:
            work = Workload(work.name, work.sizes, work.output, TINY["m"], TINY["steps"],
                            work.learning_rate)
        print(f"workload {name}: {work.sizes}, m={work.m}, {work.steps} steps")
        results[name] = bench_workload(work, impls, args.repeats)
    print("matmul peak ...")
    peaks = matmul_peaks(args.tiny, repeats=3 if args.tiny else 10)
    tgts = targets(results, peaks)
    env["load_average_at_end"] = os.getloadavg()

    report = markdown(env, results, peaks, tgts)
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cpu_tiny" if args.tiny else "cpu"  # a smoke run never overwrites real results
    (out / f"{stem}.md").write_text(report)
    (out / f"{stem}.json").write_text(json.dumps(
        {"environment": env, "workloads": results, "matmul": peaks, "targets": tgts},
        indent=1, default=str))
    print(f"wrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
