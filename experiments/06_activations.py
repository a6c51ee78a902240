"""Activation functions g and their derivatives g' ("Activation Functions", "Step3: Backward
Propagation For Layer l" of the document).

The backward pass needs `dZ = dA ⊙ g'(Z)`, so every activation in `jaxnet.activations` carries a
hand-written derivative.  This script plots g and g' for identity, sigmoid, tanh, ReLU and leaky
ReLU, and for softmax the diagonal entry ∂a_0/∂z_0 of its Jacobian along one input column
`z = (t, 0, 0)`.  Each hand-written derivative is checked against `jax.vmap(jax.grad(g))` in
float64 on a grid that avoids 0, and at exactly 0 (where ReLU and leaky ReLU have a kink) we
record which one-sided slope each side picks.  Softmax is not element-wise: its `backward`
(`dZ = A ⊙ (dA − Σ_k A_k dA_k)`) is checked against `jax.vjp`.
"""

import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from common import Claims, out_dir, parser, save_figure, write_results

import jaxnet as jn

NAME = "06_activations"
TOL = 1e-12  # float64: hand-written and autodiff derivatives agree to round-off
args = parser(__doc__).parse_args()
out = out_dir(args, NAME)
claims = Claims()
n_grid = 200 if args.quick else 2000  # an even count: the symmetric grid never hits 0 exactly

rows = []
with jax.enable_x64(True):
    z = jnp.linspace(-5.0, 5.0, n_grid, dtype=jnp.float64)
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.2))
    for ax, name in zip(axes.flat, ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]):
        act = jn.activations.get(name)
        g_scalar = lambda t, act=act: act.forward(t[None, None])[0, 0]  # (1, 1) column in, scalar out
        auto = jax.vmap(jax.grad(g_scalar))(z)
        manual = act.derivative(z[None, :])[0]
        err = float(jnp.max(jnp.abs(manual - auto)))
        # Exactly at 0: the hand-written g'(0), autodiff's choice, and the two one-sided slopes.
        zero, h = jnp.zeros((1, 1)), 1e-8
        left = float((act.forward(zero) - act.forward(zero - h))[0, 0] / h)
        right = float((act.forward(zero + h) - act.forward(zero))[0, 0] / h)
        at0_manual = float(act.derivative(zero)[0, 0])
        at0_auto = float(jax.grad(g_scalar)(jnp.zeros(())))
        rows.append({"activation": name, "max abs(g' − jax.grad) on grid": err,
                     "g'(0) manual": at0_manual, "g'(0) jax.grad": at0_auto,
                     "slope left of 0": round(left, 6), "slope right of 0": round(right, 6)})
        claims.check(f"{name}: hand-written g' = jax.vmap(jax.grad(g)) on {n_grid} points "
                     f"of [-5, 5] (0 excluded) within {TOL:g}", err <= TOL,
                     f"max abs difference {err:.1e}")
        if act.kinked:
            one_sided = min(abs(at0_manual - left), abs(at0_manual - right))
            claims.check(f"{name}: at exactly z = 0 (the kink) the hand-written g'(0) equals "
                         f"jax.grad's and is one of the two one-sided slopes (within 1e-6)",
                         at0_manual == at0_auto and one_sided <= 1e-6,
                         f"g'(0) = {at0_manual:g}; slopes left {left:.6g}, right {right:.6g}")
        if name == "leaky_relu":
            # The slope is a definition, not something autodiff or differences can check: pin
            # it to the documented value (jax.nn.leaky_relu's and PyTorch's default).
            claims.check("leaky_relu: the slope left of 0 is 0.01, the documented value",
                         abs(left - 0.01) <= 1e-6, f"measured slope {left:.6g}")
        ax.plot(z, act.forward(z[None, :])[0], label="g(z)")
        ax.plot(z, manual, "--", label="g'(z)")
        if act.kinked:
            ax.plot([0.0], [at0_manual], "o", color="C1", label=f"g'(0) = {at0_manual:g} (chosen)")
        ax.set_title(name + (" (kink at 0)" if act.kinked else ""))
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.legend(loc="upper left", fontsize=8)

    # Softmax: a_0 and its diagonal Jacobian entry along the column z = (t, 0, 0).
    soft = jn.activations.get("softmax")
    column = lambda t: soft.forward(jnp.stack([t, 0.0 * t, 0.0 * t])[:, None])[:, 0]
    a0 = jax.vmap(lambda t: column(t)[0])(z)
    diag_auto = jax.vmap(lambda t: jax.jacobian(column)(t)[0])(z)
    diag_formula = a0 * (1 - a0)  # ∂a_i/∂z_i = a_i (1 − a_i)
    err_diag = float(jnp.max(jnp.abs(diag_formula - diag_auto)))
    claims.check(f"softmax: ∂a_0/∂z_0 = a_0(1 − a_0) equals jax.jacobian's diagonal within {TOL:g}",
                 err_diag <= TOL, f"max abs difference {err_diag:.1e}")
    ax = axes.flat[5]
    ax.plot(z, a0, label="a_0 = softmax(t, 0, 0)_0")
    ax.plot(z, diag_formula, "--", label="∂a_0/∂z_0 = a_0(1 − a_0)")
    ax.set_title("softmax (one column, n = 3)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(loc="upper left", fontsize=8)

    # Softmax backward (the Jacobian-vector product) against jax.vjp on random columns.
    kz, kd = jax.random.split(jax.random.key(6))
    Z = 3.0 * jax.random.normal(kz, (5, 64 if args.quick else 512), jnp.float64)
    dA = jax.random.normal(kd, Z.shape, jnp.float64)
    A, vjp = jax.vjp(soft.forward, Z)
    dZ_auto, = vjp(dA)
    dZ_manual = soft.backward(dA, Z, A)
    err_vjp = float(jnp.max(jnp.abs(dZ_manual - dZ_auto)))
    claims.check(f"softmax: backward A ⊙ (dA − Σ_k A_k dA_k) equals jax.vjp within {TOL:g}",
                 err_vjp <= TOL, f"{Z.shape[1]} columns of 5 units, max abs difference {err_vjp:.1e}")
    at0 = jnp.zeros(())
    rows.append({"activation": "softmax ∂a_0/∂z_0", "max abs(g' − jax.grad) on grid": err_diag,
                 "g'(0) manual": float(column(at0)[0] * (1 - column(at0)[0])),
                 "g'(0) jax.grad": float(jax.jacobian(column)(at0)[0]),
                 "slope left of 0": "smooth", "slope right of 0": "smooth"})

fig.suptitle("Activations g (solid) and their derivatives g' (dashed)")
fig.tight_layout()
save_figure(fig, out / "activations.png")
write_results(out, NAME, rows, claims, extra={"softmax_vjp_max_abs_error": err_vjp})
sys.exit(claims.exit_code())
