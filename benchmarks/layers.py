"""Layer benchmark: `jaxnet.fit` with hand-written gradients on a CNN, an RNN, an LSTM and a
transformer, against `fit` with autodiff, plain JAX and PyTorch eager, in one process.

Every JAX implementation trains the same `Sequential` from the same `net.init(key(0))` on the
same fixed data (float32, full-batch SGD, fixed learning rate).  Plain JAX differentiates
jaxnet's own pure forward + loss (`net._cost`) with `jax.value_and_grad`: it measures what
autodiff of the same forward costs, written as a user would (a jitted step called from a Python
loop, and the whole loop in one jitted `lax.scan`; the faster of the two is the baseline).
PyTorch eager (nn.Conv2d / nn.MaxPool2d / nn.Linear, nn.LSTM / nn.RNN) starts from the same
weights, ported; for the transformer torch runs a small pre-LN model of the same sizes (exact
GELU, as jaxnet) from its own init (its loss is reported, not checked).  The script first
checks that the final costs agree (relative `REL_TOL`) and stops otherwise; then times the
implementations interleaved (round-robin, `--repeats` rounds) and reports medians, compile
time of the first call apart.

    python benchmarks/layers.py                        # benchmarks/results/layers.{md,json}
    python benchmarks/layers.py --quick --out /tmp/b   # seconds: the smoke test

PyTorch is optional (the ``bench`` extra); without it the torch rows are skipped, with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnet as jn
from jaxnet import models

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the optional `bench` group
    torch = None

REL_TOL = 2e-3  # final costs must agree this closely (float32, different op orders)
SETTLE_S = [0.2]  # pause before each timed run (spinning worker threads of the last library)
JAXNET = ("fit manual", "fit autodiff")
PLAIN = ("plain JAX jit step loop", "plain JAX scan")


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # cnn | lstm | rnn | transformer
    m: int
    steps: int
    lr: float
    T: int = 0
    hidden: int = 0
    n_x: int = 8
    vocab: int = 96
    d: int = 128
    heads: int = 4
    blocks: int = 2
    mlp: int = 512

    def net(self):
        if self.kind == "cnn":
            return models.digits_cnn()
        if self.kind in ("lstm", "rnn"):
            cell = jn.LSTM if self.kind == "lstm" else jn.RNN
            return jn.Sequential([cell(self.hidden), jn.Dense(1)], input_shape=(self.n_x, self.T))
        return models.char_transformer(self.vocab, self.T, d=self.d, heads=self.heads,
                                       blocks=self.blocks, mlp_width=self.mlp)

    def data(self):
        k1, k2 = jax.random.split(jax.random.key(1))
        if self.kind == "cnn":
            X = jax.random.normal(k1, (1, 8, 8, self.m), jnp.float32)
            labels = jax.random.randint(k2, (self.m,), 0, 10)
            return X, jax.nn.one_hot(labels, 10, axis=0, dtype=jnp.float32)
        if self.kind in ("lstm", "rnn"):
            X = jax.random.normal(k1, (self.n_x, self.T, self.m), jnp.float32)
            return X, jax.random.normal(k2, (1, self.m), jnp.float32)
        ids = jax.random.randint(k1, (self.T + 1, self.m), 0, self.vocab)
        return ids[:-1], ids[1:]

    @property
    def unit(self) -> str:
        return "tokens/s" if self.kind == "transformer" else "steps/s"

    @property
    def per_step(self) -> int:
        return self.T * self.m if self.kind == "transformer" else 1


FULL = [Workload("CNN", "cnn", 256, 50, 0.1),
        Workload("LSTM", "lstm", 128, 20, 0.1, T=50, hidden=64),
        Workload("RNN", "rnn", 128, 20, 0.1, T=50, hidden=64),
        Workload("transformer", "transformer", 32, 10, 0.1, T=64)]
QUICK = [Workload("CNN", "cnn", 16, 2, 0.1),
         Workload("LSTM", "lstm", 8, 2, 0.1, T=4, hidden=8),
         Workload("RNN", "rnn", 8, 2, 0.1, T=4, hidden=8),
         Workload("transformer", "transformer", 4, 2, 0.1, T=8, vocab=16, d=16, heads=2,
                  blocks=1, mlp=32)]


# --- implementations: each returns run() -> final cost ------------------------------------
def jaxnet_fit(w, net, params, X, Y, gradients):
    def run():
        new, hist = jn.fit(net, params, X, Y, steps=w.steps, learning_rate=w.lr,
                           gradients=gradients, progress=False)
        jax.block_until_ready(new)
        return float(hist["final_cost"])
    return run


def plain_jax(w, net, params, X, Y, cost_jit, scan: bool):
    """`jax.value_and_grad(net._cost)`: jaxnet's forward, differentiated by JAX."""
    def sgd(p, X, Y):
        J, g = jax.value_and_grad(net._cost)(p, X, Y)
        return jax.tree.map(lambda a, b: a - w.lr * b, p, g), J

    if scan:
        @jax.jit
        def train(p, X, Y):
            return jax.lax.scan(lambda p, _: sgd(p, X, Y), p, None, length=w.steps)[0]

        def run():
            return float(cost_jit(train(params, X, Y), X, Y))
        return run
    step = jax.jit(sgd)

    def run():
        p = params
        for _ in range(w.steps):
            p, _ = step(p, X, Y)
        return float(cost_jit(p, X, Y))
    return run


