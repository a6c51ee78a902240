"""Transformers: a character transformer against the LSTM, its attention, and a copying task.

The document's sequence models end with attention: instead of carrying the past in a state
vector, every position *looks up* the earlier positions it needs, with weights
`W = softmax(Kᵀ Q / √d_k)` computed from the data.  This script trains
`jaxnet.models.char_transformer` (token embedding + learned positions → causal pre-LayerNorm
transformer blocks → LayerNorm → softmax) with the hand-written backward passes of
`jaxnet/layers/attention.py`, `embedding.py` and `normalization.py`.

A. Characters, transformer vs LSTM at the same budget: experiment 12's character LSTM
   (embedding 32 → LSTM 128, 99 015 parameters) and a transformer of about the same size are
   trained on the same windows of Python's help texts (`jaxnet.text`), in the same minibatch
   order, for the same 1500 Adam steps (α = 3e-3, batch 32, T = 64, clip 1, hand-written
   gradients); held-out bits per character every 100 steps over all 726 consecutive windows of
   the validation text; samples before and after training.  The transformer's gradients are
   checked three ways (`jn.check_gradients`, float64) on a tiny copy before training.
B. Attention patterns: every head's weights `(T_k, T_q)` on a line of the held-out text, read
   from the forward caches of the trained blocks and recomputed with
   `jn.layers.scaled_dot_product_attention` from the block's own projections; each head's mean
   look-back distance and share of weight on the current and the previous character, over
   held-out windows.
C. A long-distance task, copying: K random symbols of an 8-letter alphabet, a separator, the
   same K symbols again; per-position next-symbol targets; scored by the accuracy on the copied
   half of fresh test sequences (the first half is random, unpredictable).  A transformer and an
   LSTM of about the same number of parameters, same steps, batch and α, for K ∈ {8, 16, 32}.
   "Solves" is fixed before the runs: ≥ 95 % per-symbol accuracy on the copied half of 1000
   fresh test sequences.

Why a training loop of its own: when this script was written, `jn.fit` ended by evaluating J on
the *whole* training set in one batch, which for a transformer on 48 000 windows of 64 characters
means attention weights of 48 000 × heads × 64 × 64 floats per block (tens of GB); `jn.fit`
now evaluates that final cost a chunk of columns at a time (`jaxnet.training.full_cost`), and
the verified loop was kept.  `train`
below makes the same updates (Adam after `clip_by_global_norm`, the hand-written
`net._cost_and_grads`, the minibatches of `fit`'s per-epoch permutations) in compiled chunks of
100 steps, reading the held-out cost between chunks; the script checks that it reproduces
`jn.fit` on a tiny transformer.
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from common import (
    RESULTS,
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
from matplotlib.colors import PowerNorm

import jaxnet as jn
from jaxnet import models, text
from jaxnet.layers.normalization import layernorm_forward

NAME = "13_transformer"
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
Q = args.quick
t_start = time.time()
rows, extra = [], {"quick": Q}

row = row_recorder(rows)


_last_lap = [time.time(), time.process_time()]


def lap(part):
    """Record the wall and CPU seconds since the previous lap (each part's share of the run)."""
    now, cpu = time.time(), time.process_time()
    wall, used = now - _last_lap[0], cpu - _last_lap[1]
    extra.setdefault("seconds", {})[part] = {"wall": round(wall, 1), "cpu": round(used, 1)}
    print(f"[{part}: {wall:.0f} s, CPU {used:.0f} s]", flush=True)
    _last_lap[:] = now, cpu


# --- the training loop: jn.fit's updates, in chunks, without the full-data cost at the end ------
def train(net, p0, X, Y, *, steps, learning_rate, batch_size, clip_norm, key, every,
          evaluate=None):
    """`(params, costs, evals)`: `steps` Adam updates from `p0` on minibatches of `(X, Y)`.

    Step s uses `fit`'s minibatch: columns `j·b … (j+1)·b − 1` of the permutation
    `jax.random.permutation(fold_in(key, epoch), m)` (epoch = s // (m // b), j = s mod (m // b));
    the gradient is the hand-written `net._cost_and_grads`, clipped to global norm `clip_norm`.
    `evaluate(params)` (a dict of floats) is called before step 0, every `every` steps and after
    the last; `evals` maps each key to `(steps_list, values)`."""
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    m = X.shape[-1]
    per_epoch = m // batch_size

    @jax.jit
    def run(params, opt_state, start):
        def one(carry, j):
            params, opt_state = carry
            s = start + j
            perm = jax.random.permutation(jax.random.fold_in(key, s // per_epoch), m)
            idx = jax.lax.dynamic_slice_in_dim(perm, (s % per_epoch) * batch_size, batch_size)
            J, _, grads = net._cost_and_grads(params, jnp.take(X, idx, axis=-1),
                                              jnp.take(Y, idx, axis=-1))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), J

        return jax.lax.scan(one, (params, opt_state), jnp.arange(every))

    assert steps % every == 0, "steps must be a multiple of the evaluation interval"
    params, opt_state = p0, tx.init(p0)
    costs, evals = [], {}

    def record(s):
        for k, v in (evaluate(params) if evaluate else {}).items():
            evals.setdefault(k, ([], []))
            evals[k][0].append(s)
            evals[k][1].append(v)

    for s in range(0, steps, every):
        record(s)
        (params, opt_state), J = run(params, opt_state, s)
        costs.append(np.asarray(J))
    record(steps)
    return params, np.concatenate(costs), evals


corpus = text.load_corpus()
V = corpus.V

# --- A.0 gradient check of a tiny transformer, and the loop against jn.fit -----------------------
TINY = {"d": 8, "heads": 2, "blocks": 1 if Q else 2, "mlp_width": 16}
tiny = models.char_transformer(V, 8, **TINY)
k_tiny = jax.random.split(jax.random.key(13), 4)
tiny_p0 = tiny.init(k_tiny[0])
X_t, Y_t = text.windows(corpus.train, 8, 4, key=k_tiny[1])
report = jn.check_gradients(tiny, tiny_p0, X_t, Y_t, entries=6 if Q else 16, key=k_tiny[2])
print(report)
report_line = str(report).splitlines()[0]
claims.check("the transformer's hand-written backward passes the three-way gradient check "
             "(jn.check_gradients in float64: manual~autodiff, autodiff~FD, Taylor) before "
             "training", report.ok,
             f"{report_line}; tiny char_transformer(V={V}, T=8, "
             f"{', '.join(f'{k} {v}' for k, v in TINY.items())}), {tiny.n_params()} parameters "
             f"in {len(report.leaves)} leaves, 4 windows")
extra["gradient_check"] = str(report)

# The loop against jn.fit (full run only: jn.fit's compilation alone would take a third of the
# quick run's time).
if not Q:
    X_e, Y_e = text.windows(corpus.train, 8, 64, key=k_tiny[3])
    EQ = {"steps": 20, "learning_rate": 3e-3, "batch_size": 8, "clip_norm": 1.0}
    p_fit, h_fit = jn.fit(tiny, tiny_p0, X_e, Y_e, optimizer="adam", gradients="manual",
                          key=jax.random.key(1), progress=False, **EQ)
    p_own, c_own, _ = train(tiny, tiny_p0, X_e, Y_e, key=jax.random.key(1), every=10, **EQ)
    # bk (the keys' bias) has a gradient of 0 up to round-off (a constant added to every score of a
    # query leaves its softmax unchanged): Adam divides that round-off by its own size and turns it
    # into steps of ±α, different in the two runs; it changes no output.  Compared apart.
    diffs = {f"{n}[{l}]": float(jnp.max(jnp.abs(a[n] - b[n])))
             for l, (a, b) in enumerate(zip(p_fit, p_own)) for n in a}
    eq_dp = max(v for k, v in diffs.items() if not k.startswith("bk"))
    eq_bk = max([v for k, v in diffs.items() if k.startswith("bk")] or [0.0])
    eq_dJ = float(np.max(np.abs(np.asarray(h_fit["cost"]) - c_own)))
    eq_out = float(jnp.max(jnp.abs(tiny._forward(p_fit, X_e)[1] - tiny._forward(p_own, X_e)[1])))
    claims.check("the script's training loop makes jn.fit's updates (Adam, clip, minibatch order, "
                 "gradients='manual'): after 20 steps the outputs and per-step costs agree to "
                 "float32 round-off (≤ 1e-5) and every parameter but bk to ≤ 1e-4 (Adam divides "
                 "by √v: it magnifies round-off where gradients are small)",
                 max(eq_dJ, eq_out) <= 1e-5 and eq_dp <= 1e-4,
                 f"max |Δθ| {eq_dp:.1e} (bk: {eq_bk:.1e}, Adam-amplified round-off of a zero "
                 f"gradient), max |ΔŶ| {eq_out:.1e}, max |ΔJ| per step {eq_dJ:.1e}; tiny "
                 f"transformer, 64 windows, batch 8")
    extra["loop_vs_fit"] = {"max_param_diff_but_bk": eq_dp, "max_bk_diff": eq_bk,
                            "max_output_diff": eq_out, "max_cost_diff": eq_dJ, **EQ}

lap("A.0 gradient check and loop check")


# --- A. characters: transformer vs LSTM at the same budget ---------------------------------------
CHAR = ({"steps": 40, "batch_size": 16, "T": 32, "learning_rate": 1e-2, "every": 10}
        if Q else
        {"steps": 1500, "batch_size": 32, "T": 64, "learning_rate": 3e-3, "every": 100})
CHAR.update(optimizer="adam", gradients="manual (hand-written backward)", clip_norm=1.0)
LSTM_SIZE = {"hidden": 16, "d": 16} if Q else {"hidden": 128, "d": 32}
TR_SIZE = ({"d": 16, "heads": 2, "blocks": 1, "mlp_width": 32} if Q else
           {"d": 64, "heads": 4, "blocks": 2, "mlp_width": 192})
T_c = CHAR["T"]
# Experiment 12's keys: the same training windows, initial key and minibatch order.
k_win, k_init, k_batch, k_before, k_after = jax.random.split(jax.random.key(12), 5)
X_c, Y_c = text.windows(corpus.train, T_c, CHAR["steps"] * CHAR["batch_size"], key=k_win)
n_val = (len(corpus.val) - 1) // T_c
if Q:
    n_val = min(n_val, 64)
val_ids = corpus.val[:n_val * T_c + 1]  # the held-out text as consecutive windows
X_v = jnp.asarray(val_ids[:-1].reshape(n_val, T_c).T)
Y_v = jnp.asarray(val_ids[1:].reshape(n_val, T_c).T)
uni = text.unigram_bits(corpus.train, corpus.val, V)
bi = text.bigram_bits(corpus.train, corpus.val, V)
PROMPT, N_SAMPLE, TEMP = "The ", (40 if Q else 300), 0.8

char_models = {
    "LSTM": models.char_lstm(V, T_c, LSTM_SIZE["hidden"], LSTM_SIZE["d"]),
    "transformer": models.char_transformer(V, T_c, **TR_SIZE),
}
char = {}
for kind, net in char_models.items():
    p0 = net.init(k_init)
    val_cost = jax.jit(net._cost)
    before = text.sample(net, p0, corpus, PROMPT, N_SAMPLE, key=k_before, temperature=TEMP)
    t0 = time.time()
    params, costs, ev = train(
        net, p0, X_c, Y_c, steps=CHAR["steps"], learning_rate=CHAR["learning_rate"],
        batch_size=CHAR["batch_size"], clip_norm=CHAR["clip_norm"], key=k_batch,
        every=CHAR["every"],
        evaluate=lambda p, f=val_cost: {"bits": text.bits_per_char(float(f(p, X_v, Y_v)))})
    jax.block_until_ready(params)
    seconds = time.time() - t0  # includes the held-out evaluations and the compilation
    after = text.sample(net, params, corpus, PROMPT, N_SAMPLE, key=k_after, temperature=TEMP)
    steps_v, bits_v = ev["bits"]
    char[kind] = {"net": net, "params": params, "n_params": net.n_params(),
                  "bits0": bits_v[0], "bits": bits_v[-1], "seconds": seconds,
                  "val_step": steps_v, "val_bits": bits_v, "train_cost": costs,
                  "before": before, "after": after}
    print(f"char {kind}: {net.n_params()} parameters, {bits_v[0]:.3f} → {bits_v[-1]:.3f} bits/char "
          f"(unigram {uni:.3f}, bigram {bi:.3f}), {seconds:.0f} s", flush=True)

lstm, tr = char["LSTM"], char["transformer"]
row("A characters", "unigram baseline: bits per character (held-out text)", uni)
row("A characters", "bigram baseline: bits per character (held-out text)", bi)
for kind, r in char.items():
    row("A characters", f"{kind}: parameters", r["n_params"])
    row("A characters", f"{kind} at initialisation: bits per character", r["bits0"])
    row("A characters", f"{kind} after {CHAR['steps']} steps: bits per character", r["bits"])
    row("A characters", f"{kind}: training seconds (with held-out evaluations)",
        round(r["seconds"], 1))
char_table = [{"model": ("char_lstm(hidden {hidden}, d {d})".format(**LSTM_SIZE) if k == "LSTM"
                         else "char_transformer(d {d}, heads {heads}, blocks {blocks}, "
                              "mlp {mlp_width})".format(**TR_SIZE)),
               "parameters": r["n_params"], "held-out bits/char at init": r["bits0"],
               f"held-out bits/char after {CHAR['steps']} steps": r["bits"],
               "train s": round(r["seconds"], 1)} for k, r in char.items()]
extra["char"] = {
    **CHAR, "vocab": V, "lstm_size": LSTM_SIZE, "transformer_size": TR_SIZE,
    "train_windows": int(X_c.shape[1]), "val_windows": n_val,
    "validation": f"the held-out text ({len(corpus.val)} characters) cut into {n_val} "
                  f"consecutive non-overlapping windows of T={T_c}, every position scored",
    "unigram_bits": uni, "bigram_bits": bi, "sample_prompt": PROMPT,
    "sample_temperature": TEMP, "table": char_table,
    **{kind: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()
              if k not in ("net", "params", "train_cost")} for kind, r in char.items()},
}

ratio = tr["n_params"] / lstm["n_params"]
claims.check("the transformer has about the LSTM's number of parameters (within ±15 %)",
             abs(ratio - 1) <= 0.15,
             f"transformer {tr['n_params']} ({', '.join(f'{k} {v}' for k, v in TR_SIZE.items())})"
             f" vs LSTM {lstm['n_params']}: ratio {ratio:.3f}")
finite = all(np.isfinite(r["train_cost"]).all() and np.isfinite(r["val_bits"]).all()
             for r in char.values())
if Q:
    claims.check("quick: training lowers both models' held-out bits per character (costs "
                 "finite)", finite and all(r["bits"] < r["bits0"] for r in char.values()),
                 "; ".join(f"{k} {r['bits0']:.3f} → {r['bits']:.3f}" for k, r in char.items()))
else:
    claims.check("both models beat the bigram baseline on the held-out text by more than 1 bit "
                 "per character", finite and all(r["bits"] < bi - 1 for r in char.values()),
                 f"LSTM {lstm['bits']:.3f}, transformer {tr['bits']:.3f}; bigram {bi:.3f}, "
                 f"unigram {uni:.3f}")
    try:
        ref = json.loads((RESULTS / "12_recurrent" / "results.json").read_text())["char_lstm"]
        ref_bits = ref["val_bits_per_char"]
    except (OSError, KeyError, ValueError):
        ref_bits = float("nan")
    claims.check("the LSTM retrained here (same windows, keys, budget) reproduces experiment "
                 "12's held-out bits per character (within 0.01)", abs(lstm["bits"] - ref_bits)
                 <= 0.01, f"{lstm['bits']:.4f} here vs {ref_bits:.4f} in experiment 12")
    gap = tr["bits"] - lstm["bits"]
    claims.check("at this budget (1500 steps, α = 3e-3) the transformer does not beat the LSTM: "
                 "its held-out bits per character are higher, by less than 0.15",
                 0 < gap < 0.15, f"transformer {tr['bits']:.3f} vs LSTM {lstm['bits']:.3f} "
                 f"(gap {gap:+.3f}); the transformer took {tr['seconds']:.0f} s, the LSTM "
                 f"{lstm['seconds']:.0f} s")

fig, ax = plt.subplots(figsize=(6.5, 4))
for kind, color in (("LSTM", "tab:blue"), ("transformer", "tab:red")):
    r = char[kind]
    ax.plot(r["val_step"], r["val_bits"], marker="o", ms=3, color=color,
            label=f"{kind} ({r['n_params']:,} params): {r['bits']:.3f}")
ax.axhline(uni, color="gray", ls="--", label=f"unigram {uni:.2f}")
ax.axhline(bi, color="black", ls="--", label=f"bigram {bi:.2f}")
ax.set(xlabel="step", ylabel="held-out bits per character", ylim=(1.5, 5),
       title=f"Same budget: Adam α={CHAR['learning_rate']}, batch {CHAR['batch_size']}, "
             f"T={T_c}, clip {CHAR['clip_norm']}")
ax.legend(fontsize=8)
save_figure(fig, out / "char_curves.png")


lap("A characters")


# --- B. attention patterns ------------------------------------------------------------------
tr_net, tr_params = tr["net"], tr["params"]
block_ids = [l for l, layer in enumerate(tr_net.layers) if isinstance(layer, jn.TransformerBlock)]
val_text = corpus.decode(corpus.val)
lines = [s for s in val_text.splitlines() if 40 <= len(s.strip()) <= min(56, T_c)
         and s == s.lstrip() and s[0].isupper()]
prompt_line = lines[0] if lines else val_text[:min(48, T_c)]
prompt_ids = jnp.asarray(corpus.encode(prompt_line))[:, None]  # (T_p, 1)


@jax.jit
def block_inputs_and_caches(params, ids):
    """The input `x (d, T, m)` of every transformer block, and every layer's cache."""
    A, inputs, caches = ids, {}, []
    for l, (layer, p) in enumerate(zip(tr_net.layers, params)):
        if l in block_ids:
            inputs[l] = A
        A, cache = layer.forward(p, A)
        caches.append(cache)
    return inputs, caches


def recomputed_weights(p, x, heads):
    """`(heads, T_k, T_q, m)`: `jn.layers.scaled_dot_product_attention` of each head, from the
    block's own LN1 and projections `Q_h = (Wq a + bq)[rows of h]` (and K, V), causal mask."""
    a, _, _ = layernorm_forward(p["ln1_gamma"], p["ln1_beta"], x, 1e-5)
    proj = {n: jnp.einsum("ij,jtm->itm", p["W" + n], a) + p["b" + n][:, :, None] for n in "qkv"}
    d_k, T = x.shape[0] // heads, x.shape[1]
    mask = jnp.asarray(np.triu(np.ones((T, T), bool)))  # (T_k, T_q): key k ≤ query q
    return jnp.stack([jn.layers.scaled_dot_product_attention(
        *(proj[n][h * d_k:(h + 1) * d_k] for n in "qkv"), mask=mask)[1] for h in range(heads)])


inputs, caches = block_inputs_and_caches(tr_params, prompt_ids)
heads = TR_SIZE["heads"]
weights = {l: np.asarray(caches[l]["att"]["P"][0]) for l in block_ids}  # (heads, T_q, T_k)
recomputed = {l: np.asarray(recomputed_weights(tr_params[l], inputs[l], heads)[..., 0])
              for l in block_ids}  # (heads, T_k, T_q)
rec_err = max(float(np.abs(weights[l].transpose(0, 2, 1) - recomputed[l]).max()) for l in block_ids)
T_p = prompt_ids.shape[0]
upper = np.triu(np.ones((T_p, T_p), bool), 1)  # (T_q, T_k): keys after the query
causal_ok = all(np.abs(w[:, upper]).max() == 0 for w in weights.values())
sums_err = max(float(np.abs(w.sum(-1) - 1).max()) for w in weights.values())
claims.check("attention weights from the blocks' forward caches are causal (exactly 0 for keys "
             "after the query), sum to 1 over the keys, and equal "
             "jn.layers.scaled_dot_product_attention recomputed from each block's own LN1 and "
             "projections (≤ 1e-5)", causal_ok and sums_err <= 1e-5 and rec_err <= 1e-5,
             f"{len(block_ids)} blocks × {heads} heads on a {T_p}-character line; max |Σ_k − 1| "
             f"{sums_err:.1e}, max |cache − recomputed| {rec_err:.1e}")

# Per head over held-out windows: mean look-back q − k, weight on k = q and on k = q − 1.
n_stat = min(64, n_val)
_, caches_v = block_inputs_and_caches(tr_params, X_v[:, :n_stat])
q_idx, k_idx = np.meshgrid(np.arange(T_c), np.arange(T_c), indexing="ij")
head_stats = []
for b, l in enumerate(block_ids):
    P = np.asarray(caches_v[l]["att"]["P"])  # (m, heads, T_q, T_k)
    for h in range(heads):
        w = P[:, h].mean(0)  # (T_q, T_k), averaged over the windows
        head_stats.append({
            "head": f"block {b + 1} head {h + 1}",
            "mean look-back q − k": float(((q_idx - k_idx) * w).sum(1).mean()),
            "weight on k = q": float(np.diagonal(w).mean()),
            "weight on k = q − 1": float(np.diagonal(w, -1).mean()),
            "weight on k = 0": float(w[1:, 0].mean()),
        })
extra["attention"] = {"prompt": prompt_line, "recompute_max_error": rec_err,
                      "row_sum_max_error": sums_err, "head_stats_windows": n_stat,
                      "head_stats": head_stats}
for s in head_stats:
    row("B attention", f"{s['head']}: mean look-back q − k (held-out windows)",
        s["mean look-back q − k"])

show = lambda c: {" ": "␣", "\n": "⏎"}.get(c, c)
fig, axes = plt.subplots(len(block_ids), heads, figsize=(4.2 * heads, 4.4 * len(block_ids)),
                         squeeze=False, layout="constrained")
for b, l in enumerate(block_ids):
    for h in range(heads):
        ax = axes[b, h]
        ax.imshow(weights[l][h].T, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1))
        ticks = [show(c) for c in prompt_line]
        ax.set_xticks(range(T_p), ticks, fontsize=5, family="monospace")
        ax.set_yticks(range(T_p), ticks, fontsize=5, family="monospace")
        s = head_stats[b * heads + h]
        ax.set_title(f"block {b + 1}, head {h + 1}: look-back {s['mean look-back q − k']:.1f}, "
                     f"prev {s['weight on k = q − 1']:.2f}", fontsize=8)
        if h == 0:
            ax.set_ylabel("key k (attended to)")
        if b == len(block_ids) - 1:
            ax.set_xlabel("query q (predicting the next character)")
