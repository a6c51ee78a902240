"""Experiment 1: "Regression With Perceptron" (ann-in-depth.md).

The document: a perceptron with a linear activation is a linear regressor,
ŷ = w1·x1 + w2·x2 + b, trained on the loss ½(y − ŷ)² by gradient descent,
w ← w − α(−x(y − ŷ)), b ← b − α(−(y − ŷ)).

This script fits synthetic data with known w1, w2, b twice, with the document's per-sample rule
(`jn.perceptron_learning(rule="linear")`) and with full-batch gradient descent (`jn.fit` on
`jn.Perceptron(2, task="regression")`), and compares both to the closed-form least-squares
solution (numpy.linalg.lstsq). Then it does the same on scikit-learn's diabetes data and
compares the test R² of the perceptron with that of least squares.
"""

import sys

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn

args = parser(__doc__).parse_args()
out = out_dir(args, "01_regression_perceptron")
claims = Claims()
W_TRUE, B_TRUE = (2.0, -3.0), 0.5
m = 100 if args.quick else 500
steps = 300 if args.quick else 2000


def lstsq(X, Y):
    """Closed-form least squares with a bias column: `(w (n_x,), b)` in float64."""
    A = np.vstack([np.asarray(X, np.float64), np.ones((1, X.shape[1]))]).T
    theta = np.linalg.lstsq(A, np.asarray(Y, np.float64)[0], rcond=None)[0]
    return theta[:-1], theta[-1]


def as_wb(params):
    return np.asarray(params[0]["W"], np.float64)[0], float(params[0]["b"][0, 0])


def r2_numpy(w, b, X, Y):
    Y = np.asarray(Y, np.float64)[0]
    res = Y - (w @ np.asarray(X, np.float64) + b)
    return 1.0 - np.sum(res**2) / np.sum((Y - Y.mean()) ** 2)


def run_length(result):
    """How long the per-sample rule ran: epochs, and whether the weights stabilized."""
    return f"{result.epochs} epochs" + ("" if result.converged else " (not converged)")


# --- 1. synthetic data with known parameters --------------------------------------------
X, Y = jn.data.linear_regression(key=jax.random.key(0), m=m, w=W_TRUE, b=B_TRUE, noise=0.1)
net = jn.Perceptron(2, task="regression")
rule = jn.perceptron_learning(X, Y, rule="linear", learning_rate=0.01, max_epochs=200, tol=1e-6)
gd_params, gd_hist = jn.fit(net, net.init(jax.random.key(1)), X, Y, steps=steps,
                            learning_rate=0.1, progress=False)
w_ls, b_ls = lstsq(X, Y)
fits = {"true parameters": (np.array(W_TRUE), B_TRUE), "lstsq": (w_ls, b_ls),
        "per-sample rule": as_wb(rule.params), "full-batch GD": as_wb(gd_params)}
ran = {"per-sample rule": run_length(rule), "full-batch GD": f"{steps} steps"}
dist, rows = {}, []
for name, (w, b) in fits.items():
    dist[name] = float(np.max(np.abs(np.r_[w, b] - np.r_[w_ls, b_ls])))
    rows.append({"data": "synthetic", "method": name, "w": str(np.round(w, 4)), "b": round(b, 4),
                 "max abs(θ − θ_lstsq)": dist[name], "train R²": r2_numpy(w, b, X, Y),
                 "epochs / steps": ran.get(name, "")})

claims.check("least squares recovers the true w1, w2, b within 0.05 (noise σ = 0.1)",
             dist["true parameters"] < 0.05, f"max error {dist['true parameters']:.2e}")
claims.check("the document's per-sample rule (α = 0.01) converges to within 0.01 of lstsq",
             rule.converged and dist["per-sample rule"] < 0.01,
             f"{rule.epochs} epochs, max |Δθ| = {dist['per-sample rule']:.2e}")
claims.check("full-batch gradient descent (α = 0.1) matches lstsq within 1e-4 (float32)",
             dist["full-batch GD"] < 1e-4, f"max |Δθ| = {dist['full-batch GD']:.2e}")

