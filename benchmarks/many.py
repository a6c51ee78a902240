"""K models at once: `jaxnet.fit_many` against K sequential `jaxnet.fit` calls, in one process.

The workload: K = 256 networks of the document's own size (2 → 2 ReLU → 1 sigmoid, binary
cross-entropy), each from its own seed, on XOR-like data with m = 256 examples, full-batch
gradient descent with α = 0.5 for `--steps` steps.  Both sides are compiled before timing
(compile time reported apart); the benchmark first checks that every model's final cost
agrees between the two, then times them interleaved and reports medians.

    python benchmarks/many.py            # the README's figure
    python benchmarks/many.py --tiny     # a smoke run for CI (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jaxnet as jn


def sequential(net, batch, X, Y, steps, lr, K):
    outs = [jn.fit(net, jax.tree.map(lambda a, k=k: a[k], batch), X, Y, steps=steps,
                   learning_rate=lr, progress=False)[0] for k in range(K)]
    jax.block_until_ready(outs)
    return outs


def together(net, batch, X, Y, steps, lr):
    out, _ = jn.fit_many(net, batch, X, Y, steps=steps, learning_rate=lr, progress=False)
    return jax.block_until_ready(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=256, help="K, the number of networks")
    p.add_argument("--steps", type=int, default=1000, help="gradient-descent steps per model")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--tiny", action="store_true", help="K=8, 50 steps, 2 rounds: a smoke test")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    if args.tiny:
        args.models, args.steps, args.repeats = 8, 50, 2
    K, steps, lr = args.models, args.steps, 0.5

    X, Y = jn.data.xor(key=jax.random.key(0), m=256, noise=0.2)
    net = jn.MLP((2, 2, 1), hidden="relu", output="sigmoid")
    batch = jax.vmap(net.init)(jax.random.split(jax.random.key(1), K))

    t0 = time.perf_counter()
    first_many = together(net, batch, X, Y, steps, lr)
    compile_many = time.perf_counter() - t0
    t0 = time.perf_counter()
    jn.fit(net, jax.tree.map(lambda a: a[0], batch), X, Y, steps=steps, learning_rate=lr,
           progress=False)
    compile_one = time.perf_counter() - t0
    seq = sequential(net, batch, X, Y, steps, lr, K)
    # Same result first: every model's final cost agrees (relative 1e-3, as in cpu.py; the
    # float32 trajectories of a vmapped and a single step differ in summation order only).
    cost_many = np.array([float(net.cost(jax.tree.map(lambda a, k=k: a[k], first_many), X, Y))
                          for k in range(K)])
    cost_seq = np.array([float(net.cost(p, X, Y)) for p in seq])
    np.testing.assert_allclose(cost_many, cost_seq, rtol=1e-3, atol=1e-6)

    times = {"fit_many": [], "sequential fit": []}
    for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both
        t0 = time.perf_counter()
        together(net, batch, X, Y, steps, lr)
        times["fit_many"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sequential(net, batch, X, Y, steps, lr, K)
        times["sequential fit"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["sequential fit"] / med["fit_many"]
    target = 50.0
    rows = [
        f"| {name} | {med[name]:.3f} s | {K * steps / med[name]:,.0f} |" for name in times]
    table = "\n".join([
        f"K = {K} networks 2 → 2 → 1, m = 256, {steps} steps each; medians of {args.repeats} "
        f"interleaved runs; {os.cpu_count()} CPU cores, jax {jax.__version__} "
        f"({jax.devices()[0].platform})",
        "",
        "| implementation | time | model-steps/s |", "|---|---|---|", *rows, "",
        f"fit_many speed-up: **{ratio:.1f}×** (target ≥ {target:.0f}×: "
        f"{'met' if ratio >= target else 'not met'}); compile: fit_many {compile_many:.2f} s, "
        f"one fit {compile_one:.2f} s (once, not in the times above)",
    ])
    print(table)
    if not args.tiny:
        args.out.mkdir(parents=True, exist_ok=True)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "many.md").write_text(table + "\n")
    (out / "many.json").write_text(json.dumps({
        "K": K, "steps": steps, "repeats": args.repeats, "median_s": med, "ratio": ratio,
        "target": target, "met": ratio >= target, "compile_s": {"fit_many": compile_many,
                                                                "fit": compile_one}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
