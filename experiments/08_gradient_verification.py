"""Gradient verification at work ("Backward Propagation", "Step3: Backward Propagation For
Layer l" of the document).

Every gradient formula of the document is written by hand in `jaxnet` (`net.backprop`).  Part 1
runs the three-way check `jn.check_gradients` (hand-written vs `jax.grad` vs central finite
differences, float64, plus a Taylor test) on each network the document draws: the regression and
classification perceptrons, the 2-2-1 ReLU/sigmoid network, the 3-layer network, and deeper
L-layer networks mixing tanh, leaky ReLU and ReLU with sigmoid, softmax and identity outputs.
Part 2 writes the document's Step 3 formulas as a user would (`my_backprop` below), plants one
bug at a time (a missing 1/m, W instead of Wᵀ, σ' where ReLU' belongs) and shows that
`jn.check_grad` catches each one and names the leaves it breaks.  Part 3 puts pre-activations
exactly on the ReLU kink (zero biases, all-zero input columns) and shows that the checker
recognizes them as kinks, not failures.
"""

import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn

NAME = "08_gradient_verification"
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
m = 16 if args.quick else 60
k = iter(jax.random.split(jax.random.key(8), 32))
first_m = lambda d: (d.X_train[:, :m], d.Y_train[:, :m])
iris = lambda: first_m(jn.data.load("iris", key=next(k)))
diabetes = lambda: first_m(jn.data.load("diabetes", key=next(k)))
NETWORKS = [  # (name, network, data (X, Y) made on demand); --quick checks the first
    ("2-layer 2-2-1, ReLU/sigmoid", jn.MLP((2, 2, 1)), lambda: jn.data.xor(key=next(k), m=m, noise=0.3)),
    ("perceptron, classification", jn.Perceptron(2, "classification"),
     lambda: jn.data.blobs(key=next(k), m=m)),
    ("L=4 tanh/leaky/ReLU, softmax (iris)",
     jn.MLP((4, 16, 16, 16, 3), hidden=("tanh", "leaky_relu", "relu"), output="softmax"), iris),
    ("perceptron, regression", jn.Perceptron(2, "regression"),
     lambda: jn.data.linear_regression(key=next(k), m=m)),
    ("3-layer 2-4-3-1, ReLU/sigmoid", jn.MLP((2, 4, 3, 1)), lambda: jn.data.two_moons(key=next(k), m=m)),
    ("L=3 leaky/tanh, sigmoid (spirals)",
     jn.MLP((2, 8, 8, 1), hidden=("leaky_relu", "tanh")), lambda: jn.data.spirals(key=next(k), m=m)),
    ("softmax + squared error (general chain)",
     jn.MLP((4, 8, 3), output="softmax", loss="squared_error"), iris),
    ("regression MLP ReLU/identity (diabetes)", jn.MLP((10, 8, 8, 1), output="identity"), diabetes),
][: 1 if args.quick else None]


def summary(case, report, expected_ok, net):
    kinks = sum(leaf.kink_entries for leaf in report.leaves)
    return {"case": case, "sizes": str(net.sizes),
            "max manual~autodiff": max(leaf.manual_vs_autodiff for leaf in report.leaves),
            "max autodiff~FD": max(leaf.autodiff_vs_fd for leaf in report.leaves),
            "kink entries": kinks, "Taylor order": report.taylor.order, "report.ok": report.ok,
            "failing leaves": ", ".join(report.failing) or "-", "expected ok": expected_ok}


# --- Part 1: the library's hand-written backprop on every network of the document ----------
rows, reports = [], {}
for case, net, data in NETWORKS:
    report = jn.check_gradients(net, net.init(next(k)), *data())
    reports[case] = report
    rows.append(summary(case, report, True, net))
    claims.check(f"backprop is correct for {case}: manual~autodiff ≤ 1e-10, autodiff~FD ≤ 1e-6, "
                 "Taylor order ≥ 1.5", report.ok,
                 f"{rows[-1]['max manual~autodiff']:.1e}, {rows[-1]['max autodiff~FD']:.1e}, "
                 f"order {report.taylor.order:.2f}")


# --- Part 2: a user's own Step 3 formulas (ReLU hidden layers, sigmoid + BCE output) -------
def my_backprop(params, X, Y, bug=None):
    m, L = X.shape[1], len(params)
    A, cache = X, []
    for l, p in enumerate(params, start=1):
        Z = p["W"] @ A + p["b"]
        cache.append((A, Z))
        A = jax.nn.sigmoid(Z) if l == L else jnp.maximum(Z, 0)
    dZ, grads = A - Y, [None] * L  # dZ^[L] = A^[L] − Y
    for l in range(L, 0, -1):
        A_prev, _ = cache[l - 1]
        W = params[l - 1]["W"]
        dW = (1.0 if bug == "dW[3] without 1/m" and l == 3 else 1 / m) * dZ @ A_prev.T
        db = (1.0 if bug == "db[1] without 1/m" and l == 1 else 1 / m) * jnp.sum(dZ, 1, keepdims=True)
        grads[l - 1] = {"W": dW, "b": db}
        if l > 1:
            dA_prev = (W if bug == "W[2] instead of W[2]ᵀ" and l == 2 else W.T) @ dZ
            Z_prev = cache[l - 2][1]
            if bug == "σ'(Z) instead of ReLU'(Z)":
                g_prime = jax.nn.sigmoid(Z_prev) * (1 - jax.nn.sigmoid(Z_prev))
            else:
                g_prime = (Z_prev > 0).astype(Z_prev.dtype)
            dZ = dA_prev * g_prime
    return grads