# --- 2. diabetes: test R² side by side ----------------------------------------------------
ds = jn.data.load("diabetes", key=jax.random.key(0))
dnet = jn.Perceptron(ds.X_train.shape[0], task="regression")
d_rule = jn.perceptron_learning(ds.X_train, ds.Y_train, rule="linear", learning_rate=0.002,
                                max_epochs=100 if args.quick else 400, tol=1e-4)
d_params, d_hist = jn.fit(dnet, dnet.init(jax.random.key(1)), ds.X_train, ds.Y_train,
                          steps=steps, learning_rate=0.1, progress=False)
w_d, b_d = lstsq(ds.X_train, ds.Y_train)
fits = {"lstsq": (w_d, b_d), "per-sample rule": as_wb(d_rule.params),
        "full-batch GD": as_wb(d_params)}
ran = {"per-sample rule": run_length(d_rule), "full-batch GD": f"{steps} steps"}
r2 = {name: r2_numpy(w, b, ds.X_test, ds.Y_test) for name, (w, b) in fits.items()}
for name, (w, b) in fits.items():
    rows.append({"data": "diabetes", "method": name, "train R²": r2_numpy(w, b, ds.X_train,
                                                                           ds.Y_train),
                 "test R²": r2[name], "epochs / steps": ran.get(name, "")})
for name, tol in (("full-batch GD", 0.01), ("per-sample rule", 0.03)):
    claims.check(f"diabetes: the perceptron's test R² ({name}) is within {tol} of lstsq's",
                 abs(r2[name] - r2["lstsq"]) < tol, f"{r2[name]:.4f} vs {r2['lstsq']:.4f}")

# --- figure: cost curves, fitted plane, predictions against targets ------------------------
fig = plt.figure(figsize=(14, 3.8))
fig.subplots_adjust(wspace=0.4)
ax = fig.add_subplot(1, 3, 1)
ax.semilogy(gd_hist["cost"], label="synthetic, full-batch GD (per step)")
ax.semilogy(d_hist["cost"], label="diabetes, full-batch GD (per step)")
ax.semilogy(np.arange(1, rule.epochs + 1), rule.history["loss"], "o-", ms=3,
            label="synthetic, per-sample rule (per epoch)")
ax.set(xlabel="step / epoch", ylabel="cost J = mean ½(y − ŷ)²", title="Cost curves")
ax.legend(fontsize=8)
ax = fig.add_subplot(1, 3, 2, projection="3d")
Xn, Yn = np.asarray(X), np.asarray(Y)[0]
ax.scatter(Xn[0], Xn[1], Yn, s=2, c="k", alpha=0.5)
g = np.linspace(-3, 3, 10)
G1, G2 = np.meshgrid(g, g)
w, b = as_wb(gd_params)
ax.plot_surface(G1, G2, w[0] * G1 + w[1] * G2 + b, alpha=0.35, color="tab:blue")
ax.view_init(elev=20, azim=140)  # look at the plane's face, not along its edge
# The vertical axis is y; a z label would run into the next panel.
ax.set(xlabel="x1", ylabel="x2", title="synthetic (x1, x2, y) and the fitted plane\n"
       f"ŷ = {w[0]:.3f}·x1 {w[1]:+.3f}·x2 {b:+.3f}")
ax = fig.add_subplot(1, 3, 3)
Yt = np.asarray(ds.Y_test)[0]
ax.scatter(Yt, np.asarray(jn.predict(dnet, d_params, ds.X_test))[0], s=10,
           label=f"perceptron (GD), R² = {r2['full-batch GD']:.3f}")
ax.scatter(Yt, w_d @ np.asarray(ds.X_test, np.float64) + b_d, s=10, marker="x",
           label=f"lstsq, R² = {r2['lstsq']:.3f}")
ax.plot([Yt.min(), Yt.max()], [Yt.min(), Yt.max()], "k--", lw=1)
ax.set(xlabel="target (test)", ylabel="prediction", title="Diabetes: predictions vs targets")
ax.legend(fontsize=8)
save_figure(fig, out / "regression.png")

write_results(out, "01_regression_perceptron", rows, claims,
              columns=["data", "method", "w", "b", "max abs(θ − θ_lstsq)", "train R²", "test R²",
                       "epochs / steps"],
              extra={"quick": args.quick})
sys.exit(claims.exit_code())