def _t(a):
    return torch.from_numpy(np.array(a, dtype=np.float32))


def torch_model(w, params):
    """A torch module and `cost(module, X, Y)`, with jaxnet's initial weights where ported."""
    if w.kind == "cnn":
        mod = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(128, 10))
        with torch.no_grad():
            for i, j in ((0, 0), (3, 2), (7, 5)):
                mod[i].weight.copy_(_t(params[j]["W"]))
                mod[i].bias.copy_(_t(params[j]["b"]).reshape(-1))
        return mod, lambda mod, X, Y: F.cross_entropy(mod(X), Y)
    if w.kind in ("lstm", "rnn"):
        rnn = (torch.nn.LSTM if w.kind == "lstm" else torch.nn.RNN)(w.n_x, w.hidden)
        head = torch.nn.Linear(w.hidden, 1)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(_t(params[0]["Wx"]))
            rnn.weight_hh_l0.copy_(_t(params[0]["Wh"]))
            rnn.bias_ih_l0.copy_(_t(params[0]["b"]).reshape(-1))
            rnn.bias_hh_l0.zero_()
            head.weight.copy_(_t(params[1]["W"]))
            head.bias.copy_(_t(params[1]["b"]).reshape(-1))
        rnn.bias_hh_l0.requires_grad_(False)  # jaxnet has one bias b: keep bias_hh at zero
        mod = torch.nn.ModuleList([rnn, head])

        def cost(mod, X, Y):
            out, _ = mod[0](X)
            return 0.5 * ((mod[1](out[-1]) - Y) ** 2).sum() / X.shape[1]
        return mod, cost
    torch.manual_seed(0)
    return TorchTransformer(w), lambda mod, X, Y: F.cross_entropy(
        mod(X).reshape(-1, w.vocab), Y.reshape(-1))