net = jn.MLP((2, 3, 3, 1))  # the 3-layer network; W^[2] is 3 × 3, so W for Wᵀ type-checks
params = net.init(next(k), bias="normal")
X = jax.random.normal(next(k), (2, m))
Y = (X[0:1] * X[1:2] > 0).astype(X.dtype)  # XOR of the signs
names = [f"{w}[{l}]" for l in (1, 2, 3) for w in ("W", "b")]
BUGS = {None: [], "dW[3] without 1/m": ["W[3]"], "db[1] without 1/m": ["b[1]"],
        "W[2] instead of W[2]ᵀ": ["W[1]", "b[1]"],
        "σ'(Z) instead of ReLU'(Z)": ["W[1]", "b[1]", "W[2]", "b[2]"]}
if args.quick:
    BUGS = {bug: BUGS[bug] for bug in (None, "db[1] without 1/m", "σ'(Z) instead of ReLU'(Z)")}
for bug, expected in BUGS.items():
    report = jn.check_grad(net.cost, lambda p, X, Y, bug=bug: my_backprop(p, X, Y, bug),
                           params, X, Y, names=names)
    reports[bug] = report
    case = "my_backprop, correct" if bug is None else f"planted bug: {bug}"
    rows.append(summary(case, report, bug is None, net))
    if bug is None:
        claims.check("the user's correct Step 3 formulas pass check_grad", report.ok, str(report.failing))
    else:
        claims.check(f"check_grad catches '{bug}': report.ok is False and the failing leaves are "
                     f"exactly {expected}", not report.ok and report.failing == expected,
                     f"failing {report.failing}, Taylor order {report.taylor.order:.2f}")
print(reports["db[1] without 1/m"])

# --- Part 3: zero biases + all-zero input columns put Z exactly on the ReLU kink ------------
net = jn.MLP((2, 2, 1))  # the document's 2-2-1 network
params = net.init(next(k))  # zero biases
X = jax.random.normal(next(k), (2, m)).at[:, : m // 4].set(0.0)
Y = (X[0:1] >= 0).astype(X.dtype)  # label 1 on the zero columns: their kinks do not cancel
report = jn.check_gradients(net, params, X, Y)
rows.append(summary("zero biases, all-zero input columns (dead units at the kink)", report, True, net))
claims.check("Z exactly at the ReLU kink is recognized, not a false failure: report.ok with "
             "kink entries > 0", report.ok and rows[-1]["kink entries"] > 0,
             f"{rows[-1]['kink entries']} kink entries, layer-1 kinks {report['b[1]'].kinks}")

write_results(out, NAME, rows, claims, extra={"m": m, "bug_report_text": str(reports["db[1] without 1/m"])})

# --- Figure: the errors of part 1, and the Taylor remainders that separate right from wrong --
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
part1 = rows[: len(NETWORKS)]
x = np.arange(len(part1))
floor = 1e-18  # exact zeros drawn at the floor of the log scale
ax1.bar(x - 0.2, [max(r["max manual~autodiff"], floor) for r in part1], 0.4, label="manual ~ autodiff")
ax1.bar(x + 0.2, [max(r["max autodiff~FD"], floor) for r in part1], 0.4, label="autodiff ~ FD")
ax1.axhline(1e-10, ls="--", color="C0", lw=1, label="threshold manual ~ autodiff (1e-10)")
ax1.axhline(1e-6, ls="--", color="C1", lw=1, label="threshold autodiff ~ FD (1e-6)")
ax1.set(yscale="log", ylabel="max relative error over leaves", title="jn.check_gradients, float64")
ax1.set_xticks(x, [r["case"] for r in part1], rotation=30, ha="right", fontsize=7)
ax1.set_ylim(top=1e-2)
ax1.legend(fontsize=7, loc="upper left", ncol=2)
for bug in BUGS:
    t = reports[bug].taylor
    ax2.loglog(t.h, np.maximum(t.residuals, floor), "o-", ms=3,
               label=f"{bug or 'correct'} (order {t.order:.2f})")
ax2.set(xlabel="h", ylabel="|J(θ+hv) − J(θ) − h⟨g, v⟩|", title="Taylor test of my_backprop")
ax2.legend(fontsize=7)
save_figure(fig, out / "gradient_verification.png")
sys.exit(claims.exit_code())
