"""Three-way gradient verification: a hand-written gradient, `jax.grad`, and finite differences.

Everything runs in float64 inside ``jax.enable_x64(True)`` (a context manager), so the caller
need not enable x64 and the global setting is left as it was.

Thresholds follow from float64 (machine epsilon ε ≈ 2.2e-16):

* manual vs autodiff, relative error per leaf ``‖a − b‖ / max(‖a‖, ‖b‖)`` ≤ ``1e-10``: both are
  exact up to round-off, which stays far below that for networks of any practical depth;
* autodiff vs central differences with step ``eps = 1e-6``: truncation error ~eps² f''' plus
  round-off ~ε|J|/eps ≈ 1e-10, so ≤ ``1e-6`` away from kinks.

Kinks.  ReLU and leaky ReLU are not differentiable at 0.  With zero biases a unit whose inputs
are all zero for an example gives a pre-activation of exactly 0, and there a central difference
averages the two one-sided slopes while autodiff (like the hand-written pass) takes one of them.
An entry whose forward and backward one-sided differences disagree (``|fwd − bwd| > 1e-3·|fwd|``)
is counted as *at a kink*; it passes when the gradient lies between the two one-sided slopes (a
valid one-sided derivative) and is left out of the relative error.  A wrong formula is wrong at
the entries that are not at a kink, so it still fails.

The Taylor test (`taylor_test`) needs no eps at all: along a random direction v the remainder
``r(h) = |J(θ + h v) − J(θ) − h ⟨g, v⟩|`` falls like h² when g is the gradient and like h when
it is not; the fitted order tells a wrong gradient from a bad step size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

TOL_MANUAL = 1e-10
TOL_FD = 1e-6
EPS = 1e-6
KINK_ASYMMETRY = 1e-3
_CHUNK = 512  # finite-difference directions evaluated per vmapped call


@dataclass(frozen=True)
class LeafReport:
    """The comparison for one leaf of the parameter tree (e.g. ``W[1]``)."""

    name: str
    shape: tuple
    manual_vs_autodiff: float  # relative error ‖manual − autodiff‖ / max norm
    autodiff_vs_fd: float  # same, over the finite-difference entries not at a kink
    worst_index: tuple  # entry with the largest |manual − autodiff|
    worst_fd_index: tuple  # entry with the largest |autodiff − FD| (not at a kink)
    fd_entries: int  # entries checked by finite differences
    kink_entries: int  # of those, entries whose one-sided slopes differ (at a kink)
    kink_violations: int  # kink entries whose gradient lies outside both one-sided slopes
    kinks: int | None = None  # ReLU/leaky-ReLU pre-activations of this layer within the step
    ok_manual: bool = True
    ok_fd: bool = True

    @property
    def ok(self) -> bool:
        return self.ok_manual and self.ok_fd


@dataclass(frozen=True)
class TaylorResult:
    """Remainders `r(h)` of the first-order Taylor expansion and their fitted order in h."""

    h: tuple
    residuals: tuple
    order: float  # ≈ 2 for a correct gradient, ≈ 1 for a wrong one; nan when J is linear

    @property
    def ok(self) -> bool:
        return math.isnan(self.order) or self.order > 1.5

    def __str__(self) -> str:
        if math.isnan(self.order):
            return "Taylor test: remainders at round-off (J is linear along v): consistent"
        verdict = "second order: gradient consistent" if self.ok else \
            "first order: gradient WRONG"
        return f"Taylor test: remainder order {self.order:.2f} in h ({verdict})"


@dataclass(frozen=True)
class GradientReport:
    """Result of a three-way check; ``ok`` is True when every leaf passes."""

    leaves: tuple
    eps: float
    tol_manual: float
    tol_fd: float
    taylor: TaylorResult | None = None
    notes: tuple = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        taylor_ok = self.taylor is None or self.taylor.ok
        return taylor_ok and all(leaf.ok for leaf in self.leaves)

    @property
    def failing(self) -> list[str]:
        """Names of the leaves that fail."""
        return [leaf.name for leaf in self.leaves if not leaf.ok]

    def __getitem__(self, name: str) -> LeafReport:
        for leaf in self.leaves:
            if leaf.name == name:
                return leaf
        raise KeyError(f"no leaf {name!r}; leaves are {[leaf.name for leaf in self.leaves]}")

    def __str__(self) -> str:
        head = (f"gradient check (float64, eps={self.eps:g}): "
                f"{'OK' if self.ok else 'FAILED: ' + ', '.join(self.failing or ['Taylor test'])}")
        rows = [("leaf", "shape", "manual~autodiff", "autodiff~FD", "worst entry", "kinks", "")]
        for leaf in self.leaves:
            kinks = f"{leaf.kink_entries}" + (f" ({leaf.kinks} Z)" if leaf.kinks is not None else "")
            rows.append((leaf.name, str(leaf.shape), f"{leaf.manual_vs_autodiff:.1e}",
                         f"{leaf.autodiff_vs_fd:.1e}", str(leaf.worst_index), kinks,
                         "ok" if leaf.ok else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"thresholds: manual~autodiff <= {self.tol_manual:g}, autodiff~FD <= "
                     f"{self.tol_fd:g}; kinks = FD entries at a ReLU kink (excused when the "
                     "gradient lies between the one-sided slopes)")
        if self.taylor is not None:
            lines.append(str(self.taylor))
        lines.extend(self.notes)
        return "\n".join(lines)


def _to64(tree):
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(cast, tree)


def _leaf_names(tree) -> list[str]:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return paths


def _rel(a, b, floor):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), floor))


def _directional_values(f, theta, steps, idx):
    """J(θ + s e_i) for each step s and index i: array `(len(steps), len(idx))`."""
    def at(i, s):
        return f(theta.at[i].add(s))
    batched = jax.jit(jax.vmap(at, in_axes=(0, None)))
    out = []
    for s in steps:
        vals = [np.asarray(batched(jnp.asarray(idx[k:k + _CHUNK]), s))
                for k in range(0, len(idx), _CHUNK)]
        out.append(np.concatenate(vals) if vals else np.zeros(0))
    return np.stack(out)


def _kinks(f, theta, f0, idx, fwd, bwd, eps):
    """Which entries sit at a kink: their one-sided slopes differ by more than round-off
    (~ε|J|/eps) and by more than `KINK_ASYMMETRY` of the slope, unless the difference halves
    with the step, as curvature's (≈ eps·f'') does.  (At a kink it stays put; near one, where
    only the larger step crosses it, it jumps.)"""
    asym = np.abs(fwd - bwd)
    roundoff = 100 * np.finfo(np.float64).eps * max(1.0, abs(f0)) / eps
    suspect = asym > np.maximum(KINK_ASYMMETRY * np.maximum(np.abs(fwd), np.abs(bwd)), roundoff)
    if not suspect.any():
        return suspect
    half = eps / 2
    plus, minus = _directional_values(f, theta, (half, -half), idx[suspect])
    asym_half = np.abs((plus - f0) / half - (f0 - minus) / half)
    ratio = asym_half / asym[suspect]
    suspect[suspect] = (ratio < 0.35) | (ratio > 0.65)
    return suspect


def _check_structure(manual, auto):
    sm, sa = jax.tree.structure(manual), jax.tree.structure(auto)
    if sm != sa:
        raise ValueError(f"the gradient's tree structure differs from the parameters':\n"
                         f"  gradient:   {sm}\n  parameters: {sa}")
    for name, m, a in zip(_leaf_names(auto), jax.tree.leaves(manual), jax.tree.leaves(auto)):
        if jnp.shape(m) != jnp.shape(a):
            raise ValueError(f"gradient leaf {name} has shape {jnp.shape(m)}, the parameter has "
                             f"{jnp.shape(a)}")


def check_grad(loss_fn, grad_fn, params, *args, eps: float = EPS, tol_manual: float = TOL_MANUAL,
               tol_fd: float = TOL_FD, entries: int | None = None, key=None, taylor: bool = True,
               names=None, kinks=None) -> GradientReport:
    """Check a gradient function of your own against `jax.grad` and finite differences.

    Arguments:
        loss_fn: `loss_fn(params, *args) -> scalar`, written with `jax.numpy` (it is compiled
            with `jax.jit` and batched with `jax.vmap`).
        grad_fn: `grad_fn(params, *args) -> tree like params`, the formula under test
            (compiled with `jax.jit`).
        params: any pytree of float arrays; compared leaf by leaf.
        *args: further arguments of both functions (e.g. `X`, `Y`); float arrays are cast to
            float64 for the check.
        eps: finite-difference step.
        tol_manual, tol_fd: the relative-error thresholds (see the module docstring).
        entries: check at most this many randomly chosen entries per leaf by finite
            differences (all entries when None); needs `key` for the choice, default key 0.
        taylor: also run `taylor_test` on `grad_fn`.
        names, kinks: per-leaf display names and kink counts (used by `check_gradients`).

    Returns:
        a `GradientReport`; ``report.ok`` and ``str(report)`` for the table.
    """
    with jax.enable_x64(True):
        params64, args64 = _to64(params), _to64(args)
        # Compiled: op-by-op dispatch would compile every small operation on its own.
        manual = jax.jit(grad_fn)(params64, *args64)
        auto = jax.jit(jax.grad(loss_fn))(params64, *args64)
        _check_structure(manual, auto)
        theta, unravel = ravel_pytree(params64)
        g_auto = np.asarray(ravel_pytree(auto)[0])
        g_manual = np.asarray(ravel_pytree(_to64(manual))[0])
        f = jax.jit(lambda th: loss_fn(unravel(th), *args64))
        f0 = float(f(theta))

        sizes = [int(np.size(x)) for x in jax.tree.leaves(params64)]
        offsets = np.cumsum([0, *sizes])
        rng = np.random.default_rng(np.asarray(jax.random.key_data(
            key if key is not None else jax.random.key(0))).ravel())
        scale = max(1.0, float(np.linalg.norm(g_auto)))
        chosen = []
        for i, n in enumerate(sizes):
            idx = np.arange(offsets[i], offsets[i + 1])
            if entries is not None and n > entries:
                idx = np.sort(rng.choice(idx, entries, replace=False))
            # Always include the entries where manual and autodiff disagree.
            bad = np.flatnonzero(np.abs(g_manual[offsets[i]:offsets[i + 1]]
                                        - g_auto[offsets[i]:offsets[i + 1]]) > tol_manual * scale)
            chosen.append(np.union1d(idx, bad + offsets[i]).astype(np.int64))
        idx_all = np.concatenate(chosen)
        plus, minus = _directional_values(f, theta, (eps, -eps), idx_all)
        central = (plus - minus) / (2 * eps)
        fwd, bwd = (plus - f0) / eps, (f0 - minus) / eps

        fd = np.full_like(g_auto, np.nan)
        lo, hi = np.full_like(g_auto, np.nan), np.full_like(g_auto, np.nan)
        fd[idx_all], lo[idx_all], hi[idx_all] = central, np.minimum(fwd, bwd), np.maximum(fwd, bwd)
        at_kink = np.zeros(g_auto.shape, bool)
        at_kink[idx_all] = _kinks(f, theta, f0, idx_all, fwd, bwd, eps)
        slack = tol_fd * scale + 1e-7 * max(1.0, abs(f0))

        leaves = []
        names = names or _leaf_names(params64)
        shapes = [jnp.shape(x) for x in jax.tree.leaves(params64)]
        for i, (name, shape) in enumerate(zip(names, shapes)):
            sl = slice(offsets[i], offsets[i + 1])
            a, m_, k = g_auto[sl], g_manual[sl], at_kink[sl]
            sel = chosen[i] - offsets[i]
            lo_l, hi_l = lo[sl], hi[sl]

            def in_interval(g, lo_l=lo_l, hi_l=hi_l):
                return (g >= lo_l - slack) & (g <= hi_l + slack)
            # Disagreements at a kink are allowed when both sides are valid one-sided slopes.
            excused = k & in_interval(m_) & in_interval(a)
            keep = ~excused
            rel_manual = _rel(m_[keep], a[keep], 1e-12 * scale) if keep.any() else 0.0
            smooth = np.zeros_like(k)
            smooth[sel] = ~k[sel]
            rel_fd = _rel(a[smooth], fd[sl][smooth], 1e-8 * max(1.0, abs(f0))) \
                if smooth.any() else 0.0
            violations = int((k & ~(in_interval(a) & in_interval(m_))).sum())
            diff = np.where(keep, np.abs(m_ - a), 0.0)
            fd_diff = np.where(smooth, np.abs(a - np.nan_to_num(fd[sl])), 0.0)
            leaves.append(LeafReport(
                name=name, shape=tuple(shape), manual_vs_autodiff=rel_manual,
                autodiff_vs_fd=rel_fd,
                worst_index=tuple(int(j) for j in np.unravel_index(np.argmax(diff), shape)),
                worst_fd_index=tuple(int(j) for j in np.unravel_index(np.argmax(fd_diff), shape)),
                fd_entries=int(len(sel)), kink_entries=int(k[sel].sum()),
                kink_violations=violations, kinks=None if kinks is None else kinks[i],
                ok_manual=rel_manual <= tol_manual and np.all(np.isfinite(m_)),
                ok_fd=rel_fd <= tol_fd and violations == 0))
        # Directions along which finite differences saw a kink would make any gradient look
        # first-order; the Taylor test moves only along the others.
        result = taylor_test(loss_fn, grad_fn, params64, *args64, key=key,
                             mask=~at_kink) if taylor else None
    return GradientReport(tuple(leaves), eps, tol_manual, tol_fd, result)


def taylor_test(loss_fn, grad_fn, params, *args, key=None,
                h=tuple(10.0 ** -k for k in range(1, 8)), mask=None) -> TaylorResult:
    """Fit the order of `r(h) = |J(θ + h v) − J(θ) − h ⟨g, v⟩|` over the step sizes `h`.

    `g = grad_fn(params, *args)` and `v` a random unit direction from `key` (default key 1).
    A correct gradient gives order ≈ 2, a wrong one ≈ 1, whatever the step sizes.  `mask`
    (a boolean vector over the flattened parameters) restricts `v` to the True entries.
    """
    with jax.enable_x64(True):
        params64, args64 = _to64(params), _to64(args)
        theta, unravel = ravel_pytree(params64)
        g, _ = ravel_pytree(_to64(jax.jit(grad_fn)(params64, *args64)))
        v = jax.random.normal(key if key is not None else jax.random.key(1), theta.shape,
                              jnp.float64)
        if mask is not None:
            v = jnp.where(jnp.asarray(mask), v, 0.0)
        v = v / jnp.linalg.norm(v)
        f = jax.jit(lambda th: loss_fn(unravel(th), *args64))
        f0, slope = float(f(theta)), float(g @ v)
        values = np.asarray(jax.vmap(lambda s: f(theta + s * v))(jnp.asarray(h)))
        r = np.abs(values - f0 - np.asarray(h) * slope)
    floor = 10 * np.finfo(np.float64).eps * max(1.0, abs(f0))  # round-off in J(θ + h v) − J(θ)
    usable = r > floor
    if usable.sum() < 2:
        return TaylorResult(tuple(h), tuple(r.tolist()), float("nan"))
    hs, rs = np.log(np.asarray(h)[usable]), np.log(r[usable])
    # The median of the slopes between neighbouring steps: one step that crosses a ReLU kink
    # (or meets round-off) bends one slope, not the verdict.
    order = float(np.median(np.diff(rs) / np.diff(hs)))
    return TaylorResult(tuple(h), tuple(r.tolist()), order)


def check_gradients(net, params, X, Y, **options) -> GradientReport:
    """Three-way check of `net.backprop` against `jax.grad(net.cost)` and finite differences.

    Arguments:
        net: an `MLP`; params: its parameters; `X` `(n_x, m)`, `Y` `(n_y, m)`.
        **options: passed to `check_grad` (`eps`, `tol_manual`, `tol_fd`, `entries`, `key`,
            `taylor`).

    Returns:
        a `GradientReport` with one row per leaf (``W[1]``, ``b[1]``, …); the kinks column also
        counts the layer's ReLU/leaky-ReLU pre-activations within the step of 0.
    """
    from .backprop import backprop
    from .network import cost, forward_cache

    net.backprop(params, X, Y)  # validates params, X and Y with clear errors
    eps = options.get("eps", EPS)
    names, kinks = [], []
    with jax.enable_x64(True):
        _, cache = forward_cache(net, _to64(params), _to64(jnp.asarray(X)))
        for l, (layer, name) in enumerate(zip(cache, net.activations), start=1):
            count = None
            if name in ("relu", "leaky_relu"):
                tau = eps * max(1.0, float(jnp.max(jnp.abs(layer["A_prev"]))))
                count = int(jnp.sum(jnp.abs(layer["Z"]) <= tau))
            names += [f"W[{l}]", f"b[{l}]"]
            kinks += [count, count]
    return check_grad(lambda p, X, Y: cost(net, p, X, Y),
                      lambda p, X, Y: backprop(net, p, X, Y),
                      params, jnp.asarray(X), jnp.asarray(Y), names=names, kinks=kinks, **options)