if torch is not None:
    class TorchBlock(torch.nn.Module):
        def __init__(self, d, heads, mlp):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.qkv, self.o = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
            self.fc1, self.fc2 = torch.nn.Linear(d, mlp), torch.nn.Linear(mlp, d)

        def forward(self, x):  # x (m, T, d)
            m, T, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(m, T, 3, self.heads, d // self.heads) \
                .permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(m, T, d))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))  # exact erf GELU, as jaxnet

    class TorchTransformer(torch.nn.Module):
        """Pre-LN decoder: embedding + learned positions, blocks, LayerNorm, linear head."""

        def __init__(self, w):
            super().__init__()
            self.E, self.P = torch.nn.Embedding(w.vocab, w.d), torch.nn.Embedding(w.T, w.d)
            self.blocks = torch.nn.ModuleList(TorchBlock(w.d, w.heads, w.mlp)
                                              for _ in range(w.blocks))
            self.ln, self.head = torch.nn.LayerNorm(w.d), torch.nn.Linear(w.d, w.vocab)

        def forward(self, ids):  # ids (m, T)
            x = self.E(ids) + self.P.weight[: ids.shape[1]]
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln(x))


def torch_data(w, X, Y):
    X, Y = np.array(X), np.array(Y)
    if w.kind == "cnn":
        return torch.from_numpy(X.transpose(3, 0, 1, 2).copy()), torch.from_numpy(Y.argmax(0))
    if w.kind in ("lstm", "rnn"):
        return torch.from_numpy(X.transpose(1, 2, 0).copy()), torch.from_numpy(Y.T.copy())
    return torch.from_numpy(X.T.astype(np.int64)), torch.from_numpy(Y.T.astype(np.int64))


