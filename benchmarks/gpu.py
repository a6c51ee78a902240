"""GPU benchmark: one training step of a wide network, as TFLOP/s and as a fraction of peak.

Times full-batch gradient-descent steps of a 4096 → 8192 → 8192 → 8192 → 1024 network (ReLU,
softmax, m = 8192) for

- plain JAX: `lax.scan` over `params − α·jax.grad(J)`, float32 and bfloat16 compute (bfloat16:
  the float32 parameters and `X` cast to bfloat16 for the layers, the loss from `Z^[L]` in
  float32, as mixed precision does);
- `jaxnet.fit(..., compute_dtype=jnp.bfloat16)`, when `fit` has that argument (the row is
  skipped, with a note, otherwise);

and a plain bfloat16 matmul measured in the same run.  FLOPs are the usual 6·parameters·m per
step.  Targets: jaxnet ≥ 0.97× the plain-JAX bfloat16 step and ≥ 70% of the device's dense
bfloat16 peak (its nominal figure where the device is known, else the measured matmul).

    python benchmarks/gpu.py            # the real sizes on a GPU (under 2 minutes)
    python benchmarks/gpu.py --small    # small sizes in seconds; the default without a GPU
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxnet as jn

# Nominal dense bfloat16 peaks (TFLOP/s, no sparsity), by a substring of `device_kind`.
DENSE_BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                   "A10G": 70.0, "TPU v6": 918.0, "TPU v5p": 459.0, "TPU v5 lite": 197.0,
                   "TPU v4": 275.0}
TARGET_VS_PLAIN = 0.97
TARGET_VS_PEAK = 0.70


@dataclass(frozen=True)
class Size:
    """The network, the batch, the steps per timed call and the learning rate."""

    sizes: tuple[int, ...]
    m: int
    steps: int
    matmul: int  # the square bfloat16 matmul measured alongside
    learning_rate: float = 0.01

    @property
    def flops_per_step(self) -> int:
        n_params = sum(n * (p + 1) for p, n in zip(self.sizes[:-1], self.sizes[1:]))
        return 6 * n_params * self.m


FULL = Size((4096, 8192, 8192, 8192, 1024), 8192, steps=20, matmul=8192)
SMALL = Size((64, 128, 128, 128, 16), 256, steps=5, matmul=256)


@partial(jax.jit, static_argnums=(0, 1, 2))
def make_data(n_x: int, n_y: int, m: int):
    """X ~ N(0, 1) `(n_x, m)` and one-hot labels `(n_y, m)` from a fixed random linear rule."""
    X = jax.random.normal(jax.random.key(1), (n_x, m), jnp.float32)
    scores = jax.random.normal(jax.random.key(2), (n_y, n_x), jnp.float32) @ X
    return X, jax.nn.one_hot(jnp.argmax(scores, axis=0), n_y, axis=0, dtype=jnp.float32)


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `fn()` (which must block until its result is ready)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_tflops(n: int, repeats: int, dtype=jnp.bfloat16, calls: int = 10) -> float:
    """TFLOP/s of an `(n, n) @ (n, n)` product: `calls` dispatches per timing, to hide launch."""
    a = jax.random.normal(jax.random.key(3), (n, n), dtype)
    b = jax.random.normal(jax.random.key(4), (n, n), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()

    def run():
        out = [dot(a, b) for _ in range(calls)]
        jax.block_until_ready(out)

    return 2 * n**3 * calls / median_seconds(run, repeats) / 1e12


def plain_jax_row(size: Size, params, X, Y, compute_dtype, repeats: int) -> dict:
    """Steps of `params − α·grad` in a jitted `lax.scan`; compile timed separately."""
    low = jnp.dtype(compute_dtype)

    def cost(params, X, Y):
        A = X.astype(low)
        for p in params[:-1]:
            A = jax.nn.relu(p["W"].astype(low) @ A + p["b"].astype(low))
        Z = (params[-1]["W"].astype(low) @ A + params[-1]["b"].astype(low)).astype(jnp.float32)
        return -jnp.sum(Y * jax.nn.log_softmax(Z, axis=0)) / X.shape[1]

    def step(params, _):
        grads = jax.grad(cost)(params, X, Y)
        return jax.tree.map(lambda p, g: p - size.learning_rate * g, params, grads), None

    @jax.jit
    def train(params):
        return jax.lax.scan(step, params, None, length=size.steps)[0]

    t0 = time.perf_counter()
    compiled = train.lower(params).compile()
    compile_s = time.perf_counter() - t0
    final = jax.jit(cost)(jax.block_until_ready(compiled(params)), X, Y)
    sec = median_seconds(lambda: jax.block_until_ready(compiled(params)), repeats)
    return {"name": f"plain JAX {low.name}", "step_s": sec / size.steps, "compile_s": compile_s,
            "final_cost": float(final)}


def jaxnet_row(size: Size, net, params, X, Y, gradients: str, repeats: int) -> dict | None:
    """`jaxnet.fit(..., compute_dtype=bfloat16)`; None (and a note) if fit lacks the argument."""
    if "compute_dtype" not in inspect.signature(jn.fit).parameters:
        print("skipped the jaxnet.fit row: fit has no compute_dtype argument yet")
        return None

    def run():
        _, history = jn.fit(net, params, X, Y, steps=size.steps,
                            learning_rate=size.learning_rate, gradients=gradients,
                            compute_dtype=jnp.bfloat16, progress=False)
        return history["final_cost"]

    t0 = time.perf_counter()
    final = run()
    first = time.perf_counter() - t0
    sec = median_seconds(run, repeats)  # fit returns host numbers: it has blocked already
    return {"name": f"jaxnet.fit {gradients} bfloat16", "step_s": sec / size.steps,
            "compile_s": max(first - sec, 0.0), "final_cost": float(final)}


def peak_tflops(kind: str, measured: float) -> tuple[float, str]:
    """The device's nominal dense bfloat16 peak, or the measured matmul where it is unknown."""
    for name, peak in DENSE_BF16_PEAK.items():
        if name.lower() in kind.lower():
            return peak, f"nominal dense bf16 peak of {name}"
    return measured, "measured bf16 matmul (device's nominal peak unknown)"