fig.suptitle(f"Attention weights W (T_k × T_q) of the trained character transformer on a "
             f"held-out line: {prompt_line!r}\n(column q: where position q looks; titles: mean "
             f"look-back and weight on the previous character over {n_stat} held-out windows; "
             f"colour ∝ √weight)",
             fontsize=10)
save_figure(fig, out / "attention_heads.png")


lap("B attention")


# --- C. copying: a long-distance task ----------------------------------------------------------
ALPHABET = 8
SEP = ALPHABET  # the separator's id; the vocabulary is the 8 symbols and the separator
COPY = ({"K": (4,), "steps": 100, "batch_size": 32, "learning_rate": 3e-3, "every": 50,
         "n_test": 200} if Q else
        {"K": (8, 16, 32), "steps": 1000, "batch_size": 64, "learning_rate": 3e-3,
         "every": 100, "n_test": 1000})
COPY.update(optimizer="adam", clip_norm=1.0, alphabet=ALPHABET)
COPY_TR = ({"d": 16, "heads": 2, "blocks": 1, "mlp_width": 32} if Q else
           {"d": 32, "heads": 2, "blocks": 2, "mlp_width": 64})
COPY_LSTM = {"hidden": 20, "d": 8} if Q else {"hidden": 60, "d": 16}
SOLVED = 0.95  # fixed before the runs: per-symbol accuracy on the copied half of fresh sequences
chance = 1 / ALPHABET


