"""Experiment 11: convolutional networks ("Convolutional Neural Networks", ann-in-depth.md).

The document: CNNs are "specifically designed for processing grid-like data, such as images";
their convolutional layers "apply filters (kernels) to local regions of the input" and pooling
layers "reduce the spatial dimensions", so the network learns local features that it reuses at
every position.

This script trains `jaxnet.models.digits_cnn()` (1×8×8 → conv 3×3 16 same ReLU → max-pool 2 →
conv 3×3 32 same ReLU → max-pool 2 → flatten → dense 10 softmax) on scikit-learn's digits, on the
same split as experiment 4 (`jn.data.load("digits", key=jax.random.key(0))`), by Adam on the
hand-written backward (`gradients="manual"`), after checking its gradients three ways.  Beside it,
experiment 4's best MLP (64-128-10, ReLU) is trained with the same optimizer, learning rate,
minibatch and number of steps, from the same seeds.  Both are fed two ways: experiment 4's
per-pixel standardization, and the plain image (pixels / 16).  A convolution shares its weights
over every position, so it wants one scale for all pixels: per-pixel standardization blows the
almost-always-blank border pixels up to values of 20-50 on the few test images where they are
inked, which the shared filters then read as strong strokes.

Figures: the 16 learned first-layer 3×3 filters and the feature maps of one test digit after each
convolution; the CNN's confusion matrix on the test split; hand-set kernels (Sobel edges, a blur)
applied by jaxnet's `Conv2D` to a photo from `sklearn.datasets.load_sample_images()`; and the
saliency |∂J/∂X| of a few test digits, the input gradient that the chained hand-written
backward passes return (`Sequential.backward_chain`), checked against `jax.grad` with respect to X:
in float32 from the same output gradient dZ^[L] (the chain itself), and end to end through J in
float64 (in float32, A − Y of a digit classified with p ≈ 1 keeps only a few correct digits, in
the hand-written shortcut and in autodiff alike, so the end-to-end float32 comparison measures
that rounding, ~1e-5, rather than the chain).
"""

import sys
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results
from scipy.signal import correlate2d
from sklearn.datasets import load_sample_images
from sklearn.metrics import confusion_matrix

import jaxnet as jn
from jaxnet.models import digits_cnn

NAME = "11_convolution"
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
SEEDS = (0,) if args.quick else (0, 1, 2)
STEPS = 150 if args.quick else 2000  # experiment 4's budget
LR, BATCH = 1e-3, 128  # experiment 4's Adam settings

# --- data: experiment 4's split, fed two ways ----------------------------------------------
std = jn.data.load("digits", key=jax.random.key(0))  # per-pixel standardized (experiment 4)
raw = jn.data.load("digits", key=jax.random.key(0), standardize=False)
assert np.array_equal(np.asarray(std.labels_test), np.asarray(raw.labels_test))  # same split
INPUTS = {"pixels / 16": (raw.X_train / 16.0, raw.X_test / 16.0),
          "per-pixel standardized": (std.X_train, std.X_test)}
Y_train, Y_test = raw.Y_train, raw.Y_test
image = lambda X: X.reshape(1, 8, 8, X.shape[-1])  # (64, m) -> (C, H, W, m), row-major pixels

cnn = digits_cnn()
mlp = jn.MLP((64, 128, 10), hidden="relu", output="softmax")
print(cnn.describe())

# --- 1. the CNN's hand-written gradients, three ways, before training ---------------------
X_img = image(INPUTS["pixels / 16"][0])
n_check = 4 if args.quick else 8
X_c, Y_c = X_img[..., :n_check], Y_train[:, :n_check]
params0 = cnn.init(jax.random.key(0))
entries = 8 if args.quick else 24
try:
    report = jn.check_gradients(cnn, params0, X_c, Y_c, entries=entries, key=jax.random.key(2))
    checker = "jn.check_gradients"
except (AttributeError, TypeError):  # a check_gradients that takes only MLPs: the generic checker
    report = jn.check_grad(lambda p, X, Y: cnn._cost(p, X, Y),
                           lambda p, X, Y: cnn._backprop(p, X, Y),
                           params0, X_c, Y_c, entries=entries, key=jax.random.key(2))
    checker = "jn.check_grad"
