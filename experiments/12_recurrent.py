"""Recurrent networks: gradients through time, the adding problem, and a character LSTM.

The document's vanishing-gradient note has a recurrent twin: a network unrolled over T time steps
is a T-layer network whose layers share their weights, so the gradient reaching an early input is
a product of T − t step Jacobians, and it shrinks (or grows) geometrically with the distance.
The LSTM's additive cell state `c_t = f ⊙ c_{t−1} + i ⊙ g` gives the gradient a path it can learn
to keep open (forget gate f ≈ 1).  Every gradient here comes from the layers' hand-written
backpropagation through time.

A. Gradients through time: ‖∂J/∂x_t‖ against T − t for a vanilla RNN (tanh) and an LSTM on
   adding-problem sequences, at initialisation and after training on the adding problem, plus
   an RNN whose recurrent weights are scaled by 2 (exploding gradients).  ∂J/∂x_t is the input
   gradient `dX (n_x, T, m)` of `Sequential.backward_chain` from dŶ = (Ŷ − Y)/m (½ squared
   error), cross-checked against `jax.grad` with respect to X.
B. The adding problem: each example is a sequence of T pairs (value uniform on [0, 1], marker);
   exactly two markers are set, one in each half; the target is the sum of the two marked
   values.  Predicting the mean scores the target's variance 1/6 (the baseline MSE).  An LSTM and
   an RNN of the same width are trained for each T (Adam, gradient clipping, minibatches,
   `gradients="manual"`); "solved" means test MSE ≤ 1/10 of the baseline and most test sequences
   within 0.04 of the target.
C. Characters: a character-level LSTM language model (`jaxnet.models.char_lstm`) on Python's own
   help texts (`jaxnet.text`), bits per character on the held-out text against the unigram and
   bigram baselines, and generated samples before and after training.
"""

import sys
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from common import (
    Claims,
    _atomic_write,
    fence,
    markdown_table,
    out_dir,
    parser,
    row_recorder,
    save_figure,
    write_results,
)

import jaxnet as jn
from jaxnet import models, text

NAME = "12_recurrent"
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
Q = args.quick
t_start = time.time()
rows, extra = [], {"quick": Q}

row = row_recorder(rows)


# --- B. the adding problem (trained first: part A looks at these networks) ------------------------
ADD_T = (8,) if Q else (10, 30, 100)
ADD = {"hidden": 16 if Q else 32, "steps": 150 if Q else 2000, "batch_size": 64,
       "learning_rate": 1e-2, "clip_norm": 1.0, "n_train": 2000 if Q else 20000,
       "n_test": 500 if Q else 2000}
VAL_EVERY = 20 if Q else 50
SOLVED_MSE, SOLVED_TOL = 0.1, 0.04  # MSE ≤ 0.1 × baseline, and a majority within 0.04
KINDS = {"RNN": jn.RNN, "LSTM": jn.LSTM}
extra["adding"] = {**ADD, "T": list(ADD_T), "optimizer": "adam", "gradients": "manual",
                   "markers": "one uniform in each half of the sequence"}


