"""Experiment 5: the vanishing gradient problem (the note in "Neural Network", ann-in-depth.md).

The document: "the common activation function in the hidden layer is ReLU, we do not use sigmoid
or Tanh, because if we do so, we will face a vanishing gradient problem": the gradients get
smaller layer by layer on the way back, the lower layers' weights barely change, and gradient
descent does not converge.

This script builds deep networks (15 layers, 14 hidden layers of 32 units; 10 with --quick) with
sigmoid, tanh and ReLU hidden layers and Glorot, He or small normal (0.01·N(0, 1)) weights, and
computes ‖dW^[l]‖ for every layer with the hand-written backward pass (`net.backprop`, checked
against `jax.grad`, in float64 so that tiny gradients do not underflow) on two moons. It plots them
on a log scale, reports ‖dW^[1]‖ / ‖dW^[L]‖ for each, then trains each network with the
document's plain gradient descent for a fixed budget and reports which ones learn.
"""

import math
import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn

args = parser(__doc__).parse_args()
out = out_dir(args, "05_vanishing_gradients")
claims = Claims()
L, width = (10 if args.quick else 15), 32
steps = 600 if args.quick else 2000
CONFIGS = [("sigmoid", "glorot"), ("sigmoid", "normal"), ("tanh", "glorot"),
           ("tanh", "normal"), ("relu", "he"), ("relu", "normal")]
X, Y = jn.data.two_moons(key=jax.random.key(0), m=512, noise=0.1)
RATIO = "ratio ‖dW[1]‖/‖dW[L]‖"
LN2 = math.log(2.0)  # the cost of ŷ = ½ everywhere: a network that has learned nothing

rows, norms, costs = [], {}, {}
for hidden, init in CONFIGS:
    name = f"{hidden} + {init}"
    net = jn.MLP((2, *(width,) * (L - 1), 1), hidden=hidden, output="sigmoid")
    params = net.init(jax.random.key(0), method=init)
    # --- per-layer gradient norms at initialization, hand-written and autodiff, in float64
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        X64, Y64 = X.astype(jnp.float64), Y.astype(jnp.float64)
        manual, auto = net.backprop(p64, X64, Y64), jax.grad(net.cost)(p64, X64, Y64)
        norms[name] = np.array([float(jnp.linalg.norm(g["W"])) for g in manual])
        rel = max(float(jnp.linalg.norm(g["W"] - a["W"]) / jnp.linalg.norm(a["W"]))
                  for g, a in zip(manual, auto))
    # --- then the document's gradient descent for a fixed budget, in float32
    trained, hist = jn.fit(net, params, X, Y, steps=steps, learning_rate=0.1, progress=False)
    costs[name] = hist["cost"]
    acc = jn.accuracy(net, trained, X, Y)
    rows.append({"hidden": hidden, "init": init, "‖dW[1]‖": norms[name][0],
                 "‖dW[L]‖": norms[name][-1], RATIO: norms[name][0] / norms[name][-1],
                 "backprop vs jax.grad": rel, "initial cost": float(hist["cost"][0]),
                 "final cost": hist["final_cost"], "train accuracy": acc,
                 "learns": "yes" if acc >= 0.95 else "no"})
by = {f"{r['hidden']} + {r['init']}": r for r in rows}

claims.check("backprop agrees with jax.grad on every layer of every network (rel. diff < 1e-10, "
             "float64)", all(r["backprop vs jax.grad"] < 1e-10 for r in rows),
             f"max {max(r['backprop vs jax.grad'] for r in rows):.1e}")
for name in ("sigmoid + glorot", "sigmoid + normal"):
    claims.check(f"{name}: the gradient vanishes towards the input (‖dW[1]‖/‖dW[L]‖ < 1e-3)",
                 by[name][RATIO] < 1e-3, f"ratio {by[name][RATIO]:.1e}")
r = by["relu + he"]
claims.check("relu + he: the gradient keeps its size (0.1 ≤ ratio ≤ 10, ‖dW[1]‖ > 1e-3)",
             0.1 <= r[RATIO] <= 10 and r["‖dW[1]‖"] > 1e-3,
             f"ratio {r[RATIO]:.2f}, ‖dW[1]‖ = {r['‖dW[1]‖']:.1e}")
r = by["tanh + glorot"]
claims.check("tanh + glorot (nuance to the document): at this depth the ratio stays O(1) "
             "(0.1 ≤ ratio ≤ 10), since tanh'(0) = 1 and Glorot keeps the scale",
             0.1 <= r[RATIO] <= 10, f"ratio {r[RATIO]:.2f}")
small = {n: norms[n].max() for n in ("tanh + normal", "relu + normal")}
claims.check("small normal init (0.01): every layer's gradient is tiny (all ‖dW[l]‖ < 1e-8), "
             "whatever the ratio", all(v < 1e-8 for v in small.values()),
             ", ".join(f"{n}: max {v:.1e}" for n, v in small.items()))
learners = {n for n, r in by.items() if r["learns"] == "yes"}
claims.check(f"training ({steps} steps of gradient descent, α = 0.1): relu + he and tanh + glorot "
             "reach ≥ 0.95 train accuracy; the others stay at the cost of a constant ½ "
             "(within 1% of ln 2)",
             learners == {"relu + he", "tanh + glorot"} and all(
                 abs(r["final cost"] - LN2) < 0.01 * LN2 for n, r in by.items() if n not in learners),
             "learn: " + ", ".join(sorted(learners)))

# --- figure: gradient norms per layer (log scale) and the cost curves -----------------------
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
for (name, n), style in zip(norms.items(), ("o-", "o--", "s-", "s--", "^-", "^--")):
    axes[0].semilogy(np.arange(1, L + 1), n, style, ms=4, label=name)
axes[0].set(xlabel="layer l (1 = next to the input)", ylabel="‖dW[l]‖ (Frobenius, at init)",
            title=f"Gradient norm per layer, {L}-layer networks", xticks=range(1, L + 1))
axes[0].legend(fontsize=8)
for (name, c), style in zip(costs.items(), ("-", "--", "-", "--", "-", "--")):
    axes[1].semilogy(c, style, label=f"{name} ({by[name]['train accuracy']:.0%})")
axes[1].axhline(LN2, color="k", lw=0.8, ls=":", label="ln 2 (ŷ = ½)")
axes[1].set(xlabel="step (gradient descent, α = 0.1)", ylabel="cost J",
            title="Training: which ones learn (train accuracy)")
axes[1].legend(fontsize=8)
save_figure(fig, out / "vanishing_gradients.png")

write_results(out, "05_vanishing_gradients", rows, claims,
              columns=["hidden", "init", "‖dW[1]‖", "‖dW[L]‖", RATIO,
                       "backprop vs jax.grad", "initial cost", "final cost", "train accuracy",
                       "learns"],
              extra={"quick": args.quick, "layers": L, "width": width, "steps": steps,
                     "norms": {k: v.tolist() for k, v in norms.items()}})
sys.exit(claims.exit_code())