print(report)
n_fd = sum(leaf.fd_entries for leaf in report.leaves)
taylor = f", Taylor order {report.taylor.order:.2f}" if report.taylor is not None else ""
claims.check("the CNN's hand-written backward passes the three-way gradient check "
             "(manual~autodiff ≤ 1e-10, autodiff~FD ≤ 1e-6, Taylor) before training",
             report.ok,
             f"{checker} on {n_check} training images, {len(report.leaves)} leaves, {n_fd} FD "
             f"entries: worst {max(leaf.manual_vs_autodiff for leaf in report.leaves):.1e} / "
             f"{max(leaf.autodiff_vs_fd for leaf in report.leaves):.1e}{taylor}")


# --- 2. CNN vs MLP: same optimizer, learning rate, minibatch, steps and seeds -------------
def train(net, X_train, X_test, seed):
    t, cpu = time.perf_counter(), time.process_time()
    params, _ = jn.fit(net, net.init(jax.random.key(seed)), X_train, Y_train, steps=STEPS,
                       learning_rate=LR, optimizer="adam", batch_size=BATCH,
                       key=jax.random.key(100 + seed), gradients="manual", progress=False)
    jax.block_until_ready(params)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return params, (seconds, cpu), jn.accuracy(net, params, X_train, Y_train), \
        jn.accuracy(net, params, X_test, Y_test)


rows, trained = [], {}
for model, net, shape in (("CNN (digits_cnn)", cnn, image), ("MLP 64-128-10", mlp, lambda X: X)):
    for feed, (X_tr, X_te) in INPUTS.items():
        runs = [train(net, shape(X_tr), shape(X_te), s) for s in SEEDS]
        trained[model, feed] = runs[0][0]
        tests = [r[3] for r in runs]
        rows.append({"model": model, "input": feed, "parameters": net.n_params(),
                     "steps": STEPS, "seeds": len(SEEDS),
                     "train acc": float(np.mean([r[2] for r in runs])),
                     "test acc": float(np.mean(tests)),
                     "test acc min–max": f"{min(tests):.4f}–{max(tests):.4f}",
                     "train time (s)": float(np.median([r[1][0] for r in runs])),
                     "train CPU (s)": float(np.median([r[1][1] for r in runs]))})
        print(rows[-1], flush=True)

best_cnn = next(r for r in rows if r["model"].startswith("CNN") and r["input"] == "pixels / 16")
best_mlp = max((r for r in rows if r["model"].startswith("MLP")), key=lambda r: r["test acc"])
margin = 0.05 if args.quick else 0.0
n_test = Y_test.shape[1]
claims.check(
    "digits: the CNN's test accuracy beats the best MLP's (mean over the same seeds; same "
    "split, optimizer, learning rate, minibatch and steps)"
    + (f" — within {margin} (--quick: {STEPS} steps, 1 seed; strict at full size)"
       if margin else ""),
    best_cnn["test acc"] > best_mlp["test acc"] - margin,
    f"CNN on pixels / 16: {best_cnn['test acc']:.4f} ({best_cnn['test acc min–max']}) vs "
    f"MLP on {best_mlp['input']}: {best_mlp['test acc']:.4f} ({best_mlp['test acc min–max']}); "
    f"{n_test} test images, {len(SEEDS)} seed(s) × {STEPS} Adam steps")

# --- 3. saliency: the input gradient from the chained hand-written backward ---------------
params = trained["CNN (digits_cnn)", "pixels / 16"]
X_te_img = image(INPUTS["pixels / 16"][1])
labels = np.asarray(raw.labels_test)
picks = [int(np.flatnonzero(labels == d)[0]) for d in (0, 2, 3, 5, 7, 8)]
X_s, Y_s = X_te_img[..., picks], Y_test[:, picks]


def relative_error(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(a), jnp.linalg.norm(b)))


@jax.jit
def input_gradient(params, X, Y):
    """`(∂J/∂X, dZ^[L])`: the layers' hand-written backward passes chained down to the input
    from the output shortcut `dZ^[L] = (A − Y) / m` (softmax + cross-entropy)."""
    Z, A, caches = cnn._forward(params, X)
    kind, d = cnn._output_grad(Z, A, Y)
    return cnn.backward_chain(params, caches, d, from_logits=kind == "dZ")[0], d


def autodiff_input_gradients(params, X, Y, dZ):
    """jax.grad with respect to X of J, and of <dZ, Z^[L](X)> (the same output cotangent)."""
    through_J = jax.jit(jax.grad(lambda X: cnn._cost(params, X, Y)))(X)
    same_dZ = jax.jit(jax.grad(lambda X: jnp.sum(dZ * cnn._forward(params, X)[0])))(X)
    return through_J, same_dZ


