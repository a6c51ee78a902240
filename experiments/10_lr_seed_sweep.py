"""A learning-rate × seed sweep in ONE `jaxnet.fit_many` call (the "Scale" issue).

The document's α "determines the size of the steps": too small and the network learns slowly, too
large and gradient descent overshoots.  Here 12 learning rates × 16 seeds = 192 networks of the
document's two-layer shape (2 → 8 ReLU → 1 sigmoid, binary cross-entropy) train on two moons in
one compiled loop; the heat map shows the final cost of each.  The script checks that the loop
compiled once for all 192, that a member equals `jaxnet.fit` on that member alone, that some α
in the middle learns for every seed, and that the largest α overshoots (the stable
cross-entropy keeps its cost finite, so it rarely turns into a NaN: it just stops learning).

    python experiments/10_lr_seed_sweep.py
"""

import sys

import jax
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn
from jaxnet import training

args = parser(__doc__).parse_args()
out = out_dir(args, "10_lr_seed_sweep")
claims = Claims()

n_lr, n_seed, steps = (6, 4, 200) if args.quick else (12, 16, 2000)
alphas = np.geomspace(1e-3, 300.0, n_lr)
X, Y = jn.data.two_moons(key=jax.random.key(0), m=512, noise=0.15)
net = jn.MLP((2, 8, 1), hidden="relu", output="sigmoid")

# Model k = (learning rate i, seed j) with k = i * n_seed + j.
keys = jax.random.split(jax.random.key(1), n_seed)
seeds = jax.vmap(net.init)(keys)
batch = jax.tree.map(lambda a: np.tile(a, (n_lr,) + (1,) * (a.ndim - 1)), seeds)
lr = np.repeat(alphas, n_seed)

traces = training.TRACE_COUNT[0]
with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
    __import__("warnings").simplefilter("ignore", jn.DivergenceWarning)
    params, history = jn.fit_many(net, batch, X, Y, steps=steps, learning_rate=lr, progress=False)
compiles = training.TRACE_COUNT[0] - traces
final = history["final_cost"].reshape(n_lr, n_seed)
stopped = history["stopped"].reshape(n_lr, n_seed)
accuracy = np.array([jn.accuracy(net, jax.tree.map(lambda a, k=k: a[k], params), X, Y)
                     for k in range(n_lr * n_seed)]).reshape(n_lr, n_seed)

claims.check("one compilation trains all models", compiles == 1,
             f"{n_lr * n_seed} models, {compiles} trace(s)")
k = (n_lr // 2) * n_seed + 1
alone, h_alone = jn.fit(net, jax.tree.map(lambda a: a[k], batch), X, Y, steps=steps,
                        learning_rate=float(lr[k]), progress=False)
gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b[k]))))
          for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(params)))
scale = max(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(alone))
claims.check("a member of fit_many equals fit on that member alone (float32: "
             "max |Δθ| ≤ 1e-4 · max |θ|)", gap <= 1e-4 * scale,
             f"model {k} (α = {lr[k]:.3g}): max |Δθ| = {gap:.1e}, max |θ| = {scale:.3g}")
best = int(np.argmin(np.median(final, axis=1)))
claims.check("some α learns for every seed (accuracy ≥ 0.85)",
             accuracy[best].min() >= (0.8 if args.quick else 0.85),
             f"α = {alphas[best]:.3g}: accuracy {accuracy[best].min():.3f} … {accuracy[best].max():.3f}")
claims.check("the largest α overshoots: median final cost > 10 × the best α's",
             np.median(final[-1]) > 10 * np.median(final[best]),
             f"α = {alphas[-1]:.3g}: {np.median(final[-1]):.3g} vs {np.median(final[best]):.3g}; "
             f"{int((stopped[-1] == 'diverged').sum())} of {n_seed} diverged to a non-finite cost")
claims.check("every returned parameter is finite (diverged models keep their last finite ones)",
             all(bool(np.isfinite(np.asarray(a)).all()) for a in jax.tree.leaves(params)))
claims.check("the smallest α learns slowly (median final cost > 2 × the best α's)",
             np.median(final[0]) > 2 * np.median(final[best]),
             f"{np.median(final[0]):.3f} vs {np.median(final[best]):.3f}")

fig, ax = plt.subplots(figsize=(7, 4.5))
shown = np.where(stopped == "diverged", np.nan, final)
im = ax.imshow(np.log10(shown), aspect="auto", cmap="viridis", origin="lower")
for i, j in zip(*np.nonzero(stopped == "diverged")):
    ax.text(j, i, "×", ha="center", va="center", color="red", fontsize=8)
ax.set_yticks(range(n_lr), [f"{a:.2g}" for a in alphas])
ax.set_xlabel("seed")
ax.set_ylabel("learning rate α")
ax.set_title(f"final cost of {n_lr * n_seed} networks, one fit_many call (× = diverged)")
fig.colorbar(im, ax=ax, label="log10 final cost")
save_figure(fig, out / "sweep.png")

rows = [{"α": float(a), "median final cost": float(np.median(final[i])),
         "min accuracy": float(accuracy[i].min()), "max accuracy": float(accuracy[i].max()),
         "diverged": int((stopped[i] == "diverged").sum())} for i, a in enumerate(alphas)]
write_results(out, "10_lr_seed_sweep", rows, claims, extra={"steps": steps, "seeds": n_seed})
sys.exit(claims.exit_code())
