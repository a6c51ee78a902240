"""GAN benchmark: `jaxnet.gan.train` against plain JAX and PyTorch eager, in one process.

The step (all implementations alike, float32): generator 16 → 128 → 128 → 64 (ReLU, tanh
output), discriminator 64 → 128 → 128 → 1 (ReLU, sigmoid output), batch 256 real samples drawn
with replacement and 256 noise vectors z ~ N(0, I); fake = G(z); one discriminator update on
[real, fake] (BCE from the logits, the fakes detached); one generator update with the
non-saturating loss through the updated discriminator, reusing the forward pass of G; Adam
(lr 2e-4, β1 0.5) for each player.  Real data: 4096 fixed samples.

Implementations: `jaxnet.gan.train` with the hand-written gradients (and, for reference, with
`jax.grad`); plain JAX with `jax.grad`/`jax.vjp`, as a jitted step called from Python and as a
`lax.scan` under one jit (the faster is the baseline); PyTorch eager on 1 and 2 threads (the
faster is the baseline; skipped when torch is not installed).  Before timing, every
implementation is fed the same batches for a few steps and its losses must match jaxnet's.
Then timed runs are interleaved round-robin and medians reported.

    python benchmarks/gan.py                          # benchmarks/results/gan.{md,json}
    python benchmarks/gan.py --quick --out /tmp/b     # seconds: the smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnet as jn
from jaxnet import gan as gan_mod

try:
    import torch
except ImportError:  # the optional `bench` group
    torch = None

G_SIZES, D_SIZES = (16, 128, 128, 64), (64, 128, 128, 1)
LR, B1 = 2e-4, 0.5
M_REAL = 4096
CHECK_STEPS, CHECK_TOL = [10], 1e-3  # steps fed the same batches; --quick: the run's steps
SETTLE_S = [0.2]


class Problem:
    """The GAN, its initial parameters, the real data and the batch size."""

    def __init__(self, batch: int, steps: int):
        self.batch, self.steps = batch, steps
        self.gan = gan_mod.GAN(jn.MLP(G_SIZES, hidden="relu", output="tanh"),
                               jn.MLP(D_SIZES, hidden="relu", output="sigmoid"))
        self.params = jax.jit(self.gan.init)(jax.random.key(0))
        k1, k2 = jax.random.split(jax.random.key(1))
        mix = jax.random.normal(k1, (64, 8)) / jnp.sqrt(8.0)
        self.X = jnp.tanh(mix @ jax.random.normal(k2, (8, M_REAL)))  # data on a curved 8-d set
        self.key = jax.random.key(2)
        self.tx = optax.adam(LR, b1=B1)  # one object: jaxnet's loop compiles once

    def protocol_batches(self, steps: int):
        """The real and noise batches `jaxnet.gan.train` draws at steps 0..steps-1 (its
        documented protocol: fold_in(key, t), fold_in(., 0), split into (real, noise))."""
        def one(t):
            k_x, k_z = jax.random.split(jax.random.fold_in(jax.random.fold_in(self.key, t), 0))
            idx = jax.random.randint(k_x, (self.batch,), 0, M_REAL)
            return jnp.take(self.X, idx, axis=-1), jax.random.normal(k_z, (16, self.batch))
        return jax.jit(jax.vmap(one))(jnp.arange(steps))


# --- jaxnet ------------------------------------------------------------------------------------------
def jaxnet_impl(pb: Problem, gradients: str):
    def run(steps):
        params, h = gan_mod.train(pb.gan, pb.params, pb.X, steps=steps, key=pb.key,
                                  batch_size=pb.batch, optimizer=pb.tx, learning_rate=None,
                                  gradients=gradients, progress=False)
        jax.block_until_ready(params)
        return h["d_loss"], h["g_loss"]
    return {"run": lambda: run(pb.steps), "check": lambda: run(CHECK_STEPS[0])}


# --- plain JAX -----------------------------------------------------------------------------------------
def mlp(params, A, hidden, out):
    for p in params[:-1]:
        A = hidden(p["W"] @ A + p["b"])
    return out(params[-1]["W"] @ A + params[-1]["b"])


def plain_step(pb: Problem):
    """`step(carry, (x, z)) -> (carry, (J_D, J_G))` with jax.grad and jax.vjp."""
    tx, b = pb.tx, pb.batch
    G = lambda gp, z: mlp(gp, z, jax.nn.relu, jnp.tanh)
    D = lambda dp, x: mlp(dp, x, jax.nn.relu, lambda z: z)  # logits

    def step(carry, batch):
        gp, dp, og, od = carry
        x, z = batch
        fake, g_vjp = jax.vjp(lambda gp: G(gp, z), gp)

        def d_cost(dp):
            logits = D(dp, jnp.concatenate([x, fake], axis=-1))
            return jnp.mean(jax.nn.softplus(-logits[:, :b])) + \
                jnp.mean(jax.nn.softplus(logits[:, b:]))
        J_D, gd = jax.value_and_grad(d_cost)(dp)
        upd, od = tx.update(gd, od, dp)
        dp = optax.apply_updates(dp, upd)
        J_G, d_fake = jax.value_and_grad(lambda f: jnp.mean(jax.nn.softplus(-D(dp, f))))(fake)
        (gg,) = g_vjp(d_fake)
        upd, og = tx.update(gg, og, gp)
        return (optax.apply_updates(gp, upd), dp, og, od), (J_D, J_G)

    def sample(key, t):
        k_x, k_z = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, t), 0))
        idx = jax.random.randint(k_x, (b,), 0, M_REAL)
        return jnp.take(pb.X, idx, axis=-1), jax.random.normal(k_z, (16, b))

    return step, sample


def plain_jax_impl(pb: Problem, mode: str):
    """The step of `plain_step` as a `lax.scan` under one jit, or jitted and called per step;
    both draw their batches as `jaxnet.gan.train` does, so the check needs no other program."""
    step, sample = plain_step(pb)
    gp, dp = pb.params["generator"], pb.params["discriminator"]
    init = (gp, dp, pb.tx.init(gp), pb.tx.init(dp))

    if mode == "scan":
        @partial(jax.jit, static_argnums=3)
        def loop(carry, key, X, steps):
            del X  # an argument, not a constant folded into the program
            return jax.lax.scan(lambda c, t: step(c, sample(key, t)), carry, jnp.arange(steps))

        def run(steps):
            _, (J_D, J_G) = jax.block_until_ready(loop(init, pb.key, pb.X, steps))
            return np.asarray(J_D), np.asarray(J_G)
    else:
        @jax.jit
        def one(carry, key, t):
            return step(carry, sample(key, t))

        def run(steps):
            carry, losses = init, []
            for t in range(steps):
                carry, J = one(carry, pb.key, t)
                losses.append(J)
            jax.block_until_ready(carry)
            return np.asarray(losses).T

    return {"run": lambda: run(pb.steps), "check": lambda: run(CHECK_STEPS[0])}


# --- PyTorch eager --------------------------------------------------------------------------------------
def torch_impl(pb: Problem, threads: int | None = None):
    to_t = lambda a: torch.from_numpy(np.array(a))
    X = to_t(pb.X)
    b = pb.batch

    def net(params, A, out):
        for W, bias in params[:-1]:
            A = torch.relu(W @ A + bias)
        W, bias = params[-1]
        return out(W @ A + bias)

    def train(steps, batches=None):
        gp = [(to_t(p["W"]).requires_grad_(), to_t(p["b"]).requires_grad_())
              for p in pb.params["generator"]]
        dp = [(to_t(p["W"]).requires_grad_(), to_t(p["b"]).requires_grad_())
              for p in pb.params["discriminator"]]
        g_list, d_list = [t for p in gp for t in p], [t for p in dp for t in p]
        opt_g = torch.optim.Adam(g_list, lr=LR, betas=(B1, 0.999))
        opt_d = torch.optim.Adam(d_list, lr=LR, betas=(B1, 0.999))
        losses = []
        for t in range(steps):
            if batches is None:
                x = X[:, torch.randint(0, M_REAL, (b,))]
                z = torch.randn(16, b)
            else:
                x, z = to_t(batches[0][t]), to_t(batches[1][t])
            fake = net(gp, z, torch.tanh)
            opt_d.zero_grad(set_to_none=True)
            logits = net(dp, torch.cat([x, fake.detach()], dim=1), lambda z: z)
            J_D = torch.nn.functional.softplus(-logits[:, :b]).mean() + \
                torch.nn.functional.softplus(logits[:, b:]).mean()
            J_D.backward()
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            J_G = torch.nn.functional.softplus(-net(dp, fake, lambda z: z)).mean()
            J_G.backward(inputs=g_list)  # only G's gradients: D's are not needed here
            opt_g.step()
            losses.append((J_D.detach(), J_G.detach()))
        return np.asarray([[float(a), float(c)] for a, c in losses]).T

    def with_threads(fn):
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(os.cpu_count())

    return {"run": lambda: with_threads(lambda: train(pb.steps)),
            "check": lambda: with_threads(lambda: train(
                CHECK_STEPS[0], [np.asarray(a) for a in pb.protocol_batches(CHECK_STEPS[0])]))}


def fastest_torch_threads(pb: Problem, tries: int) -> int:
    short = Problem(pb.batch, max(5, min(pb.steps, 50)))
    best = {}
    for _ in range(tries):
        for n in sorted({1, os.cpu_count()}):
            t0 = time.perf_counter()
            torch_impl(short, n)["run"]()
            best[n] = min(best.get(n, np.inf), time.perf_counter() - t0)
    return min(best, key=best.get)


# --- measuring --------------------------------------------------------------------------------------
def check(impls: dict) -> dict:
    """Every implementation's losses over the same CHECK_STEPS batches must match jaxnet's."""
    ref = np.asarray(impls["jaxnet manual"]["check"]())
    out = {}
    for name, impl in impls.items():
        got = np.asarray(impl["check"]())
        err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-3)))
        out[name] = err
        if not err <= CHECK_TOL:
            raise SystemExit(f"{name}: losses over the first {CHECK_STEPS[0]} steps differ from "
                             f"jaxnet's by {err:.2e} (tolerance {CHECK_TOL})\n{got}\n{ref}")
    return out


def time_all(impls: dict, repeats: int, steps: int) -> dict:
    first = {}
    for name, impl in impls.items():  # first call: compile (JAX) and warm-up
        t0 = time.perf_counter()
        impl["run"]()
        first[name] = time.perf_counter() - t0
    seconds = {name: [] for name in impls}
    cpu = {name: [] for name in impls}  # process CPU time: what other processes' load moves less
    for _ in range(repeats):  # round-robin, so drifts in machine load hit all alike
        for name, impl in impls.items():
            time.sleep(SETTLE_S[0])
            t0, c0 = time.perf_counter(), time.process_time()
            impl["run"]()
            seconds[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    rows = {}
    for name, s in seconds.items():
        med = statistics.median(s)
        q = np.percentile(s, [25, 75])
        rows[name] = {"median_s": med, "steps_per_s": steps / med,
                      "rel_iqr": float((q[1] - q[0]) / med),
                      "steps_per_cpu_s": steps / statistics.median(cpu[name]),
                      "best_steps_per_s": steps / min(s),
                      "first_call_s": first[name], "compile_s": max(first[name] - med, 0.0),
                      "seconds": s, "cpu_seconds": cpu[name]}
        print(f"  {name:24s} {rows[name]['steps_per_s']:9.1f} steps/s (±"
              f"{100 * rows[name]['rel_iqr']:.0f}% IQR, {rows[name]['steps_per_cpu_s']:.1f} "
              f"per CPU-s, first call {first[name]:.2f} s)")
    return rows


def targets(rows: dict) -> list[dict]:
    """Each target as a ratio of wall-clock medians, and of CPU-time medians beside it."""
    def ratio(base, key):
        return rows["jaxnet manual"][key] / rows[base][key]

    plain = [k for k in rows if k.startswith("plain JAX")]
    best = max(plain, key=lambda k: rows[k]["steps_per_s"])
    out = [{"target": "jaxnet manual ≥ 1.0× best plain JAX", "goal": 1.0, "baseline": best},
           {"target": "jaxnet manual ≥ 1.0× plain JAX in the same loop form (lax.scan)",
            "goal": 1.0, "baseline": "plain JAX scan"}]
    if "torch eager" in rows:
        out.append({"target": "jaxnet manual ≥ 1.5× PyTorch eager", "goal": 1.5,
                    "baseline": "torch eager"})
    for t in out:
        t["ratio"], t["ratio_cpu"], t["ratio_best"] = ratio(t["baseline"], "steps_per_s"), \
            ratio(t["baseline"], "steps_per_cpu_s"), ratio(t["baseline"], "best_steps_per_s")
        t["met"] = bool(t["ratio"] >= t["goal"])
    return out


def markdown(env: dict, rows: dict, tgts: list[dict], errs: dict) -> str:
    quick = " (quick smoke run: numbers mean nothing)" if env["quick"] else ""
    lines = [f"# GAN step benchmark{quick}", "",
             f"`{env['command']}` — {env['cpu_count']} CPUs, jax {env['jax']}, torch "
             f"{env['torch'] or 'not installed'}; G {G_SIZES}, D {D_SIZES}, batch "
             f"{env['batch']}, float32, Adam; {env['steps']} steps per run, medians of "
             f"{env['repeats']} interleaved runs.", "",
             "| target | baseline | measured (wall medians) | met | by CPU time | by best run |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['baseline']} | {t['ratio']:.2f}× | "
              f"{'met' if t['met'] else '**not met**'} | {t['ratio_cpu']:.2f}× | "
              f"{t['ratio_best']:.2f}× |" for t in tgts]
    lines += ["", "| implementation | steps/s (wall median) | IQR | steps per CPU-s | "
                  "steps/s (best run) | first call s | losses vs jaxnet |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps_per_s']:.1f} | ±{100 * r['rel_iqr']:.0f}% | "
                     f"{r['steps_per_cpu_s']:.1f} | {r['best_steps_per_s']:.1f} | "
                     f"{r['first_call_s']:.2f} | {errs.get(name, float('nan')):.1e} |")
    if env["torch_threads"] is not None:
        lines += ["", f"PyTorch ran on {env['torch_threads']} thread(s), the faster of 1 and "
                      f"{env['cpu_count']} in a short probe."]
    else:
        lines += ["", "PyTorch is not installed (`pip install torch==2.13.0`): its row is "
                      "skipped."]
    lines += ["", "Load average (1, 5, 15 min) at start {:.1f}, {:.1f}, {:.1f}; at end "
              "{:.1f}, {:.1f}, {:.1f}: other processes share these cores.".format(
                  *env["load_average_at_start"], *env["load_average_at_end"])]
    lines += ["", "Met or not is judged on wall-clock medians; 'by CPU time' divides medians of this "
                  "process's CPU time instead (user + system, all threads), and 'by best run' the "
                  "fastest of the timed runs: both are moved less by the load of other processes "
                  "on the shared cores (which also favours a loop that keeps two threads busy, "
                  "as Python dispatching steps to XLA does, over one compiled loop)."]
    lines += ["", f"'losses vs jaxnet': largest relative difference of J_D and J_G over the "
                  f"first {CHECK_STEPS[0]} steps on the same batches (tolerance {CHECK_TOL:g})."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one round")
    p.add_argument("--steps", type=int, default=None, help="steps per timed run (default 300)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5)")
    p.add_argument("--out", default="benchmarks/results", help="folder for gan.md and gan.json")
    args = p.parse_args(argv)
    steps = args.steps or (3 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 5)
    batch = 32 if args.quick else 256
    if args.quick:
        SETTLE_S[0], CHECK_STEPS[0] = 0.0, steps  # one compile per JAX implementation
    pb = Problem(batch, steps)
    env = {"command": " ".join(["python benchmarks/gan.py", *sys.argv[1:]]),
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "python": platform.python_version(), "jax": jax.__version__,
           "torch": torch.__version__ if torch is not None else None, "quick": args.quick,
           "steps": steps, "repeats": repeats, "batch": batch,
           "load_average_at_start": os.getloadavg(), "torch_threads": None}
    impls = {"jaxnet manual": jaxnet_impl(pb, "manual")}
    if not args.quick:  # the smoke run compiles less
        impls["jaxnet autodiff"] = jaxnet_impl(pb, "autodiff")
    impls["plain JAX jit step"] = plain_jax_impl(pb, "jit")
    impls["plain JAX scan"] = plain_jax_impl(pb, "scan")
    if torch is not None:
        env["torch_threads"] = fastest_torch_threads(pb, 1 if args.quick else 3)
        impls["torch eager"] = torch_impl(pb, env["torch_threads"])
    else:
        print("note: PyTorch is not installed: its row is skipped")
    errs = check(impls)
    print("losses agree over the first steps: " + ", ".join(f"{k} {v:.1e}"
                                                           for k, v in errs.items()))
    rows = time_all(impls, repeats, steps)
    tgts = targets(rows)
    env["load_average_at_end"] = os.getloadavg()
    report = markdown(env, rows, tgts, errs)
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "gan_quick" if args.quick else "gan"  # a smoke run never overwrites real results
    (out / f"{stem}.md").write_text(report)
    (out / f"{stem}.json").write_text(json.dumps(
        {"environment": env, "results": rows, "targets": tgts, "check": errs}, indent=1,
        default=str))
    print(f"wrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
