"""Gradient checkers measured against each other: jaxnet's checker, `torch.autograd.gradcheck`
(default and ``fast_mode=True``) and `jax.test_util.check_grads`, on a corpus of wrong and
correct hand-written gradients (`benchmarks/checker_corpus.py`).

Every case is a hand-written backward pass at a point: 73 with one planted bug (every layer
family, the classic bugs, the loss's derivative, GAN losses) and 23 correct ones at hard
points (ReLU kinks with zero biases, max-pool ties, saturated sigmoids, a loss of 1e6, integer
inputs).  Each tool is used the way its users check such code:

* jaxnet: ``jn.check_gradients(net, params, X, Y)`` on the network (``jn.check_grad`` on a GAN
  loss), with its defaults.  Localisation: ``report.first_wrong_layer`` (the layer named) and
  the failing leaves of that layer's own report (``dx``, ``W``, ...).
* torch: ``torch.autograd.gradcheck`` in float64 with its defaults (eps 1e-6, atol 1e-5,
  rtol 1e-3), slow and ``fast_mode=True``, on a ``torch.autograd.Function`` whose forward is
  the loss (jaxnet's forward, called through numpy; one input tensor per parameter) and whose
  backward returns the hand-written gradient.  Localisation: the first input its error names
  (``with respect to input i``), mapped back to that parameter's layer and name.
* jax: ``jax.test_util.check_grads(f, (params,), order=1, modes=["rev"])`` on a
  ``jax.custom_vjp`` of the loss whose bwd is the hand-written gradient.  It compares one
  random directional derivative of all parameters together: it names nothing.

False pass: a wrong gradient the tool passes.  False failure: a correct gradient it fails (an
exception counts as a failure).  Seconds are wall time per case, compilation included.

    python benchmarks/checkers.py                       # benchmarks/results/checkers.{md,json}
    python benchmarks/checkers.py --quick --out /tmp/c  # a handful of cases: the smoke test

PyTorch is optional (the ``bench`` extra); without it the torch columns are skipped, with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/checkers.py` from anywhere
    sys.path.insert(0, str(ROOT))

import jaxnet as jn  # noqa: E402
from benchmarks.checker_corpus import CASES  # noqa: E402

try:
    import torch
    from torch.autograd.gradcheck import GradcheckError
except ImportError:  # the optional `bench` group
    torch = None

TOOLS = ("jaxnet", "torch gradcheck", "torch gradcheck fast", "jax check_grads")
QUICK = ("dense/transposed_weight", "gan/d_missing_1_over_m", "ok/relu_kinks_zero_biases")
COMMITTED = ROOT / "benchmarks" / "results"


# --- the tools ---------------------------------------------------------------------------------
def _leaf_index(prob):
    """`[(layer or None, name)]` for the leaves of `prob.params` in tree order."""
    if prob.net is not None:
        return [(l, k) for l, p in enumerate(prob.params) for k in sorted(p)]
    return [(None, k) for k in sorted(prob.params)]


def _bare(name: str) -> str:
    """``W (from dZ)`` -> ``W``; ``['real']`` -> ``real``."""
    name = name.split(" (")[0]
    m = re.fullmatch(r"\[['\"]?(.*?)['\"]?\]", name)
    return m.group(1) if m else name


def run_jaxnet(prob):
    if prob.net is not None:
        rep = jn.check_gradients(prob.net, prob.params, prob.X, prob.Y)
        layer = getattr(rep, "first_wrong_layer", None)
        named = rep.layers[layer].failing if layer is not None else rep.failing
    else:
        rep = jn.check_grad(prob.loss_fn, prob.grad_fn, prob.params, *prob.args)
        layer, named = None, rep.failing
    return {"verdict": "pass" if rep.ok else "fail", "layer": layer,
            "leaves": [_bare(n) for n in named], "message": str(rep).splitlines()[0][:300],
            "report": str(rep)}


class _Run:
    """The loss and the hand-written gradient as functions of a list of numpy leaves."""

    def __init__(self, prob):
        leaves, self.treedef = jax.tree.flatten(prob.params)
        self.loss = jax.jit(lambda xs: prob.loss(jax.tree.unflatten(self.treedef, xs)))
        self.grad = jax.jit(lambda xs: jax.tree.leaves(
            prob.grad(jax.tree.unflatten(self.treedef, xs))))
        self.leaves = [np.asarray(x, np.float64) for x in leaves]


if torch is not None:
    class _HandWritten(torch.autograd.Function):
        """forward: the loss; backward: the hand-written gradient (what a torch user writes)."""

        @staticmethod
        def forward(ctx, run, *xs):
            ctx.run = run
            ctx.save_for_backward(*xs)
            return torch.tensor(float(run.loss([x.detach().numpy() for x in xs])),
                                dtype=torch.float64)

        @staticmethod
        def backward(ctx, g):
            grads = ctx.run.grad([x.detach().numpy() for x in ctx.saved_tensors])
            return (None, *(g * torch.from_numpy(np.array(d, np.float64)) for d in grads))


def run_torch(prob, fast: bool):
    run = _Run(prob)
    xs = tuple(torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in run.leaves)
    try:
        torch.autograd.gradcheck(lambda *t: _HandWritten.apply(run, *t), xs, fast_mode=fast)
        return {"verdict": "pass", "layer": None, "leaves": [], "message": ""}
    except GradcheckError as err:
        msg = str(err)
        m = re.search(r"with respect to input (\d+)", msg)
        layer, leaf = _leaf_index(prob)[int(m.group(1))] if m else (None, None)
        return {"verdict": "fail", "layer": layer, "leaves": [leaf] if leaf else [],
                "message": msg.strip().splitlines()[0][:300]}


def run_jax(prob):
    from jax.test_util import check_grads

    @jax.custom_vjp
    def f(p):
        return prob.loss(p)

    f.defvjp(lambda p: (prob.loss(p), p),
             lambda p, g: (jax.tree.map(lambda d: g * d, prob.grad(p)),))
    try:  # jitted, as a user would (eager dispatch of the scans costs seconds)
        check_grads(jax.jit(f), (prob.params,), order=1, modes=["rev"])
        return {"verdict": "pass", "layer": None, "leaves": [], "message": ""}
    except AssertionError as err:
        return {"verdict": "fail", "layer": None, "leaves": [],
                "message": " ".join(str(err).split())[:300]}


RUNNERS = {"jaxnet": run_jaxnet, "torch gradcheck": lambda p: run_torch(p, False),
           "torch gradcheck fast": lambda p: run_torch(p, True), "jax check_grads": run_jax}


# --- judging -----------------------------------------------------------------------------------
def judge(case, prob, tool, out) -> dict:
    """Adds `correct` (the verdict is right), `layer_ok` and `leaf_ok` (localisation; None where
    the case has nothing to localise)."""
    v = out["verdict"]
    out["correct"] = (v != "pass") if case.wrong else (v == "pass")
    out["layer_ok"] = out["leaf_ok"] = None
    if not case.wrong:
        return out
    if prob.net is not None:
        # a layer case: the wrong layer named; a loss case: no layer blamed
        out["layer_ok"] = v != "pass" and out["layer"] == case.layer
        if tool == "jax check_grads" or (case.layer is None and tool != "jaxnet"):
            out["layer_ok"] = False  # it cannot say which layer (or that none is wrong)
    if case.leaves:
        out["leaf_ok"] = v != "pass" and bool(set(out["leaves"]) & set(case.leaves)) and (
            prob.net is None or out["layer"] == case.layer)
    return out


def run_case(case, tools) -> dict:
    row = {"name": case.name, "family": case.family, "wrong": case.wrong, "bug": case.bug,
           "layer": case.layer, "leaves": list(case.leaves), "classic": case.classic,
           "tools": {}}
    for tool in tools:
        prob = case.build()  # a fresh problem per tool: no compilation shared between tools
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = RUNNERS[tool](prob)
        except Exception as err:  # a tool that raises has failed the case, with its message
            out = {"verdict": "error", "layer": None, "leaves": [],
                   "message": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}",
                   "traceback": traceback.format_exc(limit=3)[-1500:]}
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = time.process_time() - c0
        out = judge(case, prob, tool, out)
        if out["correct"] and out["layer_ok"] is not False:
            out.pop("report", None)  # the full report is kept for the misses only
        row["tools"][tool] = out
    return row


# --- the report --------------------------------------------------------------------------------
def summary(rows, tools) -> list[dict]:
    out = []
    for tool in tools:
        wrong = [r for r in rows if r["wrong"]]
        ok = [r for r in rows if not r["wrong"]]
        layer = [r for r in wrong if r["tools"][tool]["layer_ok"] is not None
                 and r["layer"] is not None]
        loss = [r for r in wrong if r["tools"][tool]["layer_ok"] is not None
                and r["layer"] is None]
        leaf = [r for r in wrong if r["tools"][tool]["leaf_ok"] is not None]
        dx = [r for r in leaf if r["leaves"] == ["dx"]]
        secs = [r["tools"][tool]["seconds"] for r in rows]
        t = lambda rs, key, tool=tool: sum(bool(r["tools"][tool][key]) for r in rs)
        out.append({
            "tool": tool, "wrong": len(wrong), "correct": len(ok),
            "false_passes": sum(r["tools"][tool]["verdict"] == "pass" for r in wrong),
            "false_failures": sum(r["tools"][tool]["verdict"] != "pass" for r in ok),
            "errors": sum(r["tools"][tool]["verdict"] == "error" for r in rows),
            "layer_cases": len(layer), "layer_named": t(layer, "layer_ok"),
            "loss_cases": len(loss), "loss_named": t(loss, "layer_ok"),
            "leaf_cases": len(leaf), "leaf_named": t(leaf, "leaf_ok"),
            "dx_cases": len(dx), "dx_named": t(dx, "leaf_ok"),
            "seconds_total": sum(secs), "seconds_median": statistics.median(secs) if secs else 0,
            "false_pass_cases": [r["name"] for r in wrong
                                 if r["tools"][tool]["verdict"] == "pass"],
            "false_failure_cases": [r["name"] for r in ok
                                    if r["tools"][tool]["verdict"] != "pass"]})
    return out


LOCALISES = {"jaxnet": "layer (index and type) and its leaves (`dx`, `W`, ...); a loss bug as "
                       "no layer wrong",
             "torch gradcheck": "the first input index whose Jacobian mismatches",
             "torch gradcheck fast": "the first input index whose Jacobian mismatches",
             "jax check_grads": "nothing (one directional derivative of all inputs together)"}


def markdown(env, rows, summ, skipped) -> str:
    pct = lambda a, b: f"{a}/{b}" + (f" ({100 * a / b:.0f} %)" if b else "")
    lines = [f"# Gradient checkers on {len(rows)} hand-written gradients", "",
             f"`{env['command']}` — {env['cpu_count']} CPUs (load average "
             f"{env['load_average_at_start'][0]:.1f} at start, {env['load_average_at_end'][0]:.1f} "
             f"at end), jax {env['jax']}, torch {env['torch'] or 'not installed'}, "
             f"float64 throughout.", "",
             "| tool | false passes (of wrong) | false failures (of correct) | wrong layer named "
             "| bug in the loss: no layer blamed | wrong leaf named | of which `dx` | "
             "seconds: total (median per case) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summ:
        lines.append(
            f"| {s['tool']} | {s['false_passes']}/{s['wrong']} | "
            f"{s['false_failures']}/{s['correct']} | {pct(s['layer_named'], s['layer_cases'])} | "
            f"{pct(s['loss_named'], s['loss_cases'])} | {pct(s['leaf_named'], s['leaf_cases'])} "
            f"| {s['dx_named']}/{s['dx_cases']} | {s['seconds_total']:.0f} "
            f"({s['seconds_median']:.2f}) |")
    for tool in skipped:
        lines.append(f"| {tool} | skipped | | | | | | |")
    lines += ["", "What each tool names when it fails: " + "; ".join(
        f"{s['tool']}: {LOCALISES[s['tool']]}" for s in summ) + ".", ""]
    fams = list(dict.fromkeys(r["family"] for r in rows))
    tools = [s["tool"] for s in summ]
    lines += ["Wrong gradients detected, by family (detected/cases; jaxnet: also the wrong layer "
              "named):", "", "| family | " + " | ".join(tools) + " |",
              "|---" * (len(tools) + 1) + "|"]
    for fam in fams:
        rs = [r for r in rows if r["family"] == fam and r["wrong"]]
        if not rs:
            continue
        cells = []
        for tool in tools:
            det = sum(r["tools"][tool]["verdict"] != "pass" for r in rs)
            cell = f"{det}/{len(rs)}"
            if tool == "jaxnet":
                named = sum(bool(r["tools"][tool]["layer_ok"]) for r in rs
                            if r["tools"][tool]["layer_ok"] is not None)
                lc = sum(r["tools"][tool]["layer_ok"] is not None for r in rs)
                cell += f", layer {named}/{lc}" if lc else ""
            cells.append(cell)
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    lines += ["", "Misses (case: what the tool said):", ""]
    for s in summ:
        for kind in ("false_pass_cases", "false_failure_cases"):
            for name in s[kind]:
                r = next(r for r in rows if r["name"] == name)
                o = r["tools"][s["tool"]]
                what = "false pass" if kind == "false_pass_cases" else "false failure"
                lines.append(f"- {s['tool']}, {what}: `{name}` ({r['bug']})"
                             + (f" — {o['message'][:160]}" if o["message"] else ""))
    bad = [(r, o) for r in rows for t, o in r["tools"].items()
           if t == "jaxnet" and r["wrong"] and o["layer_ok"] is False]
    for r, o in bad:
        lines.append(f"- jaxnet, layer not named: `{r['name']}` (wrong layer {r['layer']}, "
                     f"named {o['layer']}, leaves {o['leaves']}) — {o['message'][:160]}")
    if not any(s["false_pass_cases"] or s["false_failure_cases"] for s in summ) and not bad:
        lines.append("- none")
    classic = {}
    for r in rows:
        if r["classic"]:
            classic.setdefault(r["classic"], []).append(r)
    lines += ["", "The classic bugs (detected by jaxnet / torch / torch fast / jax):", ""]
    for name, rs in classic.items():
        cells = [f"{sum(r['tools'][t]['verdict'] != 'pass' for r in rs)}/{len(rs)}"
                 for t in tools]
        lines.append(f"- {name}: " + " / ".join(cells))
    lines += ["", "Wrong layer named: the cases whose bug is in one layer's backward "
              "(`first_wrong_layer` for jaxnet; the layer of the first mismatching input for "
              "torch). Wrong leaf named: that layer's wrong gradient (`dx`, `W`, ...) or the "
              "wrong argument of a GAN loss; `dx` is never an input of the peers. Seconds "
              "include compilation (jaxnet compiles its checks per network; torch and jax "
              "compile the loss and the hand-written gradient once per case)."]
    if skipped:
        lines += ["", "PyTorch is not installed (`pip install -e .[bench]`): the torch columns "
                  "are skipped."]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {len(QUICK)} cases, written to --out (default: a "
                        "temporary folder, never benchmarks/results)")
    p.add_argument("--out", default=None,
                   help="folder for checkers.md/.json (default benchmarks/results)")
    p.add_argument("--cases", default=None,
                   help="only the cases whose name contains one of these comma-separated "
                        "strings (e.g. lstm,ok/); a filtered run is a smoke run as --quick")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"comma-separated subset of: {', '.join(TOOLS)}")
    args = p.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        p.error(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    partial = args.quick or args.cases is not None or set(tools) != set(TOOLS)
    if args.out is None:
        out = Path(tempfile.mkdtemp(prefix="jaxnet-checkers-")) if partial else COMMITTED
    else:
        out = Path(args.out)
    if partial and out.resolve() == COMMITTED.resolve():
        p.error("a quick or filtered run never writes over benchmarks/results: pass another "
                "--out")
    cases = [c for c in CASES if c.name in QUICK] if args.quick else list(CASES)
    if args.cases is not None:
        keys = [k for k in args.cases.split(",") if k]
        cases = [c for c in cases if any(k in c.name for k in keys)]
    if not cases:
        p.error(f"no case matches --cases {args.cases!r}")
    skipped = []
    if torch is None:
        skipped = [t for t in tools if t.startswith("torch")]
        tools = [t for t in tools if t not in skipped]
        print("note: PyTorch is not installed: torch columns skipped")
    jax.config.update("jax_enable_x64", True)  # the peers run in float64, as jaxnet's checker
    env = {"command": " ".join(["python benchmarks/checkers.py", *sys.argv[1:]]) if argv is None
           else " ".join(["python benchmarks/checkers.py", *argv]),
           "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "python": platform.python_version(), "jax": jax.__version__,
           "torch": torch.__version__ if torch is not None else None,
           "load_average_at_start": os.getloadavg(), "quick": args.quick, "partial": partial}
    rows = []
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    partial_file = out / "checkers.partial.json"  # the rows so far, should the run be stopped
    for i, case in enumerate(cases, 1):
        row = run_case(case, tools)
        rows.append(row)
        _atomic_write(partial_file, json.dumps({"environment": env, "tools": tools,
                                                "cases": rows}, indent=1, default=str))
        verdicts = ", ".join(f"{t} {o['verdict']}{'' if o['correct'] else ' (WRONG)'}"
                             for t, o in row["tools"].items())
        print(f"[{i}/{len(cases)} {time.perf_counter() - t0:.0f} s] {case.name}: {verdicts}",
              flush=True)
    env["load_average_at_end"] = os.getloadavg()
    env["seconds"] = time.perf_counter() - t0
    summ = summary(rows, tools)
    report = markdown(env, rows, summ, skipped)
    print(report)
    _atomic_write(out / "checkers.md", report)
    _atomic_write(out / "checkers.json", json.dumps(
        {"quick": args.quick, "partial": partial, "environment": env, "tools": tools,
         "skipped": skipped, "summary": summ, "cases": rows}, indent=1, default=str))
    partial_file.unlink()
    print(f"wrote {out / 'checkers.md'} and .json")


if __name__ == "__main__":
    main()
