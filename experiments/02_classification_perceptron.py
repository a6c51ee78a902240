"""Experiment 2: "Classification With Perceptron" (ann-in-depth.md).

The document: a perceptron with a sigmoid output, ŷ = σ(w1·x1 + w2·x2 + b), trained on binary
cross-entropy; the gradient simplifies to dL/dw = −(y − ŷ)·x, the same update as regression.

This script trains it on two Gaussian blobs that a line separates, with the document's
per-sample rule (`jn.perceptron_learning(rule="sigmoid")`) and with full-batch gradient descent
(`jn.fit` on `jn.Perceptron(2)`), and draws the decision boundaries. Then it trains the
perceptron on scikit-learn's breast cancer data and compares its test accuracy with
scikit-learn's LogisticRegression (the same model, fitted by a second-order solver with an L2
penalty) on the same split.
"""

import sys

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results
from sklearn.linear_model import LogisticRegression

import jaxnet as jn

args = parser(__doc__).parse_args()
out = out_dir(args, "02_classification_perceptron")
claims = Claims()
m = 100 if args.quick else 400
steps = 300 if args.quick else 3000
rows = []

# --- 1. separable blobs -------------------------------------------------------------------
X, Y = jn.data.blobs(key=jax.random.key(0), m=m)
X_te, Y_te = jn.data.blobs(key=jax.random.key(1), m=m)
net = jn.Perceptron(2, task="classification")
rule = jn.perceptron_learning(X, Y, rule="sigmoid", learning_rate=0.1, max_epochs=50, tol=1e-4)
gd_params, gd_hist = jn.fit(net, net.init(jax.random.key(2)), X, Y, steps=steps,
                            learning_rate=0.5, progress=False)
fitted = {"per-sample rule": rule.params, "full-batch GD": gd_params}
for name, params in fitted.items():
    rows.append({"data": "blobs", "method": name,
                 "train accuracy": jn.accuracy(net, params, X, Y),
                 "test accuracy": jn.accuracy(net, params, X_te, Y_te),
                 "train cost": float(net.cost(params, X, Y))})
    claims.check(f"blobs: the perceptron ({name}) separates the training data (accuracy = 1)",
                 rows[-1]["train accuracy"] == 1.0, f"{rows[-1]['train accuracy']:.4f}")

# --- 2. breast cancer against LogisticRegression ----------------------------------------
ds = jn.data.load("breast_cancer", key=jax.random.key(0))
bnet = jn.Perceptron(ds.X_train.shape[0], task="classification")
b_params, b_hist = jn.fit(bnet, bnet.init(jax.random.key(3)), ds.X_train, ds.Y_train,
                          steps=steps, learning_rate=0.1, progress=False)
b_rule = jn.perceptron_learning(ds.X_train, ds.Y_train, rule="sigmoid", learning_rate=0.01,
                                max_epochs=20 if args.quick else 100, tol=1e-4)
# scikit-learn wants examples as rows: transpose the column layout.
Xtr, Xte = np.asarray(ds.X_train).T, np.asarray(ds.X_test).T
ytr, yte = np.asarray(ds.labels_train), np.asarray(ds.labels_test)
logreg = LogisticRegression(max_iter=5000).fit(Xtr, ytr)
acc = {"full-batch GD": jn.accuracy(bnet, b_params, ds.X_test, ds.Y_test),
       "per-sample rule": jn.accuracy(bnet, b_rule.params, ds.X_test, ds.Y_test),
       "sklearn LogisticRegression": float(logreg.score(Xte, yte))}
train_acc = {"full-batch GD": jn.accuracy(bnet, b_params, ds.X_train, ds.Y_train),
             "per-sample rule": jn.accuracy(bnet, b_rule.params, ds.X_train, ds.Y_train),
             "sklearn LogisticRegression": float(logreg.score(Xtr, ytr))}
for name in acc:
    params = {"full-batch GD": b_params, "per-sample rule": b_rule.params}.get(name)
    rows.append({"data": "breast_cancer", "method": name, "train accuracy": train_acc[name],
                 "test accuracy": acc[name],
                 "train cost": float(bnet.cost(params, ds.X_train, ds.Y_train)) if params else ""})
ref = acc["sklearn LogisticRegression"]
for name in ("full-batch GD", "per-sample rule"):
    claims.check(f"breast cancer: the perceptron ({name}) reaches LogisticRegression's test "
                 "accuracy within 0.03", acc[name] >= ref - 0.03,
                 f"{acc[name]:.4f} vs {ref:.4f} on {ds.X_test.shape[1]} test examples")

# --- figure: decision boundaries on the blobs, cost curve on breast cancer -------------
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
ax = axes[0]
Xn, yn = np.asarray(X), np.asarray(Y)[0]
lo, hi = Xn.min(axis=1) - 0.5, Xn.max(axis=1) + 0.5
g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
grid = np.vstack([g1.ravel(), g2.ravel()]).astype(np.float32)
P = np.asarray(net.forward(gd_params, grid)).reshape(g1.shape)
ax.contourf(g1, g2, P, levels=20, cmap="RdBu_r", alpha=0.35)
ax.scatter(Xn[0], Xn[1], c=yn, cmap="RdBu_r", s=10, edgecolors="k", linewidths=0.3)
for (name, params), style in zip(fitted.items(), ("--", "-")):
    w, b = np.asarray(params[0]["W"])[0], float(params[0]["b"][0, 0])
    ax.plot(g1[0], -(w[0] * g1[0] + b) / w[1], "k" + style, label=f"{name}: w·x + b = 0")
ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="x1", ylabel="x2",
       title="Blobs: decision boundary (shading: σ(w·x + b), GD)")
ax.legend(fontsize=8, loc="lower right")
ax = axes[1]
ax.semilogy(b_hist["cost"], label="breast cancer (full-batch GD, α = 0.1)")
ax.semilogy(gd_hist["cost"], label="blobs (full-batch GD, α = 0.5)")
ax.set(xlabel="step", ylabel="cost J (binary cross-entropy)", title="Cost curves")
ax.legend(fontsize=8)
save_figure(fig, out / "classification.png")

write_results(out, "02_classification_perceptron", rows, claims,
              columns=["data", "method", "train accuracy", "test accuracy", "train cost"],
              extra={"quick": args.quick, "blobs_rule_epochs": rule.epochs,
                     "breast_cancer_rule_epochs": b_rule.epochs})
sys.exit(claims.exit_code())