def copy_task(key, K, m):
    """`(X, Y)` ids `(2K, m)`: the sequences `s_1 … s_K SEP s_1 … s_K` (s uniform over the
    alphabet) without their last symbol, and the next-symbol targets (shifted by one).  The
    copied half is targets K … 2K − 1: the answer to position K + j is X[j]."""
    s = jax.random.randint(key, (K, m), 0, ALPHABET, dtype=jnp.int32)
    seq = jnp.concatenate([s, jnp.full((1, m), SEP, jnp.int32), s])
    return seq[:-1], seq[1:]


predict = jax.jit(lambda net, p, X: jnp.argmax(net._forward(p, X)[1], axis=0),
                  static_argnums=0)


def copied_accuracy(net, params, X, Y, K):
    """`(per-symbol accuracy, share of sequences all right, accuracy per copied position)`."""
    right = np.asarray(predict(net, params, X)[K:] == Y[K:])
    return float(right.mean()), float(right.all(axis=0).mean()), right.mean(axis=1)


copy_runs = {}
extra["copy"] = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in COPY.items()},
                 "transformer_size": COPY_TR, "lstm_size": COPY_LSTM,
                 "solved": f"≥ {SOLVED:.0%} per-symbol accuracy on the copied half of "
                           f"{COPY['n_test']} fresh test sequences", "chance": chance,
                 "learned positional embedding": True}