def torch_eager(w, params, X, Y, threads: dict):
    mod0, cost = torch_model(w, params)
    state = {k: v.clone() for k, v in mod0.state_dict().items()}
    tX, tY = torch_data(w, X, Y)

    def train(steps):
        mod0.load_state_dict(state)
        opt = torch.optim.SGD([q for q in mod0.parameters() if q.requires_grad], lr=w.lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            cost(mod0, tX, tY).backward()
            opt.step()
        with torch.no_grad():
            return float(cost(mod0, tX, tY))

    best = {}
    for n in sorted({1, min(2, os.cpu_count())}) * 2:  # probe 1 and 2 threads, best of 2 each
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        train(max(1, w.steps // 2))
        best[n] = min(best.get(n, np.inf), time.perf_counter() - t0)
    threads[w.name] = n_best = min(best, key=best.get)

    def run():
        torch.set_num_threads(n_best)
        return train(w.steps)
    return run


# --- measuring -----------------------------------------------------------------------------
def memory(net, params, X, Y) -> dict:
    """XLA's memory analysis of one compiled gradient step, hand-written vs autodiff."""
    out = {}
    fns = {"manual": lambda p, X, Y: net._cost_and_grads(p, X, Y)[::2],
           "autodiff": jax.value_and_grad(net._cost)}
    for name, fn in fns.items():
        ma = jax.jit(fn).lower(params, X, Y).compile().memory_analysis()
        if ma is None:
            return {}
        out[name] = {k: int(getattr(ma, k)) for k in (
            "temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")}
    return out


def bench(w: Workload, repeats: int, threads: dict) -> dict:
    net = w.net()
    params = jax.jit(net.init)(jax.random.key(0))
    X, Y = w.data()
    cost_jit = jax.jit(net._cost)
    runners = {"fit manual": jaxnet_fit(w, net, params, X, Y, "manual"),
               "fit autodiff": jaxnet_fit(w, net, params, X, Y, "autodiff"),
               PLAIN[0]: plain_jax(w, net, params, X, Y, cost_jit, scan=False),
               PLAIN[1]: plain_jax(w, net, params, X, Y, cost_jit, scan=True)}
    if torch is not None:
        runners["torch eager"] = torch_eager(w, params, X, Y, threads)
    costs, first = {}, {}
    for name, run in runners.items():
        t0 = time.perf_counter()
        costs[name] = run()
        first[name] = time.perf_counter() - t0
    initial = float(cost_jit(params, X, Y))
    print(f"  initial cost {initial:.6g}; final: "
          + ", ".join(f"{k} {c:.6g}" for k, c in costs.items()))
    ref = costs["fit manual"]
    checked = [k for k in costs if not (k == "torch eager" and w.kind == "transformer")]
    bad = [k for k in checked if not abs(costs[k] - ref) <= REL_TOL * abs(ref)]
    if bad:
        raise SystemExit(f"{w.name}: final costs disagree (rel tol {REL_TOL}): {costs}")

    seconds = {k: [] for k in runners}
    cpu = {k: [] for k in runners}  # this process's CPU time (all threads): less moved by load
    for _ in range(repeats):
        for name, run in runners.items():
            time.sleep(SETTLE_S[0])
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            seconds[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    rows = {}
    for name in runners:
        med = statistics.median(seconds[name])
        rows[name] = {"final_cost": costs[name], "median_s": med,
                      "rate": w.steps * w.per_step / med, "steps_per_s": w.steps / med,
                      "first_call_s": first[name],
                      "compile_s": max(first[name] - med, 0.0), "seconds": seconds[name],
                      "cpu_seconds": cpu[name],
                      "rate_per_cpu_s": w.steps * w.per_step / statistics.median(cpu[name]),
                      "checked": name in checked}
        print(f"  {name:24s} {rows[name]['rate']:12.1f} {w.unit} (compile ~"
              f"{rows[name]['compile_s']:.2f} s)")
    res = {"workload": w.__dict__, "unit": w.unit, "initial_cost": initial, "results": rows,
           "torch_threads": threads.get(w.name)}
    if w.kind == "transformer":
        res["memory"] = memory(net, params, X, Y)
    return res


def targets(results: dict) -> list[dict]:
    """fit manual's rate over the best plain JAX and over PyTorch eager; met when ≥ 1.0."""
    out = []
    for name, r in results.items():
        rows = r["results"]
        man = rows["fit manual"]["rate"]
        best_plain = max(PLAIN, key=lambda k: rows[k]["rate"])
        cmp = [("best plain JAX", rows[best_plain]["rate"], best_plain)]
        if "torch eager" in rows:
            cmp.append(("PyTorch eager", rows["torch eager"]["rate"],
                        f"{r['torch_threads']} thread(s)"))
        key = {"best plain JAX": best_plain, "PyTorch eager": "torch eager"}
        for what, rate, note in cmp:
            by_cpu = rows["fit manual"]["rate_per_cpu_s"] / rows[key[what]]["rate_per_cpu_s"]
            out.append({"workload": name, "target": f"fit manual ≥ 1.0× {what}",
                        "ratio": man / rate, "met": man / rate >= 1.0, "note": note,
                        "ratio_by_cpu": by_cpu})
    return out


def load_note(env) -> str:
    """How busy the machine was: the interleaved ratios hold either way, absolute rates not."""
    start, end = env["load_average_at_start"], env["load_average_at_end"]
    # Judged at the start: by the end, the benchmark's own threads are in the load average.
    busy = start[0] > 0.5 * env["cpu_count"]
    head = ("**The machine was loaded by other work during this run**" if busy else
            "The machine was otherwise idle")
    tail = (": absolute numbers are low and noisy; the interleaved ratios are the result."
            if busy else ".")
    return (f"{head} (load average {start[0]:.1f}, {start[1]:.1f}, {start[2]:.1f} at start; "
            f"{end[0]:.1f}, {end[1]:.1f}, {end[2]:.1f} at end, on {env['cpu_count']} cores){tail}")


def markdown(env, results, tgts) -> str:
    q = " (quick smoke run: numbers mean nothing)" if env["quick"] else ""
    names = list(next(iter(results.values()))["results"])
    lines = [f"# Layer benchmark{q}", "",
             f"`{env['command']}` — {env['cpu_count']} CPUs, jax {env['jax']}, torch "
             f"{env['torch'] or 'not installed'}, medians of {env['repeats']} interleaved rounds. "
             + load_note(env),
             "", "| workload | target | measured (wall medians) | met | by CPU time |",
             "|---|---|---|---|---|"]
    for t in tgts:
        lines.append(f"| {t['workload']} | {t['target']} | {t['ratio']:.2f}× ({t['note']}) | "
                     f"{'met' if t['met'] else '**not met**'} | {t['ratio_by_cpu']:.2f}× |")
    lines += ["", "Met or not is judged on wall-clock medians. 'By CPU time' divides this "
              "process's CPU time per step instead (all threads): it is moved less by other "
              "processes, and it shows where an implementation buys its speed with a second "
              "core (PyTorch at 2 threads; XLA runs a compiled loop's small operations on one)."]
    lines += ["", "Median rate (steps/s; tokens/s for the transformer) and first-call overhead "
              "(compile, s):", "", "| workload | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for name, r in results.items():
        cells = [f"{r['results'][n]['rate']:.1f} ({r['results'][n]['compile_s']:.1f} s)"
                 if n in r["results"] else "skipped" for n in names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Final costs after the timed steps (initial → each implementation):", ""]
    for name, r in results.items():
        w = r["workload"]
        lines.append(f"- {name} ({w['steps']} SGD steps, lr {w['lr']}, m = {w['m']}): "
                     f"{r['initial_cost']:.5f} → " + ", ".join(
                         f"{n} {v['final_cost']:.5f}{'' if v['checked'] else ' (own init)'}"
                         for n, v in r["results"].items()))
    mem = results.get("transformer", {}).get("memory")
    if mem:
        lines += ["", "Transformer, one compiled gradient step (XLA memory_analysis, MiB): " +
                  "; ".join(f"{k}: temp {v['temp_size_in_bytes'] / 2**20:.2f}, arguments "
                            f"{v['argument_size_in_bytes'] / 2**20:.1f}, outputs "
                            f"{v['output_size_in_bytes'] / 2**20:.1f}" for k, v in mem.items())]
    lines += ["", "Plain JAX is `jax.value_and_grad(net._cost)`: jaxnet's own forward, "
              "differentiated by JAX. Torch ports jaxnet's initial weights for CNN, LSTM and RNN "
              f"(costs checked to agree within {REL_TOL:g}); its transformer (pre-LN, exact "
              "GELU, `F.scaled_dot_product_attention`) starts from its own init, so its cost is "
              "not compared. Torch runs at the faster of 1 and 2 threads (probed per workload). "
              "Compile = first call − median call."]
    if torch is None:
        lines += ["", "PyTorch is not installed (`pip install -e .[bench]`): torch rows skipped."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, 1 round")
    p.add_argument("--repeats", type=int, default=None, help="rounds (default 5; 1 quick)")
    p.add_argument("--workloads", default="CNN,LSTM,RNN,transformer")
    p.add_argument("--out", default="benchmarks/results", help="folder for layers.md/.json")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    if args.quick:
        SETTLE_S[0] = 0.0
    chosen = [w for w in (QUICK if args.quick else FULL)
              if w.name in args.workloads.split(",")]
    env = {"command": " ".join(["python benchmarks/layers.py", *sys.argv[1:]]),
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "python": platform.python_version(), "jax": jax.__version__,
           "torch": torch.__version__ if torch is not None else None,
           "load_average_at_start": os.getloadavg(), "repeats": repeats, "quick": args.quick}
    if torch is None:
        print("note: PyTorch is not installed: torch rows skipped")
    threads: dict = {}
    results = {}
    for w in chosen:
        print(f"{w.name}: m={w.m}, {w.steps} steps")
        results[w.name] = bench(w, repeats, threads)
    env["load_average_at_end"] = os.getloadavg()
    tgts = targets(results)
    report = markdown(env, results, tgts)
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layers.md").write_text(report)
    (out / "layers.json").write_text(json.dumps(
        {"quick": args.quick, "environment": env, "workloads": results, "targets": tgts},
        indent=1, default=str))
    print(f"wrote {out / 'layers.md'} and .json")


if __name__ == "__main__":
    main()