# float32: the chain itself, compared from the same dZ^[L]; and end to end, through J
dX32, dZ32 = input_gradient(params, X_s, Y_s)
via_J32, via_dZ32 = autodiff_input_gradients(params, X_s, Y_s, dZ32)
rel_chain, rel_J32 = relative_error(dX32, via_dZ32), relative_error(dX32, via_J32)
# float64: end to end (in float32, 1 − p of a confidently classified digit keeps few digits)
with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    X64, Y64 = jnp.asarray(X_s, jnp.float64), jnp.asarray(Y_s, jnp.float64)
    dX, dZ64 = input_gradient(p64, X64, Y64)
    via_J64, _ = autodiff_input_gradients(p64, X64, Y64, dZ64)
    rel_J64 = relative_error(dX, via_J64)
    rel_32_vs_64 = (relative_error(dX32, dX), relative_error(via_J32, dX))
    dX = np.asarray(dX)
claims.check("saliency: the hand-written backward chained from dZ^[L] down to X "
             "(backward_chain) equals jax.grad with respect to X of <dZ^[L], Z^[L](X)> "
             "(relative error ≤ 1e-5, float32)", rel_chain <= 1e-5 and dX.shape == X_s.shape,
             f"relative error {rel_chain:.1e} over {len(picks)} trained-CNN test digits, "
             f"shape {dX.shape}")
claims.check("saliency: ∂J/∂X from backward_chain equals jax.grad(J) with respect to X, end to "
             "end (relative error ≤ 1e-10, float64)", rel_J64 <= 1e-10,
             f"relative error {rel_J64:.1e}; in float32 end to end {rel_J32:.1e}, where both "
             f"are {rel_32_vs_64[0]:.1e} / {rel_32_vs_64[1]:.1e} from float64: the rounding of "
             "A − Y for digits classified with p ≈ 1")

# --- 4. hand-set kernels on a photo, by jaxnet's Conv2D --------------------------------------
photo = load_sample_images().images[0].astype(np.float64).mean(axis=2) / 255.0  # 427×640 gray
f = 4
Hc, Wc = photo.shape[0] // f * f, photo.shape[1] // f * f
gray = photo[:Hc, :Wc].reshape(Hc // f, f, Wc // f, f).mean(axis=(1, 3))  # 106×160 block means
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)  # responds to vertical edges
kernels = {"Sobel x (∂/∂x: vertical edges)": sobel_x,
           "Sobel y (∂/∂y: horizontal edges)": sobel_x.T,
           "blur (binomial 3×3)": np.outer([1, 2, 1], [1, 2, 1]) / 16.0}
conv = jn.Conv2D(3, 3, padding="same")
hand = {"W": jnp.asarray(np.stack(list(kernels.values()))[:, None], jnp.float32),  # (3, 1, 3, 3)
        "b": jnp.zeros((3, 1, 1, 1), jnp.float32)}
filtered, _ = conv.forward(hand, jnp.asarray(gray, jnp.float32)[None, :, :, None])
filtered = np.asarray(filtered[..., 0])  # (3, H, W)
ref = np.stack([correlate2d(gray, k, mode="same") for k in kernels.values()])
err = float(np.abs(filtered - ref).max())
claims.check("Conv2D with hand-set kernels computes scipy's 2-D cross-correlation on a photo "
             "(same padding; max error ≤ 1e-5)", err <= 1e-5,
             f"max |Conv2D − scipy.signal.correlate2d| = {err:.1e} on a {gray.shape[0]}×"
             f"{gray.shape[1]} image, 3 kernels")

write_results(out, NAME, rows, claims,
              columns=["model", "input", "parameters", "steps", "seeds", "train acc",
                       "test acc", "test acc min–max", "train time (s)", "train CPU (s)"],
              extra={"quick": args.quick, "steps": STEPS, "seeds": list(SEEDS),
                     "learning_rate": LR, "batch_size": BATCH, "gradient_check": str(report),
                     "saliency_rel_error": rel_chain,
                     "saliency_rel_error_float32_end_to_end": rel_J32,
                     "saliency_rel_error_float64": rel_J64, "conv_vs_scipy_max_error": err})