for K in COPY["K"]:
    T = 2 * K
    k_train, k_test, k_init_c, k_batch_c = jax.random.split(jax.random.key(1300 + K), 4)
    X, Y = copy_task(k_train, K, COPY["steps"] * COPY["batch_size"])  # fresh every step
    X_test, Y_test = copy_task(k_test, K, COPY["n_test"])
    nets = {"transformer": models.char_transformer(ALPHABET + 1, T, **COPY_TR),
            "LSTM": models.char_lstm(ALPHABET + 1, T, COPY_LSTM["hidden"], COPY_LSTM["d"])}
    for kind, net in nets.items():
        t0 = time.time()
        params, costs, ev = train(
            net, net.init(k_init_c), X, Y, steps=COPY["steps"],
            learning_rate=COPY["learning_rate"], batch_size=COPY["batch_size"],
            clip_norm=COPY["clip_norm"], key=k_batch_c, every=COPY["every"],
            evaluate=lambda p, net=net, test=(X_test, Y_test), K=K: {
                "acc": copied_accuracy(net, p, *test, K)[0]})
        seconds = time.time() - t0
        acc, whole, per_pos = copied_accuracy(net, params, X_test, Y_test, K)
        copy_runs[kind, K] = {
            "K": K, "T": T, "network": kind, "parameters": net.n_params(),
            "copied-half accuracy": acc, "sequences all right": whole, "chance": chance,
            "solved": "yes" if acc >= SOLVED else "no", "train s": round(seconds, 1),
            "curve": ev["acc"], "per_position": per_pos.tolist(),
            "finite": bool(np.isfinite(costs).all()), "cost0": float(costs[0]),
            "cost_end": float(costs[-COPY["every"]:].mean())}
        print(f"copy K={K} {kind}: {net.n_params()} parameters, copied-half accuracy {acc:.3f}"
              f" (chance {chance:.3f}), {whole:.1%} sequences all right, {seconds:.0f} s",
              flush=True)
        row("C copying", f"K={K} {kind}: accuracy on the copied half", acc)