def adding_problem(key, T, m):
    """`(X (2, T, m), Y (1, m))`: row 0 of X holds values uniform on [0, 1], row 1 the markers
    (one at a position uniform in [0, T//2), one in [T//2, T)); Y is the sum of the marked values."""
    k_val, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_val, (T, m))
    first = jax.random.randint(k_first, (m,), 0, T // 2)
    second = jax.random.randint(k_second, (m,), T // 2, T)
    t = jnp.arange(T)[:, None]
    marks = ((t == first) | (t == second)).astype(values.dtype)
    return jnp.stack([values, marks]), jnp.sum(values * marks, axis=0)[None]


def adding_net(kind, T):
    return jn.Sequential((KINDS[kind](ADD["hidden"]), jn.Dense(1)), input_shape=(2, T))


adding, curves = {}, {}
for i, T in enumerate(ADD_T):
    k_train, k_test, k_init, k_batch = jax.random.split(jax.random.key(100 + i), 4)
    X, Y = adding_problem(k_train, T, ADD["n_train"])
    X_test, Y_test = adding_problem(k_test, T, ADD["n_test"])
    baseline = float(jnp.var(Y_test))  # MSE of the best constant, the test targets' mean
    for kind in KINDS:
        net = adding_net(kind, T)
        p0 = net.init(k_init)
        t0 = time.time()
        params, h = jn.fit(net, p0, X, Y, steps=ADD["steps"], learning_rate=ADD["learning_rate"],
                           optimizer="adam", gradients="manual", batch_size=ADD["batch_size"],
                           key=k_batch, clip_norm=ADD["clip_norm"], validation=(X_test, Y_test),
                           val_every=VAL_EVERY, progress=False)
        seconds = time.time() - t0
        err = np.asarray(net.forward(params, X_test) - Y_test)[0]
        mse, within = float(np.mean(err ** 2)), float(np.mean(np.abs(err) <= SOLVED_TOL))
        solved = mse <= SOLVED_MSE * baseline and within > 0.5
        adding[kind, T] = {"T": T, "network": kind, "test MSE": mse, "baseline MSE": baseline,
                           "MSE / baseline": mse / baseline, f"share within {SOLVED_TOL}": within,
                           "solved": "yes" if solved else "no", "train s": round(seconds, 1),
                           "net": net, "p0": p0, "params": params}
        curves[kind, T] = (np.append(h["val_step"], ADD["steps"]),  # J = ½ MSE; last: final
                           np.append(2 * np.asarray(h["val_cost"]), mse))
        print(f"adding T={T} {kind}: test MSE {mse:.4g} (baseline {baseline:.4g}), "
              f"{within:.1%} within {SOLVED_TOL}, {seconds:.0f} s")
        row("B adding", f"T={T} {kind}: test MSE (baseline {baseline:.3f})", mse)
        row("B adding", f"T={T} {kind}: share of test sequences within {SOLVED_TOL}", within)

add_columns = ["T", "network", "test MSE", "baseline MSE", "MSE / baseline",
               f"share within {SOLVED_TOL}", "solved", "train s"]
add_table = [{c: r[c] for c in add_columns} for r in adding.values()]
extra["adding_table"] = add_table
extra["adding_curves"] = {f"{k} T={T}": {"step": s.tolist(), "test_mse": v.tolist()}
                          for (k, T), (s, v) in curves.items()}
lstm_solved = [T for T in ADD_T if adding["LSTM", T]["solved"] == "yes"]
rnn_failed = [T for T in ADD_T if adding["RNN", T]["solved"] == "no"]
detail = "; ".join(f"T={T}: LSTM MSE {adding['LSTM', T]['test MSE']:.2g}, "
                   f"{adding['LSTM', T][f'share within {SOLVED_TOL}']:.0%} within {SOLVED_TOL} / RNN "
                   f"MSE {adding['RNN', T]['test MSE']:.2g}, "
                   f"{adding['RNN', T][f'share within {SOLVED_TOL}']:.0%}" for T in ADD_T)
if Q:
    T = ADD_T[0]
    claims.check(f"quick: the LSTM's test MSE on the adding problem at T={T} is below the "
                 "constant-prediction baseline", adding["LSTM", T]["test MSE"]
                 < adding["LSTM", T]["baseline MSE"], detail)
else:
    claims.check(f"the LSTM solves the adding problem at every T in {list(ADD_T)} (test MSE ≤ "
                 f"{SOLVED_MSE} × the baseline ≈ 1/6, a majority of test sequences within "
                 f"{SOLVED_TOL})", lstm_solved == list(ADD_T), detail)
    T = ADD_T[-1]
    claims.check(f"the vanilla RNN of the same width does not solve it at T={T}, where the "
                 "LSTM does", T in rnn_failed and T in lstm_solved,
                 f"RNN MSE / baseline {adding['RNN', T]['MSE / baseline']:.3g}, LSTM "
                 f"{adding['LSTM', T]['MSE / baseline']:.3g}; the RNN fails at T ∈ {rnn_failed}")

fig, axes = plt.subplots(1, len(ADD_T), figsize=(4.2 * len(ADD_T), 3.4), sharey=True,
                         squeeze=False)
axes = axes[0]
for ax, T in zip(axes, ADD_T):
    for kind, color in (("RNN", "tab:red"), ("LSTM", "tab:blue")):
        ax.plot(*curves[kind, T], color=color, label=kind)
    ax.axhline(adding["LSTM", T]["baseline MSE"], color="gray", ls="--", lw=1,
               label="baseline (predict the mean)")
    ax.set(title=f"adding problem, T = {T}", xlabel="step", yscale="log")
axes[0].set_ylabel("test MSE")
axes[0].legend(fontsize=8)
fig.suptitle(f"Learning curves (hidden {ADD['hidden']}, Adam α={ADD['learning_rate']}, "
             f"clip {ADD['clip_norm']}, batch {ADD['batch_size']})", y=1.04)
save_figure(fig, out / "adding_curves.png")


# --- A. gradients through time ---------------------------------------------------------------
T_GRAD = ADD_T[-1]
EXPLODE_GAIN = 2.0
X_g, Y_g = adding_problem(jax.random.key(7), T_GRAD, 200 if Q else 500)


def input_gradient(net, params, X, Y):
    """∂J/∂X `(n_x, T, m)` from the hand-written chain, J = mean ½(ŷ − y)²."""
    _, A, caches = net._forward(params, X)
    return net.backward_chain(params, caches, (A - Y) / X.shape[-1])[0]


def autodiff_input_gradient(net, params, X, Y):
    return jax.grad(lambda X: net._cost(params, X, Y))(X)


grad_runs = {}  # label -> (net, params)
for kind in KINDS:
    run = adding[kind, T_GRAD]
    grad_runs[f"{kind}, initialisation"] = (run["net"], run["p0"])
    grad_runs[f"{kind}, trained (T={T_GRAD})"] = (run["net"], run["params"])
rnn = adding["RNN", T_GRAD]
grad_runs[f"RNN, initialisation, Wh × {EXPLODE_GAIN:g}"] = (
    rnn["net"], [dict(rnn["p0"][0], Wh=EXPLODE_GAIN * rnn["p0"][0]["Wh"]), rnn["p0"][1]])

norms, ratios, worst_rel = {}, {}, 0.0
hand_jit = jax.jit(input_gradient, static_argnums=0)  # compiled once per network
auto_jit = jax.jit(autodiff_input_gradient, static_argnums=0)
for label, (net, params) in grad_runs.items():
    dX, ref = hand_jit(net, params, X_g, Y_g), auto_jit(net, params, X_g, Y_g)
    worst_rel = max(worst_rel, float(jnp.linalg.norm(dX - ref) / jnp.linalg.norm(ref)))
    g = np.asarray(jnp.sqrt(jnp.sum(dX ** 2, axis=(0, 2))))[::-1]  # index k = lag T − t
    norms[label] = g
    ratios[label] = float(g[-1] / g[0])
    row("A gradients", f"{label}: ‖∂J/∂x_1‖ / ‖∂J/∂x_T‖ (T={T_GRAD})", ratios[label])
extra["gradient_norms"] = {label: g.tolist() for label, g in norms.items()}
extra["gradient_check_worst_relative_error"] = worst_rel
claims.check("the hand-written ∂J/∂x_t (backward_chain's dX) equals jax.grad with respect to X "
             "(relative error ≤ 1e-5 in float32, every network of part A)", worst_rel <= 1e-5,
             f"worst {worst_rel:.2g} over {len(grad_runs)} networks")
r_rnn0, r_lstm0 = ratios["RNN, initialisation"], ratios["LSTM, initialisation"]
r_explode = ratios[f"RNN, initialisation, Wh × {EXPLODE_GAIN:g}"]
r_rnn1, r_lstm1 = ratios[f"RNN, trained (T={T_GRAD})"], ratios[f"LSTM, trained (T={T_GRAD})"]
e_lim = 2.0 if Q else 1e2
if not Q:  # over the few steps of a quick run the gradient has not yet vanished
    claims.check(f"vanishing: at initialisation the RNN's gradient at the first step is ≤ 1e-2 × "
                 f"the last step's (T={T_GRAD})", r_rnn0 <= 1e-2,
                 f"ratio {r_rnn0:.2g}; LSTM (forget bias 1) {r_lstm0:.2g}")
claims.check(f"exploding: with its recurrent weights × {EXPLODE_GAIN:g} the RNN's gradient at "
             f"the first step is ≥ {e_lim:g} × the last step's", r_explode >= e_lim,
             f"ratio {r_explode:.2g}")
if not Q:
    claims.check("after training, the gradient still reaches the first step of the LSTM (ratio "
                 "≥ 1e-2) and ≥ 100 × more of it than of the RNN's", r_lstm1 >= 1e-2
                 and r_lstm1 >= 100 * r_rnn1, f"LSTM {r_lstm1:.2g}, RNN {r_rnn1:.2g}")

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
style = {"RNN": "tab:red", "LSTM": "tab:blue"}
lags = np.arange(T_GRAD)
for ax, when in zip(axes, ("initialisation", "trained")):
    for label, g in norms.items():
        if when in label:
            ls = ":" if "×" in label else "-"
            color = "tab:orange" if "×" in label else style[label.split(",")[0]]
            zero = np.flatnonzero(g == 0)
            if zero.size:  # underflow to exactly 0: not drawn on the log scale, said in the legend
                label += f" (exactly 0 from T − t = {zero[0]})"
            ax.plot(lags, g / g[0], color=color, ls=ls, label=label)
    ax.set(yscale="log", xlabel="T − t (steps back from the output)",
           title=f"{'at initialisation' if when == 'initialisation' else 'after training'}"
                 f", adding problem T = {T_GRAD}")
    ax.legend(fontsize=8)
axes[0].set_ylabel("‖∂J/∂x_t‖ / ‖∂J/∂x_T‖")
fig.suptitle("Gradients through time, from the hand-written BPTT (log scale)")
save_figure(fig, out / "gradients_through_time.png")


# --- C. characters ---------------------------------------------------------------------------
CHAR = ({"steps": 40, "batch_size": 16, "T": 32, "hidden": 32, "d": 16, "learning_rate": 1e-2}
        if Q else
        {"steps": 1500, "batch_size": 32, "T": 64, "hidden": 128, "d": 32, "learning_rate": 3e-3})
CHAR.update(optimizer="adam", gradients="manual", clip_norm=1.0)
corpus = text.load_corpus()
T_c = CHAR["T"]
k_win, k_init, k_batch, k_before, k_after = jax.random.split(jax.random.key(12), 5)
# One random window per example the training will see (steps × batch: one epoch).
X_c, Y_c = text.windows(corpus.train, T_c, CHAR["steps"] * CHAR["batch_size"], key=k_win)
n_val = (len(corpus.val) - 1) // T_c
if Q:
    n_val = min(n_val, 64)
val_ids = corpus.val[:n_val * T_c + 1]  # the held-out text as consecutive windows
X_v = jnp.asarray(val_ids[:-1].reshape(n_val, T_c).T)
Y_v = jnp.asarray(val_ids[1:].reshape(n_val, T_c).T)
lm = models.char_lstm(corpus.V, T_c, CHAR["hidden"], CHAR["d"])
p0 = lm.init(k_init)
n_params = int(sum(a.size for a in jax.tree.leaves(p0)))
PROMPT, N_SAMPLE, TEMP = "The ", (40 if Q else 300), 0.8
before = text.sample(lm, p0, corpus, PROMPT, N_SAMPLE, key=k_before, temperature=TEMP)
bits0 = text.bits_per_char(float(lm.cost(p0, X_v, Y_v)))
t0 = time.time()
lm_params, h = jn.fit(lm, p0, X_c, Y_c, steps=CHAR["steps"], learning_rate=CHAR["learning_rate"],
                      optimizer="adam", gradients="manual", batch_size=CHAR["batch_size"],
                      key=k_batch, clip_norm=CHAR["clip_norm"], validation=(X_v, Y_v),
                      val_every=10 if Q else 100, progress=False)
char_seconds = time.time() - t0
bits = text.bits_per_char(float(lm.cost(lm_params, X_v, Y_v)))
after = text.sample(lm, lm_params, corpus, PROMPT, N_SAMPLE, key=k_after, temperature=TEMP)
uni = text.unigram_bits(corpus.train, corpus.val, corpus.V)
bi = text.bigram_bits(corpus.train, corpus.val, corpus.V)
print(f"char LSTM: {bits:.3f} bits/char (unigram {uni:.3f}, bigram {bi:.3f}), {char_seconds:.0f} s")
row("C characters", "unigram baseline: bits per character (held-out text)", uni)
row("C characters", "bigram baseline: bits per character (held-out text)", bi)
row("C characters", "char LSTM at initialisation: bits per character", bits0)
row("C characters", f"char LSTM after {CHAR['steps']} steps: bits per character", bits)
val_steps = [*np.asarray(h["val_step"]).tolist(), CHAR["steps"]]  # last: the final parameters
val_bits = [*(text.bits_per_char(float(c)) for c in h["val_cost"]), bits]
extra["char_lstm"] = {
    "val_bits_per_char": bits, "initial_val_bits_per_char": bits0,
    "unigram_bits": uni, "bigram_bits": bi,
    **CHAR, "params": n_params, "vocab": corpus.V,
    "train_windows": int(X_c.shape[1]), "val_windows": n_val,
    "validation": f"the held-out text ({len(corpus.val)} characters) cut into {n_val} "
                  f"consecutive non-overlapping windows of T={T_c}, every position scored",
    "train_seconds": round(char_seconds, 1), "checkpoint": "char_lstm.npz",
    "val_step": val_steps, "val_bits_curve": val_bits,
    "sample_prompt": PROMPT, "sample_temperature": TEMP,
    "sample_before": before, "sample_after": after,
}
jn.save(out / "char_lstm.npz", lm, lm_params)
if Q:
    claims.check("quick: training lowers the char LSTM's held-out bits per character",
                 bits < bits0, f"{bits0:.3f} → {bits:.3f}")
else:
    claims.check("the character LSTM beats the bigram baseline on held-out text (bits per "
                 "character)", bits < bi,
                 f"{bits:.3f} vs bigram {bi:.3f}, unigram {uni:.3f}; at initialisation "
                 f"{bits0:.3f} (log₂ V = {np.log2(corpus.V):.3f})")

fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(val_steps, val_bits, marker="o", ms=3, label="char LSTM (held-out)")
ax.axhline(uni, color="gray", ls="--", label=f"unigram {uni:.2f}")
ax.axhline(bi, color="black", ls="--", label=f"bigram {bi:.2f}")
ax.set(xlabel="step", ylabel="bits per character",
       title=f"Character LSTM on Python's help texts (hidden {CHAR['hidden']}, T={T_c})")
ax.legend()
save_figure(fig, out / "char_lstm.png")

# --- results ---------------------------------------------------------------------------------
write_results(out, NAME, rows, claims, extra=extra, columns=["part", "measure", "value"])
md = (out / "results.md").read_text()
md += f"\nB. The adding problem (hidden {ADD['hidden']}, {ADD['steps']} Adam steps of batch " \
      f"{ADD['batch_size']}, α = {ADD['learning_rate']}, clip {ADD['clip_norm']}):\n\n" \
      f"{markdown_table(add_table, add_columns)}\n"


md += (f"\nC. Samples from the character LSTM (prompt {PROMPT!r}, temperature {TEMP}), "
       f"before training:\n\n{fence(before)}\n\nafter {CHAR['steps']} steps "
       f"({n_params} parameters, {bits:.3f} bits per character):\n\n{fence(after)}\n")
md += f"\nRun time: {time.time() - t_start:.0f} s.\n"
_atomic_write(out / "results.md", md)
print(f"done in {time.time() - t_start:.0f} s")
sys.exit(claims.exit_code())