# --- figure 1: filters and feature maps -----------------------------------------------------
digit = picks[-1]  # an 8
_, caches = cnn.forward_cache(params, X_te_img[..., digit:digit + 1])
maps1, maps2 = np.asarray(caches[0]["A"][..., 0]), np.asarray(caches[2]["A"][..., 0])
W1 = np.asarray(params[0]["W"][:, 0])  # (16, 3, 3)
fig = plt.figure(figsize=(13, 8), layout="constrained")
sub = fig.subfigures(1, 3, width_ratios=[1, 1.3, 1.6])
ax = sub[0].subplots(4, 4)
lim = np.abs(W1).max()
for k, a in enumerate(ax.flat):
    a.imshow(W1[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
    a.set_axis_off()
    a.set_title(f"filter {k}", fontsize=8)
sub[0].suptitle("conv 1: the 16 learned 3×3 filters\n(red +, blue −)")
ax = sub[1].subplots(5, 4)
ax[0, 0].imshow(np.asarray(X_te_img[0, :, :, digit]), cmap="gray_r")
ax[0, 0].set_title("input", fontsize=8)
for a in ax[0, 1:]:
    a.set_visible(False)
for k, a in enumerate(ax[1:].flat):
    a.imshow(maps1[k], cmap="magma")
    a.set_title(f"map {k}", fontsize=8)
for a in ax.flat:
    a.set_axis_off()
sub[1].suptitle(f"a test '{labels[digit]}': after conv 1 + ReLU\n(16 maps, 8×8)")
ax = sub[2].subplots(4, 8)
for k, a in enumerate(ax.flat):
    a.imshow(maps2[k], cmap="magma")
    a.set_axis_off()
    a.set_title(f"{k}", fontsize=7)
sub[2].suptitle("after pool + conv 2 + ReLU\n(32 maps, 4×4)")
save_figure(fig, out / "filters_feature_maps.png")

# --- figure 2: confusion matrix ---------------------------------------------------------------
pred = np.asarray(jnp.argmax(cnn.forward(params, X_te_img), axis=0))
cm = confusion_matrix(labels, pred, labels=range(10))
fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
ax.imshow(cm, cmap="Blues")
for (i, j), n in np.ndenumerate(cm):
    if n:
        ax.text(j, i, n, ha="center", va="center", color="w" if i == j else "k", fontsize=8)
ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
       title=f"CNN (seed 0) on the {n_test} test digits: accuracy {np.mean(pred == labels):.4f}")
save_figure(fig, out / "confusion_matrix.png")

# --- figure 3: hand-set kernels on a photo; saliency of test digits ---------------------------
fig = plt.figure(figsize=(14, 7.5), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
ax = top.subplots(1, 5)
panels = [("grayscale photo (block-mean ÷4)", gray, "gray")]
panels += [(name, img, "RdBu_r" if name.startswith("Sobel") else "gray")
           for name, img in zip(kernels, filtered)]
panels.append(("edge magnitude √(Gx² + Gy²)", np.hypot(filtered[0], filtered[1]), "gray_r"))
panels = [(title, img[1:-1, 1:-1], cmap) for title, img, cmap in panels]  # the zero-padded rim
for a, (title, img, cmap) in zip(ax, panels):
    lim = np.abs(img).max()
    a.imshow(img, cmap=cmap, **({"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}))
    a.set_title(title, fontsize=9)
    a.set_axis_off()
top.suptitle("hand-set kernels, W (3, 1, 3, 3), applied by jaxnet's Conv2D(3, 3, padding='same') "
             "(outer row/column, where the zero padding makes false edges, not shown)")
ax = bottom.subplots(2, len(picks))
sal = np.abs(dX[0])  # (8, 8, n), float64
for j, i in enumerate(picks):
    ax[0, j].imshow(np.asarray(X_s[0, :, :, j]), cmap="gray_r")
    ax[0, j].set_title(f"test digit '{labels[i]}'", fontsize=9)
    ax[1, j].imshow(sal[..., j] / sal[..., j].max(), cmap="hot")
    ax[1, j].set_title("|∂J/∂X| (scaled)", fontsize=9)
for a in ax.flat:
    a.set_axis_off()
bottom.suptitle(f"saliency of the trained CNN: |∂J/∂X| from backward_chain, in float64 "
                f"(= jax.grad wrt X, rel. error {rel_J64:.0e})")
save_figure(fig, out / "kernels_saliency.png")

sys.exit(claims.exit_code())