copy_columns = ["K", "T", "network", "parameters", "copied-half accuracy", "sequences all right",
                "chance", "solved", "train s"]
copy_table = [{c: r[c] for c in copy_columns} for r in copy_runs.values()]
extra["copy"]["table"] = copy_table
extra["copy"]["curves"] = {f"{k} K={K}": {"step": r["curve"][0], "accuracy": r["curve"][1]}
                           for (k, K), r in copy_runs.items()}
extra["copy"]["per_position"] = {f"{k} K={K}": r["per_position"]
                                 for (k, K), r in copy_runs.items()}
sizes = [r["parameters"] for r in copy_runs.values()]
detail = "; ".join(f"K={K}: transformer {copy_runs['transformer', K]['copied-half accuracy']:.3f}"
                   f" / LSTM {copy_runs['LSTM', K]['copied-half accuracy']:.3f}"
                   for K in COPY["K"]) + f" (chance {chance:.3f})"
claims.check("copy task: the transformer and the LSTM have about the same number of "
             "parameters (every pair within ±15 %)",
             all(abs(copy_runs["transformer", K]["parameters"] / copy_runs["LSTM", K]["parameters"]
                     - 1) <= 0.15 for K in COPY["K"]),
             ", ".join(f"K={K}: {copy_runs['transformer', K]['parameters']} vs "
                       f"{copy_runs['LSTM', K]['parameters']}" for K in COPY["K"]))
