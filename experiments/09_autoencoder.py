"""Autoencoders ("Types of Neural Networks" of the document).

The document: "Autoencoders are a type of artificial neural network used for unsupervised
learning. They aim to learn a compressed representation of data by training the network to
ignore signal noise and capture essential data features."

This script trains a feed-forward autoencoder 64 → 32 → k → 32 → 64 on scikit-learn's 8×8 digits
(pixels scaled to [0, 1]) with targets Y = X, ½ squared error and a sigmoid output, by gradient
descent on the hand-written backpropagation (`gradients="manual"`).  Its test reconstruction
error is compared with PCA's using the same k components fitted on the same training split (PCA is
the best *linear* k-dimensional code; MSE = mean over test images of Σ_pixels (x − x̂)²), a grid shows originals beside reconstructions, and
`jn.check_gradients` verifies the autoencoder's gradients three ways.
"""

import sys

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results
from sklearn.decomposition import PCA

import jaxnet as jn

NAME = "09_autoencoder"
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
CODES = (4,) if args.quick else (2, 4, 8)
steps = 300 if args.quick else 3000

ds = jn.data.load("digits", key=jax.random.key(0), standardize=False)
X_train, X_test = ds.X_train / 16.0, ds.X_test / 16.0  # pixel values 0..16 -> [0, 1]


def reconstruction_mse(X, R):
    """Mean over images of Σ_pixels (x − x̂)², the measure `jn.mse` reports."""
    return float(np.mean(np.sum((np.asarray(X) - np.asarray(R)) ** 2, axis=0)))


rows, recon = [], {}
for k in CODES:
    net = jn.MLP((64, 32, k, 32, 64), hidden=("relu", "identity", "relu"), output="sigmoid",
                 loss="squared_error")  # a linear code layer; Y = X
    params, history = jn.fit(net, net.init(jax.random.key(1)), X_train, X_train, steps=steps,
                             learning_rate=0.01, optimizer="adam", gradients="manual",
                             progress=False)
    pca = PCA(n_components=k).fit(np.asarray(X_train).T)  # sklearn wants examples as rows
    R_pca = pca.inverse_transform(pca.transform(np.asarray(X_test).T)).T
    recon[k] = (net.forward(params, X_test), R_pca)
    ae, lin = jn.mse(net, params, X_test, X_test), reconstruction_mse(X_test, R_pca)
    rows.append({"code units k": k, "steps": history["steps_run"],
                 "train J at step 0": float(history["cost"][0]), "train J final": history["final_cost"],
                 "AE test MSE": ae, "PCA test MSE": lin, "AE / PCA": ae / lin})

for r in rows:
    bound = 1.5 if args.quick else 1.0  # --quick trains 300 steps only: a looser bound
    claims.check(f"k = {r['code units k']}: the autoencoder's test reconstruction MSE is below "
                 + (f"{bound:g} × " if bound != 1 else "") + "PCA's with the same k",
                 r["AE / PCA"] < bound,
                 f"{r['AE test MSE']:.3f} vs {r['PCA test MSE']:.3f} (ratio {r['AE / PCA']:.2f})")
    claims.check(f"k = {r['code units k']}: training by the hand-written backprop lowers J at "
                 "least 3-fold", r["train J final"] * 3 <= r["train J at step 0"],
                 f"{r['train J at step 0']:.3f} -> {r['train J final']:.4f}")

# The gradients of the last trained autoencoder (net, params), three ways, on a few test images.
X_check = X_test[:, : 8 if args.quick else 32]
report = jn.check_gradients(net, params, X_check, X_check, entries=16 if args.quick else None)
print(report)
n_fd = sum(leaf.fd_entries for leaf in report.leaves)
claims.check(f"check_gradients passes for the k = {k} autoencoder: manual~autodiff ≤ 1e-10, "
             "autodiff~FD ≤ 1e-6, Taylor order ≥ 1.5", report.ok,
             f"worst {max(leaf.manual_vs_autodiff for leaf in report.leaves):.1e} / "
             f"{max(leaf.autodiff_vs_fd for leaf in report.leaves):.1e} over {n_fd} FD entries, "
             f"Taylor order {report.taylor.order:.2f}")

write_results(out, NAME, rows, claims, extra={
    "gradient_check": str(report), "steps": steps, "pixels_scaled_by": 1 / 16})

# Grid: one test image of each digit, then the autoencoder's and PCA's reconstruction per k.
labels = np.asarray(ds.labels_test)
cols = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
panels = [("original", np.asarray(X_test))]
for k in CODES:
    panels += [(f"AE k={k}", np.asarray(recon[k][0])), (f"PCA k={k}", np.asarray(recon[k][1]))]
fig, axes = plt.subplots(len(panels), 10, figsize=(7, 0.75 * len(panels) + 0.4))
for row, (title, images) in zip(axes, panels):
    for ax, j in zip(row, cols):
        ax.imshow(np.clip(images[:, j], 0, 1).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
fig.suptitle("digits (test split): originals and reconstructions", fontsize=10)
fig.subplots_adjust(wspace=0.05, hspace=0.1, top=0.92)
save_figure(fig, out / "reconstructions.png")
sys.exit(claims.exit_code())
