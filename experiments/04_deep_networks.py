"""Experiment 4: the three-layer and the L-layer network ("Multi Layer NN", ann-in-depth.md).

The document generalizes its two-layer network to L layers, Z^[l] = W^[l] A^[l-1] + b^[l],
A^[l] = g(Z^[l]), ReLU in the hidden layers and softmax at the output for several classes.

This script trains such networks (1, 2 and 4 ReLU hidden layers of 32, 64 and 128 units; the
"three-layer network" is the one with 2 hidden layers) on scikit-learn's digits (8×8 images,
10 classes) and tabulates test accuracy over depth and width, next to scikit-learn's
MLPClassifier run on exactly the same split. The best jaxnet network must reach the baseline's
test accuracy (it is picked on the test split, as the baseline's size is: a comparison of the
two families, not an unbiased estimate). Then a softmax network on the wine data set (3 classes)
against the same baseline.
"""

import sys
import warnings

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

import jaxnet as jn

args = parser(__doc__).parse_args()
out = out_dir(args, "04_deep_networks")
claims = Claims()
depths, widths = ((2,), (64,)) if args.quick else ((1, 2, 4), (32, 64, 128))
steps = 400 if args.quick else 2000


def baseline(ds):
    """MLPClassifier with one hidden layer of 64 units; scikit-learn wants examples as rows."""
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=0)
    # One BLAS thread: on 2 busy cores its thread pool oversubscribes and runs ~20x slower.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.asarray(ds.X_train).T, np.asarray(ds.labels_train))
    return (float(clf.score(np.asarray(ds.X_train).T, np.asarray(ds.labels_train))),
            float(clf.score(np.asarray(ds.X_test).T, np.asarray(ds.labels_test))))


def train(ds, hidden, steps, lr, batch_size):
    """An MLP with ReLU hidden layers `hidden` and a softmax output, trained with Adam."""
    n_x, n_y = ds.X_train.shape[0], ds.Y_train.shape[0]
    net = jn.MLP((n_x, *hidden, n_y), hidden="relu", output="softmax")
    params, hist = jn.fit(net, net.init(jax.random.key(0)), ds.X_train, ds.Y_train, steps=steps,
                          learning_rate=lr, optimizer="adam", batch_size=batch_size,
                          key=jax.random.key(1), validation=(ds.X_test, ds.Y_test), progress=False)
    return net, {"network": "-".join(map(str, net.sizes)), "hidden layers": len(hidden),
                 "width": hidden[0] if hidden else 0,
                 "parameters": sum(int(p.size) for p in jax.tree.leaves(params)),
                 "train accuracy": jn.accuracy(net, params, ds.X_train, ds.Y_train),
                 "test accuracy": jn.accuracy(net, params, ds.X_test, ds.Y_test)}, hist


# --- 1. digits: a grid over depth and width -------------------------------------------------
digits = jn.data.load("digits", key=jax.random.key(0))
rows, curves = [], {}
for depth in depths:
    for width in widths:
        net, row, hist = train(digits, (width,) * depth, steps, 1e-3, batch_size=128)
        rows.append({"data": "digits", **row})
        curves[row["network"]] = hist
sk_train, sk_test = baseline(digits)
rows.append({"data": "digits", "network": "sklearn MLPClassifier 64-64-10", "hidden layers": 1,
             "width": 64, "train accuracy": sk_train, "test accuracy": sk_test})
best = max(rows[:-1], key=lambda r: r["test accuracy"])
margin = 0.02 if args.quick else 0.0  # --quick trains 1 network for 400 steps
claims.check("digits: the best jaxnet network reaches MLPClassifier's test accuracy"
             + (f" within {margin} (--quick; exact at full size)" if margin else ""),
             best["test accuracy"] >= sk_test - margin,
             f"{best['network']}: {best['test accuracy']:.4f} vs {sk_test:.4f} "
             f"on {digits.X_test.shape[1]} test images")
three = [r for r in rows[:-1] if r["hidden layers"] == 2]
claims.check("digits: every three-layer network (2 hidden layers) reaches ≥ 0.95 test accuracy",
             all(r["test accuracy"] >= 0.95 for r in three),
             ", ".join(f"{r['network']}: {r['test accuracy']:.4f}" for r in three))

# --- 2. wine: softmax over 3 classes --------------------------------------------------------
wine = jn.data.load("wine", key=jax.random.key(0))
_, row, _ = train(wine, (16,), 100 if args.quick else 500, 1e-2, batch_size=None)
w_train, w_test = baseline(wine)
rows += [{"data": "wine", **row},
         {"data": "wine", "network": "sklearn MLPClassifier 13-64-3", "hidden layers": 1,
          "width": 64, "train accuracy": w_train, "test accuracy": w_test}]
claims.check("wine: the softmax network reaches ≥ 0.95 test accuracy and MLPClassifier's",
             row["test accuracy"] >= max(0.95, w_test),
             f"{row['test accuracy']:.4f} vs {w_test:.4f} on {wine.X_test.shape[1]} test examples")

# --- figure: accuracy over depth × width, and test accuracy during training ----------------
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
grid = np.array([[next(r["test accuracy"] for r in rows if r["data"] == "digits"
                       and r["hidden layers"] == d and r["width"] == w) for w in widths]
                 for d in depths])
im = axes[0].imshow(grid, cmap="viridis", vmin=grid.min() - 0.01, vmax=max(grid.max(), sk_test))
for (i, j), acc in np.ndenumerate(grid):
    axes[0].text(j, i, f"{acc:.3f}", ha="center", va="center", color="w")
axes[0].set(xticks=range(len(widths)), xticklabels=widths, yticks=range(len(depths)),
            yticklabels=depths, xlabel="width (units per hidden layer)", ylabel="hidden layers",
            title=f"digits: test accuracy (MLPClassifier: {sk_test:.3f})")
fig.colorbar(im, ax=axes[0])
for name, hist in curves.items():
    axes[1].plot(hist["val_step"], hist["val_accuracy"], label=name, lw=1)
axes[1].axhline(sk_test, color="k", ls="--", lw=1, label="MLPClassifier (final)")
axes[1].set(xlabel="step (Adam, minibatch 128)", ylabel="test accuracy", ylim=(0.85, 1.0),
            title="digits: test accuracy during training")
axes[1].legend(fontsize=7, ncol=2)
save_figure(fig, out / "depth_width.png")

write_results(out, "04_deep_networks", rows, claims,
              columns=["data", "network", "hidden layers", "width", "parameters",
                       "train accuracy", "test accuracy"],
              extra={"quick": args.quick, "steps": steps, "best": best["network"]})
sys.exit(claims.exit_code())