if Q:
    K = COPY["K"][0]
    claims.check(f"quick: on the copy task (K={K}) both models' training costs are finite and "
                 "fall, and the transformer's copied-half accuracy is above chance",
                 all(r["finite"] and r["cost_end"] < r["cost0"] for r in copy_runs.values())
                 and copy_runs["transformer", K]["copied-half accuracy"] > chance, detail)
else:
    tr_solved = [K for K in COPY["K"] if copy_runs["transformer", K]["solved"] == "yes"]
    lstm_failed = [K for K in COPY["K"] if copy_runs["LSTM", K]["solved"] == "no"]
    claims.check(f"the transformer solves the copy task (≥ {SOLVED:.0%} on the copied half of "
                 f"fresh sequences) at every K in {list(COPY['K'])}",
                 tr_solved == list(COPY["K"]), detail)
    K = COPY["K"][-1]
    claims.check(f"the LSTM of about the same size does not solve it at K={K} at the same budget "
                 f"({COPY['steps']} steps, batch {COPY['batch_size']}, α = "
                 f"{COPY['learning_rate']})", K in lstm_failed and K in tr_solved,
                 f"LSTM fails at K ∈ {lstm_failed}, solves at "
                 f"{[k for k in COPY['K'] if k not in lstm_failed]}")