def report(size: Size, kind: str, small: bool, rows: list[dict], mm: float) -> dict:
    """Print TFLOP/s, ratios and the targets; return them, with the printed text as "text"."""
    peak, peak_src = peak_tflops(kind, mm)
    lines = []
    say = lines.append  # the report is printed and saved by the caller
    say(f"device: {kind} ({jax.default_backend()}); sizes {size.sizes}, m={size.m}, "
          f"{size.steps} steps per timed call{' (--small: numbers mean nothing)' if small else ''}")
    say(f"bfloat16 matmul {size.matmul}³: {mm:.2f} TFLOP/s; peak used: {peak:.1f} ({peak_src})")
    say(f"{'row':32s} {'ms/step':>9s} {'TFLOP/s':>9s} {'/matmul':>8s} {'/peak':>7s} "
          f"{'compile s':>9s} {'final J':>9s}")
    for r in rows:
        r["tflops"] = size.flops_per_step / r["step_s"] / 1e12
        r["vs_matmul"], r["vs_peak"] = r["tflops"] / mm, r["tflops"] / peak
        say(f"{r['name']:32s} {1e3 * r['step_s']:9.3f} {r['tflops']:9.2f} "
              f"{r['vs_matmul']:8.1%} {r['vs_peak']:7.1%} {r['compile_s']:9.2f} "
              f"{r['final_cost']:9.5f}")
    by = {r["name"]: r for r in rows}
    plain = by["plain JAX bfloat16"]
    targets = []
    for name, r in by.items():
        if name.startswith("jaxnet"):
            ratio = plain["step_s"] / r["step_s"]
            targets += [
                {"target": f"{name} ≥ {TARGET_VS_PLAIN}× plain JAX bfloat16 step",
                 "ratio": ratio, "met": ratio >= TARGET_VS_PLAIN},
                {"target": f"{name} ≥ {TARGET_VS_PEAK:.0%} of the dense bf16 peak",
                 "ratio": r["vs_peak"], "met": r["vs_peak"] >= TARGET_VS_PEAK},
                {"target": f"{name} final cost within 5% of plain JAX bfloat16",
                 "ratio": r["final_cost"] / plain["final_cost"],
                 "met": abs(r["final_cost"] / plain["final_cost"] - 1) <= 0.05}]
    for t in targets:
        say(f"{t['target']:62s} {t['ratio']:7.3f}  {'met' if t['met'] else 'NOT MET'}")
    return {"text": "\n".join(lines),
            "device_kind": kind, "backend": jax.default_backend(), "small": small,
            "sizes": size.sizes, "m": size.m, "steps": size.steps,
            "flops_per_step": size.flops_per_step, "bf16_matmul_tflops": mm,
            "peak_tflops": peak, "peak_source": peak_src, "rows": rows, "targets": targets}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", default=None,
                   help="small sizes (seconds, on any backend); the default on a CPU")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (median)")
    p.add_argument("--out", default="benchmarks/results", help="folder for gpu.md and gpu.json")
    args = p.parse_args(argv)
    if args.small is None:
        args.small = jax.default_backend() == "cpu"
    return args


def main(argv=None):
    args = parse_args(argv)
    size = SMALL if args.small else FULL
    kind = jax.devices()[0].device_kind
    net = jn.MLP(sizes=size.sizes, hidden="relu", output="softmax")
    params = jax.jit(net.init)(jax.random.key(0))
    X, Y = make_data(size.sizes[0], size.sizes[-1], size.m)

    rows = [plain_jax_row(size, params, X, Y, jnp.bfloat16, args.repeats),
            plain_jax_row(size, params, X, Y, jnp.float32, args.repeats)]
    for gradients in ("autodiff", "manual"):
        row = jaxnet_row(size, net, params, X, Y, gradients, args.repeats)
        if row is None:
            break
        rows.append(row)
    mm = matmul_tflops(size.matmul, args.repeats)
    result = report(size, kind, args.small, rows, mm)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(result["text"])
    stem = out / ("gpu_small" if args.small else "gpu")  # a small run never overwrites real ones
    stem.with_suffix(".md").write_text(f"# GPU benchmark\n\n```\n{result['text']}\n```\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
