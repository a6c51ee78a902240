"""The learning rate α ("Calculate Gradient Descent", "Update Parameters" of the document).

The document: "the learning rate determines the size of the steps taken during the optimization
process when updating the model's weights.  The learning rate directly influences how quickly or
slowly a model learns and converges to a minimum of the loss function."

This script trains the document's binary classifier (ReLU hidden layer, sigmoid output, binary
cross-entropy) on scikit-learn's breast-cancer data with plain full-batch gradient descent
`θ = θ − α dθ` from the same initial parameters for α in {0.001, 0.01, 0.1, 1, 10}, and plots the
cost curves on a log scale.  Too small an α learns slowly, a moderate α converges, and too large
an α overshoots until the cost overflows: `fit` then stops, warns, and returns the last
parameters whose cost was finite.
"""

import sys
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn

NAME = "07_learning_rate"
ALPHAS = (0.001, 0.01, 0.1, 1.0, 10.0)
SMALL, GOOD, LARGE = 0.001, 0.1, 10.0
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
steps = 300 if args.quick else 2000

ds = jn.data.load("breast_cancer", key=jax.random.key(0))
net = jn.MLP((ds.X_train.shape[0], 16, 1), hidden="relu", output="sigmoid")
params0 = net.init(jax.random.key(1))

rows, runs = [], {}
fig, (ax, ax_big) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
for alpha in ALPHAS:
    with warnings.catch_warnings(record=True) as caught:  # α = 10 diverges on purpose
        warnings.simplefilter("always", jn.DivergenceWarning)
        params, history = jn.fit(net, params0, ds.X_train, ds.Y_train, steps=steps,
                                 learning_rate=alpha, optimizer="sgd", progress=False)
    cost = history["cost"]
    finite = np.isfinite(cost)
    runs[alpha] = dict(params=params, history=history, warned=any(
        issubclass(w.category, jn.DivergenceWarning) for w in caught))
    rows.append({"α": alpha, "stopped": history["stopped"], "steps run": history["steps_run"],
                 "J at step 0": float(cost[0]), "final J (train)": history["final_cost"],
                 "steps where J rose": int(np.sum(np.diff(cost[finite]) > 1e-6)),
                 "test accuracy": jn.accuracy(net, params, ds.X_test, ds.Y_test)})
    ax.plot(np.flatnonzero(finite), cost[finite], label=f"α = {alpha:g}")
    if history["stopped"] == "diverged":  # the right panel shows the whole blow-up
        last = np.flatnonzero(finite)[-1]
        ax_big.plot(np.flatnonzero(finite), cost[finite], "o-", color="C4", ms=3)
        ax_big.annotate(f"step {last}: J = {cost[last]:.1e};\nstep {last + 1}: J = inf, fit stops",
                        (last, cost[last]), textcoords="offset points", xytext=(-150, -45),
                        fontsize=8, arrowprops={"arrowstyle": "->"})
ax.set(yscale="log", ylim=(1e-4, 10), xlabel="gradient-descent step",
       ylabel="cost J (binary cross-entropy, training set)",
       title=f"breast_cancer, MLP {net.sizes}, full-batch GD")
ax.legend()
ax_big.set(yscale="log", xlabel="step", title=f"α = {LARGE:g}: the cost overflows")
save_figure(fig, out / "learning_rate.png")

by = {r["α"]: r for r in rows}
ratio = by[SMALL]["final J (train)"] / by[GOOD]["final J (train)"]
claims.check(f"too small α learns slowly: after {steps} steps J(α={SMALL:g}) > 5 × J(α={GOOD:g})",
             ratio > 5, f"{by[SMALL]['final J (train)']:.4g} vs {by[GOOD]['final J (train)']:.4g}, "
             f"ratio {ratio:.1f}")
g = by[GOOD]
claims.check(f"a good α converges: with α={GOOD:g} J never rises (by more than 1e-6) and ends "
             "below 0.1, with test accuracy ≥ 0.95",
             g["stopped"] == "steps" and g["steps where J rose"] == 0
             and g["final J (train)"] < 0.1 and g["test accuracy"] >= 0.95,
             f"final J {g['final J (train)']:.4g}, test accuracy {g['test accuracy']:.3f}")
stable = [a for a in ALPHAS if a < LARGE]
finals = [by[a]["final J (train)"] for a in stable]
claims.check(f"up to the point of divergence, a larger α learns faster: final J falls as α grows "
             f"over {stable}", all(x > y for x, y in zip(finals, finals[1:])),
             ", ".join(f"{x:.3g}" for x in finals))
big = runs[LARGE]
leaves_finite = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(big["params"]))
claims.check(f"too large an α diverges: with α={LARGE:g} fit stops early with "
             "stopped == 'diverged', warns, and returns finite parameters (the last with finite J)",
             big["history"]["stopped"] == "diverged" and big["history"]["steps_run"] < steps
             and big["warned"] and leaves_finite and np.isfinite(big["history"]["final_cost"]),
             f"stopped after {big['history']['steps_run']} steps; returned J "
             f"{big['history']['final_cost']:.3g}")

write_results(out, NAME, rows, claims, extra={"steps": steps, "sizes": net.sizes})
sys.exit(claims.exit_code())