fig, axes = plt.subplots(1, len(COPY["K"]) + 1, figsize=(4 * (len(COPY["K"]) + 1), 3.6),
                         squeeze=False)
axes = axes[0]
colors = {"transformer": "tab:red", "LSTM": "tab:blue"}
for ax, K in zip(axes, COPY["K"]):
    for kind in ("transformer", "LSTM"):
        r = copy_runs[kind, K]
        ax.plot(*r["curve"], color=colors[kind], marker="o", ms=3,
                label=f"{kind} ({r['parameters']:,} params)")
    ax.axhline(SOLVED, color="black", ls="--", lw=1, label=f"'solved' ({SOLVED:.0%})")
    ax.axhline(chance, color="gray", ls=":", lw=1, label=f"chance (1/{ALPHABET})")
    ax.set(title=f"copy K = {K} symbols (T = {2 * K})", xlabel="step", ylim=(0, 1.02))
axes[0].set_ylabel("accuracy on the copied half (test)")
axes[0].legend(fontsize=7)
K = COPY["K"][-1]
ax = axes[-1]
for kind in ("transformer", "LSTM"):
    ax.plot(np.arange(1, K + 1), copy_runs[kind, K]["per_position"], color=colors[kind],
            marker=".", label=kind)
ax.axhline(chance, color="gray", ls=":", lw=1)
ax.set(title=f"K = {K}, after training: by copied position", xlabel=f"copied symbol j (its "
       f"source is K + 1 = {K + 1} positions back)", ylabel="accuracy", ylim=(0, 1.02))
ax.legend(fontsize=7)
fig.suptitle(f"Copying K random symbols after a separator (alphabet {ALPHABET}; Adam α="
             f"{COPY['learning_rate']}, batch {COPY['batch_size']}, {COPY['steps']} steps, "
             f"clip {COPY['clip_norm']})", y=1.03)
save_figure(fig, out / "copy_task.png")


lap("C copying")


# --- results ---------------------------------------------------------------------------------
write_results(out, NAME, rows, claims, extra=extra, columns=["part", "measure", "value"])
md = (out / "results.md").read_text()


char_cols = list(char_table[0])
md += (f"\nA. Characters, same budget ({CHAR['steps']} Adam steps, α = "
       f"{CHAR['learning_rate']}, batch {CHAR['batch_size']} windows of T = {T_c}, clip "
       f"{CHAR['clip_norm']}; held-out: {n_val} windows):\n\n"
       f"{markdown_table(char_table, char_cols)}\n")
for kind, r in char.items():
    md += (f"\nSamples from the {kind} (prompt {PROMPT!r}, temperature {TEMP}), before "
           f"training:\n\n{fence(r['before'])}\n\nafter {CHAR['steps']} steps "
           f"({r['bits']:.3f} bits per character):\n\n{fence(r['after'])}\n")
md += (f"\nB. Attention heads of the trained transformer, averaged over {n_stat} held-out "
       f"windows (figure: the line {prompt_line!r}):\n\n{markdown_table(head_stats)}\n")
md += (f"\nC. Copying (alphabet {ALPHABET}, {COPY['steps']} Adam steps of batch "
       f"{COPY['batch_size']}, α = {COPY['learning_rate']}, clip {COPY['clip_norm']}; "
       f"transformer {COPY_TR}, LSTM {COPY_LSTM}; solved = ≥ {SOLVED:.0%} on the copied half of "
       f"{COPY['n_test']} fresh sequences):\n\n{markdown_table(copy_table, copy_columns)}\n")
md += f"\nRun time: {time.time() - t_start:.0f} s.\n"
_atomic_write(out / "results.md", md)
print(f"done in {time.time() - t_start:.0f} s")
sys.exit(claims.exit_code())
