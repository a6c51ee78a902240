"""Three-way gradient verification: a hand-written gradient, `jax.grad`, and finite differences.

Everything runs in float64 inside ``jax.enable_x64(True)`` (a context manager), so the caller
need not enable x64 and the global setting is left as it was.  Float arguments are cast to
float64; integer arguments (token ids, indices) are passed on unchanged.

What ``report.ok`` guarantees (ε = 2.2e-16, float64's machine epsilon; docs/verification.md):

* **manual ~ autodiff at every entry**: per leaf ``‖m − a‖ / max(‖m‖, ‖a‖, 1e-4·‖∇J‖) ≤
  TOL_MANUAL = 1e-10``.  Both are exact up to round-off (a few hundred ε), so a correct
  formula passes with 1e4 of margin, and a bug of relative size 1e-7 in one entry fails.  The
  floor (an absolute allowance of 1e-14·‖∇J‖) keeps a leaf whose true gradient is 0 from
  failing on round-off.  The only entries left out are kink entries excused below.
* **autodiff ~ finite differences**: central differences with step ``EPS = 1e-6`` (truncation
  ~eps²·J‴ ≈ 1e-12, round-off ~ROUNDOFF·ε·|J|/eps ≈ 2e-9·|J|); per leaf, over the entries
  where J is differentiable, ``‖a − fd‖ / max(‖a‖, ‖fd‖, ‖δ‖/TOL_FD) ≤ TOL_FD = 1e-6``, δ each
  entry's round-off bound (3·ROUNDOFF·ε·max|J|/eps), so a gradient below what differences of J
  resolve is not failed on noise.  This proves the loss and its autodiff (a wrong
  ``jax.custom_jvp`` fails here).
* **kinks** (ReLU at 0, ties of a max): an entry whose central difference disagrees with
  autodiff, or where manual and autodiff disagree and the forward and backward differences
  differ, is measured again: one-sided differences at steps 64·eps … eps/8 on each side,
  Richardson-extrapolated, each with an error estimate (successive extrapolations plus
  round-off; the step with the smallest estimate wins, which also steps over a kink a little
  way off).  Slopes s⁻, s⁺ that differ by more than 4× their estimates put the entry *at a
  kink* (estimates must be at most 0.1·TOL_FD·‖leaf‖ + 10·ROUNDOFF·ε·|J|/eps, else the entry
  is *unresolved* and only manual~autodiff judges it).  There J has no derivative: autodiff's
  value is a convention (jaxnet's g'(0): ReLU 0, leaky ReLU 1), reported (the side it took)
  but not judged, since at coupled kinks jax.grad can lie outside both slopes.  The
  hand-written value must equal autodiff's, or else s⁻ or s⁺ to within 4× that slope's error
  estimate (a formula that chose the other one-sided derivative: *excused*, and counted).  All
  excused entries together must be one-sided too, along their joint direction (per-entry
  slopes from different pieces, like (1, 1) for max(x₁, x₂) at a tie, are no derivative),
  else every excuse is withdrawn.  A kink entry neither equal to autodiff nor excused is a
  *kink violation*: a failure.  The midpoint of the two slopes is never excused.
* **a perturbed point**: when the given point has kinks or unresolved entries (or
  `check_gradients` counts pre-activations within a step of a ReLU kink), everything is
  checked again at ``θ + PERTURB·(|θ| + rms θ)·z``, PERTURB = 1e-3, z ~ N(0, 1) from
  ``np.random.default_rng(perturb_seed)``, where the pre-activations have moved off their
  kinks; there manual~autodiff and autodiff~FD must hold with no excuse.  If an entry is still
  at a kink or unresolved there, the next seed is tried (three in all); kinks at all three
  fail.
* **non-finite** gradients (hand-written or autodiff, named by leaf) and a non-finite loss fail.

The Taylor test (`taylor_test`) needs no eps: along ``TAYLOR_DIRECTIONS = 4`` random unit
directions v the remainder ``r(h) = |J(θ + h v) − J(θ) − h ⟨g, v⟩|`` (h = 1e-1 … 1e-7) falls like
h² when g is the gradient and like h when it is not; its order is read at the two smallest
steps whose remainder is 100× above round-off.  An error δ of g shows only where ``|⟨δ, v⟩|``
exceeds ~h·|vᵀ∇²J v| at those steps (h ~ 1e-6): a relative error of the whole gradient above
~1e-5, and one confined to a few entries of a large network hardly ever; those are the job of
the entry-by-entry comparisons above.  A direction along which J has a kink at θ (``J(θ+hv) +
J(θ−hv) − 2J(θ)`` falls like h, not h²), or whose remainders are all at round-off, says
nothing; with no usable direction the test is *inconclusive*, never a pass, and ``report.ok``
rests on the other checks.  A non-finite loss or gradient fails it.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TOL_MANUAL = 1e-10
TOL_FD = 1e-6
EPS = 1e-6
ROUNDOFF = 8  # model of one loss evaluation's round-off: |error| <= ROUNDOFF·ε·|J|
MANUAL_FLOOR = 1e-4  # manual~autodiff denominator never below MANUAL_FLOOR·‖∇J‖
KINK_STEPS = tuple(EPS * 2.0 ** (6 - k) for k in range(10))  # 64·eps … eps/8 (scaled with eps)
PERTURB = 1e-3
PERTURB_TRIES = 3
TAYLOR_DIRECTIONS = 4
TAYLOR_STEPS = tuple(10.0 ** -k for k in range(1, 8))
_E = float(np.finfo(np.float64).eps)
_CHUNK = 512  # finite-difference evaluations per vmapped call, at most
MEMORY_BUDGET = 2 * 2**30  # bytes of XLA temporaries one vmapped batch of evaluations may use
# On CPU a batch whose temporaries outgrow the caches only loses time (measured: the LSTM's
# evaluations take 25 ms each in batches of 4, 55 ms in batches of 64), so CPU batches stop
# at this size unless the budget is smaller still; accelerators fill the whole budget.
_CPU_BATCH_BYTES = 32 * 2**20
# The check's few hundred evaluations are dominated by compiling them: on CPU it compiles at
# LLVM's optimisation level 0, which halves the compile time (transformer: 3.7 -> 2.0 s CPU for
# the gradients, 1.6 -> 0.9 s for the evaluations) and leaves the matrix products, which call
# Eigen, as fast as before.
_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@dataclass(frozen=True)
class LeafReport:
    """The comparison for one leaf of the parameter tree (e.g. ``W[1]``)."""

    name: str
    shape: tuple
    manual_vs_autodiff: float  # ‖manual − autodiff‖ / max norm over every entry not excused
    autodiff_vs_fd: float  # the same against finite differences, entries off kinks
    worst_index: tuple  # entry with the largest |manual − autodiff| (not excused)
    worst_fd_index: tuple  # entry with the largest |autodiff − FD| (off kinks)
    fd_entries: int  # entries checked by finite differences
    kink_entries: int  # of those, entries at a kink (one-sided slopes differ)
    kink_violations: int  # kink entries where manual is neither autodiff nor a one-sided slope
    kinks: int | None = None  # layer pre-activations within the step of a kink (check_gradients)
    manual_sides: tuple = (0, 0, 0)  # kink entries where manual = left slope, right, neither
    autodiff_sides: tuple = (0, 0, 0)  # the same for autodiff (its convention, not judged)
    excused: int = 0  # kink entries where manual ≠ autodiff but = a one-sided slope (passes)
    unresolved: int = 0  # FD entries whose slopes the differences could not resolve
    perturbed_manual_vs_autodiff: float | None = None  # at the perturbed point, if checked
    perturbed_autodiff_vs_fd: float | None = None
    ok_manual: bool = True
    ok_fd: bool = True
    ok_perturbed: bool = True
    layer: str = ""  # the type of the layer holding the leaf (check_gradients), e.g. "Dense"

    @property
    def ok(self) -> bool:
        return self.ok_manual and self.ok_fd and self.ok_perturbed


@dataclass(frozen=True)
class TaylorResult:
    """Remainders `r(h)` of the first-order Taylor expansion along random directions.

    ``order`` is the smallest fitted order over the usable directions (≈ 2 or more for a
    correct gradient, ≈ 1 for a wrong one; nan when no direction is usable); ``residuals`` are
    those of the direction that gave it.  ``status`` is "pass", "fail" or "inconclusive";
    ``ok`` is True only for "pass".
    """

    h: tuple
    residuals: tuple
    order: float
    status: str = "pass"
    orders: tuple = ()  # per direction; nan where unusable
    reasons: tuple = ()  # per direction: "ok", "kink", "round-off", "masked", "non-finite"
    where: str = ""  # "" (the given point) or "at the perturbed point (seed s)"

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @property
    def inconclusive(self) -> bool:
        return self.status == "inconclusive"

    def __str__(self) -> str:
        where = f" {self.where}" if self.where else ""
        head = f"Taylor test ({len(self.reasons)} random directions{where})"
        if "non-finite" in self.reasons:
            return f"{head}: FAILED: the loss or the gradient is not finite"
        if self.status == "inconclusive":
            says = {"kink": "J has a kink at θ along {}", "round-off": "remainders at "
                    "round-off along {}", "masked": "{} masked out"}
            why = "; ".join(says[r].format(self.reasons.count(r))
                            for r in dict.fromkeys(self.reasons))
            return (f"{head}: INCONCLUSIVE: no usable direction ({why}); the verdict rests on "
                    "the other checks")
        verdict = "second order: gradient consistent" if self.ok else "first order: gradient WRONG"
        return f"{head}: remainder order {self.order:.2f} in h ({verdict})"


@dataclass(frozen=True)
class GradientReport:
    """Result of a three-way check; ``ok`` is True when every leaf passes and neither the
    Taylor test nor the perturbed-point check failed (an inconclusive Taylor test does not
    count either way), and every per-layer report in ``layers`` passes.

    ``title`` names what was checked (`check_layer`: the layer, e.g. ``LSTM(64)``); ``layers``
    holds `check_gradients`' per-layer reports, one per layer in order, and
    ``first_wrong_layer`` the index (0-based, into ``layers``; printed 1-based as in ``W[2]``)
    of the first layer from the output down whose own backward is wrong, or None."""

    leaves: tuple
    eps: float
    tol_manual: float
    tol_fd: float
    taylor: TaylorResult | None = None
    notes: tuple = field(default_factory=tuple)
    perturbed: str | None = None  # the perturbed-point line, when that check ran
    perturbed_ok: bool = True
    loss_finite: bool = True
    title: str = ""
    layers: tuple = ()
    first_wrong_layer: int | None = None

    @property
    def ok(self) -> bool:
        return self._own_ok and all(r.ok for r in self.layers)

    @property
    def _own_ok(self) -> bool:
        taylor_ok = self.taylor is None or not self.taylor.failed
        return (taylor_ok and self.perturbed_ok and self.loss_finite
                and all(leaf.ok for leaf in self.leaves))

    def _what_failed(self) -> list[str]:
        """The failing leaves, else what failed instead (empty when this check passed)."""
        if self._own_ok:
            return []
        return list(self.failing) or (["loss not finite"] if not self.loss_finite else
                                      ["perturbed point"] if not self.perturbed_ok else
                                      ["Taylor test"])

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
        what = self._what_failed()
        if self.first_wrong_layer is not None:  # name the layer at fault, then the network
            bad = self.layers[self.first_wrong_layer]
            what = [f"{bad.title}: {', '.join(bad._what_failed())}" + (
                f" (whole network: {', '.join(what)})" if what else
                " (the whole network's gradient agrees)")]
        head = (f"{self.title + ': ' if self.title else ''}gradient check (float64, "
                f"eps={self.eps:g}): {'OK' if self.ok else 'FAILED: ' + ', '.join(what)}")
        pert = self.perturbed is not None
        typed = any(leaf.layer for leaf in self.leaves)
        rows = [("leaf",) + (("layer",) if typed else ()) + ("shape", "manual~autodiff",
                                                              "autodiff~FD", "worst entry",
                                                              "kinks")
                + (("perturbed: manual~autodiff", "autodiff~FD") if pert else ()) + ("",)]
        for leaf in self.leaves:
            kinks = f"{leaf.kink_entries}"
            if leaf.kinks is not None:
                kinks += f" ({leaf.kinks} Z)"
            extra = ()
            if pert:
                extra = tuple("-" if v is None else f"{v:.1e}" for v in
                              (leaf.perturbed_manual_vs_autodiff, leaf.perturbed_autodiff_vs_fd))
            rows.append((leaf.name,) + ((leaf.layer,) if typed else ())
                        + (str(leaf.shape), f"{leaf.manual_vs_autodiff:.1e}",
                         f"{leaf.autodiff_vs_fd:.1e}", str(leaf.worst_index), kinks) + extra
                        + ("ok" if leaf.ok else "FAIL",))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"thresholds: manual~autodiff <= {self.tol_manual:g} (every entry), "
                     f"autodiff~FD <= {self.tol_fd:g}; kinks = FD entries at a kink (one-sided "
                     "slopes differ)")
        for leaf in self.leaves:
            if leaf.kink_entries:
                (ml, mr, mn), (al, ar, an) = leaf.manual_sides, leaf.autodiff_sides
                lines.append(f"  {leaf.name}: {leaf.kink_entries} kink entries; slope taken "
                             f"(left, right, neither): autodiff {al}, {ar}, {an}; manual {ml}, "
                             f"{mr}, {mn}; manual ≠ autodiff at "
                             f"{leaf.excused + leaf.kink_violations} ({leaf.excused} excused as "
                             f"one-sided, {leaf.kink_violations} not)")
        lines.extend(self.notes)
        if self.perturbed is not None:
            lines.append(self.perturbed)
        if self.taylor is not None:
            lines.append(str(self.taylor))
        if self.layers:
            lines.append("per layer (each layer's own backward, at the input and upstream "
                         "gradient the network gives it):")
            for r in self.layers:
                worst = ", ".join(f"{leaf.name} {leaf.manual_vs_autodiff:.0e}"
                                  for leaf in r.leaves)
                lines.append(f"  {r.title}: " + ("OK" if r.ok else
                                                 "FAILED: " + ", ".join(r._what_failed()))
                             + f" (manual~autodiff: {worst})")
            for r in self.layers:
                if not r.ok:
                    lines.extend("    " + line for line in str(r).splitlines())
        return "\n".join(lines)


class CheckMemoryError(MemoryError):
    """The gradient check ran out of memory; the message says what to reduce."""


_RUNTIME_ERRORS = tuple(e for e in (getattr(jax.errors, "JaxRuntimeError", None),
                                    getattr(jax.errors, "XlaRuntimeError", None)) if e)


def _is_oom(err) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _friendly_oom(fn):
    """XLA's out-of-memory error inside `fn` becomes a `CheckMemoryError` with advice."""
    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _RUNTIME_ERRORS as err:
            if not _is_oom(err):
                raise
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            budget = kwargs.get("memory_budget") or MEMORY_BUDGET
            raise CheckMemoryError(
                f"the gradient check ran out of memory ({first.strip()}): check fewer "
                "examples (the last axis of X), fewer finite-difference entries (entries=), "
                f"or pass a smaller memory_budget= (now {budget:,} bytes per batch of loss "
                "evaluations)") from err
    return checked


# --- flattening, argument handling and the compiled evaluations -------------------------------
@dataclass(frozen=True)
class _Spec:
    """How the flat float64 vector θ maps back to the parameter tree (hashable: static)."""

    treedef: Any
    shapes: tuple

    @property
    def sizes(self):
        return [math.prod(s) for s in self.shapes]

    def unravel(self, theta):
        out, at = [], 0
        for shape, n in zip(self.shapes, self.sizes):
            out.append(theta[at:at + n].reshape(shape))
            at += n
        return jax.tree.unflatten(self.treedef, out)


def _split_args(args):
    """Array leaves (float ones cast to float64) are traced; other leaves stay static."""
    leaves, treedef = jax.tree.flatten(args)
    dyn, static = [], []
    for x in leaves:
        if isinstance(x, (jax.Array, np.ndarray, np.generic)) or not _hashable(x):
            x = jnp.asarray(x)
            dyn.append(x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x)
            static.append(None)
        else:
            static.append((x,))
    return dyn, (treedef, tuple(static))


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _merge(dyn, static):
    treedef, slots = static
    it = iter(dyn)
    return jax.tree.unflatten(treedef, [next(it) if s is None else s[0] for s in slots])


def _loss(loss_fn, spec, static, theta, dyn):
    return loss_fn(spec.unravel(theta), *_merge(dyn, static))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _grads(loss_fn, grad_fn, spec, static, theta, dyn):
    """`(J(θ), jax.grad J(θ), grad_fn(θ))`, in one compiled call."""
    f0, a = jax.value_and_grad(_loss, argnums=3)(loss_fn, spec, static, theta, dyn)
    return f0, a, grad_fn(spec.unravel(theta), *_merge(dyn, static))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _values(loss_fn, spec, static, theta, dyn, V, idx, steps):
    """`J(θ + steps[k] u_k)` for every k, with `u_k = e_idx[k]` (a unit vector) when
    `idx[k] ≥ 0` and `u_k = V[−idx[k] − 1]` (a direction) otherwise."""
    def one(i, s):
        point = jnp.where(i >= 0, theta.at[jnp.maximum(i, 0)].add(s),
                          theta + s * V[jnp.maximum(-i - 1, 0)])
        return _loss(loss_fn, spec, static, point, dyn)
    return jax.vmap(one)(idx, steps)


@dataclass
class _Ctx:
    loss_fn: Any
    grad_fn: Any
    spec: _Spec
    static: Any
    dyn: list
    chunk: int = 64
    eps: float = EPS
    compiled: dict = field(default_factory=dict)  # ("grads",) / ("values", chunk) -> executable

    def executable(self, name, fn, args):
        """`fn` (a jitted function) compiled for `args`, once per check (jax's cache keeps it
        for the next check of the same functions and shapes); call it without the static
        arguments."""
        if name not in self.compiled:
            opts = _CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
            self.compiled[name] = fn.lower(*args).compile(compiler_options=opts)
        return self.compiled[name]

    def grads_executable(self, theta):
        return self.executable(("grads",), _grads, (self.loss_fn, self.grad_fn, self.spec,
                                                    self.static, theta, self.dyn))

    def grads(self, theta):
        f0, a, manual = self.grads_executable(theta)(theta, self.dyn)
        _check_structure(manual, self.spec)
        m = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(manual)]
                           or [np.zeros(0)])
        return float(f0), np.asarray(a, np.float64), m

    def values(self, theta, idx, steps, V=None):
        """`J(θ + steps[k] u_k)` (see `_values`), in chunks of one fixed size (one compilation
        serves every evaluation of a check).  `V`: up to `TAYLOR_DIRECTIONS + 1` directions."""
        idx, steps = np.asarray(idx, np.int64), np.asarray(steps, np.float64)
        Vp = np.zeros((TAYLOR_DIRECTIONS + 1, len(theta)))
        if V is not None:
            Vp[:len(V)] = V
        Vp = jnp.asarray(Vp)
        out = np.empty(len(idx))
        for k in range(0, len(idx), self.chunk):
            i, s = idx[k:k + self.chunk], steps[k:k + self.chunk]
            args = self._values_args(theta, Vp, i, s)
            v = self.executable(("values", self.chunk), _values, args)(*args[3:])
            out[k:k + len(i)] = np.asarray(v)[:len(i)]
        return out

    def _values_args(self, theta, Vp, i, s):
        pad = self.chunk - len(i)
        return (self.loss_fn, self.spec, self.static, theta, self.dyn, Vp,
                jnp.asarray(np.pad(i, (0, pad))), jnp.asarray(np.pad(s, (0, pad))))

    def choose_chunk(self, theta, want, budget=None):
        """Set `chunk`, the one batch size of every vmapped call of this check (a power of two
        ≤ `want`), from the model's memory; see `_choose_chunk`."""
        self.chunk = _choose_chunk(self, theta, want, MEMORY_BUDGET if budget is None
                                   else budget)
        return self.chunk


def _memory(compiled) -> int | None:
    """Bytes XLA reserves for a compiled call besides its arguments (temporaries and outputs);
    None where the backend reports no memory analysis.  The executable is the one the check
    then runs, so the analysis costs no extra compilation."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, AttributeError):
        return None
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes) + int(stats.output_size_in_bytes)


def _traced_bytes(fn, *args) -> int:
    """An upper bound on one call's temporaries when XLA gives no analysis: the bytes of every
    intermediate value of `fn`'s traced program (sub-programs included), as if none were freed
    or fused."""
    def walk(jaxpr):
        total = 0
        for eqn in jaxpr.eqns:
            total += sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize
                         for v in eqn.outvars if hasattr(v.aval, "shape"))
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += walk(inner)
        return total
    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def _choose_chunk(ctx, theta, want, budget):
    """The largest power of two ≤ `want` whose batch of loss evaluations fits `budget` bytes.

    One evaluation's memory is bounded first by XLA's memory analysis of the compiled
    `_grads` (J, jax.grad J and the hand-written gradient at θ: a forward pass and more), plus
    the evaluation's own copy of θ; without an analysis, by `_traced_bytes` of the loss.  On
    CPU the batch also stops at `_CPU_BATCH_BYTES`.  The batch is then compiled (the compilation
    every evaluation of the check reuses) and its own analysis checked against `budget`: while
    it is over, the batch is halved.  One evaluation at a time is the least it can do.
    """
    if isinstance(budget, bool) or not (isinstance(budget, numbers.Real) and budget > 0):
        raise ValueError(f"memory_budget must be a positive number of bytes, got {budget!r}")
    n = int(theta.shape[0])
    per_eval = _memory(ctx.grads_executable(theta))
    if per_eval is None:
        per_eval = _traced_bytes(functools.partial(_loss, ctx.loss_fn, ctx.spec, ctx.static),
                                 theta, ctx.dyn)
    per_eval += 8 * n  # the evaluation's own θ + h·u
    limit = min(budget, _CPU_BATCH_BYTES) if jax.default_backend() == "cpu" else budget
    chunk = 1 << max(0, int(want).bit_length() - 1)  # a power of two ≤ want
    while chunk > 1 and chunk * per_eval > limit:
        chunk //= 2
    Vp = jnp.asarray(np.zeros((TAYLOR_DIRECTIONS + 1, n)))
    while True:
        ctx.chunk = chunk
        used = _memory(ctx.executable(("values", chunk), _values, ctx._values_args(
            theta, Vp, np.zeros(0, np.int64), np.zeros(0))))
        if used is None or used <= budget or chunk == 1:
            return chunk
        chunk = max(1, min(chunk // 2, 1 << max(0, int(chunk * budget / used).bit_length() - 1)))


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _check_structure(manual, spec):
    sm = jax.tree.structure(manual)
    if sm != spec.treedef:
        raise ValueError(f"the gradient's tree structure differs from the parameters':\n"
                         f"  gradient:   {sm}\n  parameters: {spec.treedef}")
    names = _leaf_names(jax.tree.unflatten(spec.treedef, list(range(len(spec.shapes)))))
    for name, g, shape in zip(names, jax.tree.leaves(manual), spec.shapes):
        if tuple(jnp.shape(g)) != shape:
            raise ValueError(f"gradient leaf {name} has shape {tuple(jnp.shape(g))}, the "
                             f"parameter has {shape}")


def _prepare(loss_fn, grad_fn, params, args):
    names = _leaf_names(params)
    leaves, treedef = jax.tree.flatten(params)
    flat = []
    for name, x in zip(names, leaves):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"parameter {name} has dtype {x.dtype}: gradients are checked with "
                             "respect to float parameters only")
        flat.append(x.astype(np.float64).ravel())
    spec = _Spec(treedef, tuple(tuple(int(d) for d in np.shape(x)) for x in leaves))
    dyn, static = _split_args(args)
    theta = jnp.asarray(np.concatenate(flat) if flat else np.zeros(0), jnp.float64)
    return _Ctx(loss_fn, grad_fn, spec, static, dyn), theta, names


# --- finite differences: central, then one-sided with Richardson where they disagree ---------
def _one_sided(ctx, theta, f0, idx):
    """Richardson-extrapolated one-sided slopes `(s⁻, e⁻, s⁺, e⁺)` at the entries `idx`, each
    with its error estimate (inf where no step gave a finite, consistent value)."""
    H = np.asarray(KINK_STEPS) * (ctx.eps / EPS)
    k = len(H)
    steps = np.concatenate([np.tile(H, len(idx)), np.tile(-H, len(idx))])
    vals = ctx.values(theta, np.concatenate([np.repeat(idx, k)] * 2), steps)
    vp, vm = vals[:len(idx) * k].reshape(-1, k), vals[len(idx) * k:].reshape(-1, k)
    with np.errstate(invalid="ignore", over="ignore"):
        noise = ROUNDOFF * _E * np.maximum(abs(f0), np.nanmax(np.abs(np.concatenate(
            [vp, vm], 1)), axis=1, initial=0.0))[:, None]
        out = []
        for D in ((f0 - vm) / H, (vp - f0) / H):  # left slope, then right slope
            R = 2 * D[:, 1:] - D[:, :-1]  # R[:, j] from steps H_j and H_j/2
            err = np.abs(R[:, :-1] - R[:, 1:]) + 10 * noise / H[1:-1]  # error of R[:, j+1]
            err = np.where(np.isfinite(err), err, np.inf)
            best = np.argmin(err, axis=1)
            rows = np.arange(len(idx))
            out += [R[rows, best + 1], err[rows, best]]
    return out


def _measure(ctx, theta, f0, a, m, idx, disputed, leaf_norm, leaf_rms, tol_fd):
    """FD value, error bound and state of every entry of θ (0 not checked, 1 smooth, 2 kink,
    3 unresolved), and the one-sided slopes with their error estimates where measured."""
    n, eps = len(a), ctx.eps
    state = np.zeros(n, np.int8)
    fd, err = np.full(n, np.nan), np.full(n, np.nan)
    side = {k: np.full(n, np.nan) for k in ("sl", "el", "sr", "er")}
    if len(idx) == 0:
        return state, fd, err, side
    vals = ctx.values(theta, np.r_[idx, idx], np.r_[np.full(len(idx), eps),
                                                    np.full(len(idx), -eps)])
    plus, minus = vals[:len(idx)], vals[len(idx):]
    central = (plus - minus) / (2 * eps)
    with np.errstate(invalid="ignore"):
        nu = ROUNDOFF * _E * np.fmax(abs(f0), np.fmax(np.abs(plus), np.abs(minus))) / eps
        dev = np.abs(central - a[idx])
        asym = np.abs(plus + minus - 2 * f0) / eps  # |forward − backward difference|
        # Re-measured one-sided: entries where the central difference disagrees with autodiff,
        # and disputed entries that may sit at a kink (the slopes differ, or autodiff is off).
        suspect = ~np.isfinite(central) \
            | (dev > 0.2 * tol_fd * np.maximum(np.abs(a[idx]), leaf_rms[idx]) + nu) \
            | (disputed[idx] & ((dev > 3 * nu) | (asym > 0.1 * np.abs(m[idx] - a[idx]))))
    state[idx], fd[idx], err[idx] = 1, central, 3 * nu
    sus = idx[suspect]
    if len(sus):
        sl, el, sr, er = _one_sided(ctx, theta, f0, sus)
        resolve = 0.1 * tol_fd * leaf_norm[sus] + 10 * ROUNDOFF * _E * abs(f0) / eps
        ok_l, ok_r = el <= resolve, er <= resolve
        jump = np.abs(sr - sl)
        kink = ok_l & ok_r & (jump > 4 * (el + er))
        smooth = ok_l & ok_r & ~kink
        state[sus] = np.where(kink, 2, np.where(smooth, 1, 3))
        fd[sus] = np.where(smooth, (sl + sr) / 2, np.nan)
        err[sus] = np.where(smooth, 2 * (el + er), np.nan)
        for key, v in zip(("sl", "el", "sr", "er"), (sl, el, sr, er)):
            side[key][sus] = v
    return state, fd, err, side


def _joint_slope(ctx, theta, f0, d):
    """The one-sided slope of J along the unit direction d, and its error estimate."""
    H = np.asarray(KINK_STEPS) * (ctx.eps / EPS)
    vals = ctx.values(theta, np.full(len(H), -1), H, d[None])
    D = (vals - f0) / H
    R = 2 * D[1:] - D[:-1]
    with np.errstate(invalid="ignore"):
        noise = ROUNDOFF * _E * np.fmax(abs(f0), np.nanmax(np.abs(vals), initial=0.0))
        e = np.abs(R[:-1] - R[1:]) + 10 * noise / H[1:-1]
    e = np.where(np.isfinite(e), e, np.inf)
    j = int(np.argmin(e))
    return float(R[j + 1]), float(e[j])


def _leaf_norms(x, offsets):
    return np.array([np.linalg.norm(x[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)])


def _point(ctx, theta, idx_sampled, tol_manual, tol_fd, strict):
    """Every comparison at one point θ.  `strict`: no kink excuses (the perturbed point)."""
    f0, a, m = ctx.grads(theta)
    sizes = np.asarray(ctx.spec.sizes)
    offsets = np.cumsum([0, *sizes])
    leaf_of = np.repeat(np.arange(len(sizes)), sizes)
    fin_a, fin_m = np.isfinite(a), np.isfinite(m)
    a0, m0 = np.where(fin_a, a, 0.0), np.where(fin_m, m, 0.0)
    norm_a = float(np.linalg.norm(a0))
    la, lm = _leaf_norms(a0, offsets), _leaf_norms(m0, offsets)
    scale_m = np.maximum(np.maximum(la, lm), MANUAL_FLOOR * norm_a)  # per leaf
    with np.errstate(invalid="ignore"):
        disputed = ~fin_m | ~fin_a | (np.abs(m - a) > 0.1 * tol_manual * scale_m[leaf_of])
    idx = np.union1d(idx_sampled, np.flatnonzero(disputed)).astype(np.int64)
    if not math.isfinite(f0):
        idx = np.zeros(0, np.int64)
    leaf_rms = (la / np.sqrt(np.maximum(sizes, 1)))[leaf_of]
    state, fd, err, side = _measure(ctx, theta, f0, a0, m0, idx, disputed, la[leaf_of], leaf_rms,
                                    tol_fd)
    kink = state == 2
    with np.errstate(invalid="ignore"):
        tl = 4 * side["el"] + tol_manual * scale_m[leaf_of]
        tr = 4 * side["er"] + tol_manual * scale_m[leaf_of]
        a_left = kink & (np.abs(a - side["sl"]) <= tl)
        a_right = kink & (np.abs(a - side["sr"]) <= tr)
        m_left = kink & (np.abs(m - side["sl"]) <= tl)
        m_right = kink & (np.abs(m - side["sr"]) <= tr)
    excused = np.zeros_like(kink) if strict else kink & disputed & (m_left | m_right)
    joint_note = None
    if excused.sum() >= 2:  # the excused entries must be one-sided together, too
        d = np.where(excused, np.where(m_right, 1.0, -1.0), 0.0)
        d /= np.linalg.norm(d)
        slope, e = _joint_slope(ctx, theta, f0, d)
        claimed = float(m[excused] @ d[excused])
        if not abs(slope - claimed) <= 4 * e + tol_manual * norm_a:
            joint_note = (f"  the {int(excused.sum())} excused kink entries are not one-sided "
                          f"together: the slope along their joint direction is {slope:.6g}, "
                          f"the hand-written gradient gives {claimed:.6g}: excuses withdrawn")
            excused[:] = False
    violation = kink & disputed & ~excused  # hand-written: neither autodiff nor one-sided
    leaves = []
    for i, shape in enumerate(ctx.spec.shapes):
        sl_ = slice(offsets[i], offsets[i + 1])
        ai, mi, ki, kp = a[sl_], m[sl_], kink[sl_], ~excused[sl_]
        ok_a, ok_m = bool(fin_a[sl_].all()), bool(fin_m[sl_].all())
        rel_m = math.nan
        if ok_a and ok_m:  # numerator: the entries not excused; denominator: the whole leaf
            num = float(np.linalg.norm((mi - ai)[kp]))
            rel_m = 0.0 if num == 0 else num / scale_m[i]
        smooth = state[sl_] == 1
        rel_fd = math.nan if not ok_a else _rel(ai[smooth], fd[sl_][smooth],
                                                float(np.linalg.norm(err[sl_][smooth])) / tol_fd)
        with np.errstate(invalid="ignore"):
            diff = np.where(kp, np.nan_to_num(np.abs(mi - ai), nan=np.inf), -1.0)
            fd_diff = np.where(smooth, np.nan_to_num(np.abs(ai - fd[sl_]), nan=np.inf), -1.0)
        violations = int(violation[sl_].sum())
        leaves.append(dict(
            rel_m=rel_m, rel_fd=rel_fd, worst=_argmax(diff, shape),
            worst_fd=_argmax(fd_diff, shape),
            fd_entries=int(((idx >= offsets[i]) & (idx < offsets[i + 1])).sum()),
            kinks=int(ki.sum()), violations=violations, excused=int(excused[sl_].sum()),
            manual_sides=_sides(m_left[sl_], m_right[sl_], ki),
            autodiff_sides=_sides(a_left[sl_], a_right[sl_], ki),
            unresolved=int((state[sl_] == 3).sum()),
            nonfinite=(int((~fin_m[sl_]).sum()), int((~fin_a[sl_]).sum())),
            ok_manual=ok_m and ok_a and rel_m <= tol_manual and violations == 0,
            ok_fd=ok_a and math.isfinite(f0) and rel_fd <= tol_fd))
    return dict(f0=f0, leaves=leaves, kinks=int(kink.sum()),
                unresolved=int((state == 3).sum()), joint_note=joint_note)


def _argmax(v, shape) -> tuple:
    return tuple(int(j) for j in np.unravel_index(int(np.argmax(v)), shape)) if v.size else ()


def _sides(left, right, kink) -> tuple:
    """Kink entries that took the left slope, the right one, neither."""
    return int(left.sum()), int(right.sum()), int((kink & ~left & ~right).sum())


def _rel(x, y, floor):
    """`‖x − y‖ / max(‖x‖, ‖y‖, floor)`, 0 when x = y (also when both are empty)."""
    num = float(np.linalg.norm(x - y)) if len(x) else 0.0
    return 0.0 if num == 0 else num / max(float(np.linalg.norm(x)), float(np.linalg.norm(y)),
                                          floor)


def _rng(key):
    """A numpy generator seeded with the data of the JAX key `key` (no compilation); None
    stands for `jax.random.key(0)`, whose data is [0, 0]."""
    data = np.zeros(2, np.uint32) if key is None else np.asarray(jax.random.key_data(key))
    return np.random.default_rng(data.ravel())


def _perturbation(theta, seed):
    """θ + PERTURB·(|θ| + rms θ)·z, z ~ N(0, 1) from `np.random.default_rng(seed)` (rms θ
    replaced by 1 when θ = 0)."""
    t = np.asarray(theta)
    rms = float(np.sqrt(np.mean(t ** 2))) if t.size else 0.0
    z = np.random.default_rng(seed).standard_normal(t.size)
    return jnp.asarray(t + PERTURB * (np.abs(t) + (rms if rms > 0 else 1.0)) * z)


@_friendly_oom
def check_grad(loss_fn, grad_fn, params, *args, eps: float = EPS, tol_manual: float = TOL_MANUAL,
               tol_fd: float = TOL_FD, entries: int | None = None, key=None, taylor: bool = True,
               names=None, kinks=None, perturb: bool | None = None,
               perturb_seed: int = 0, memory_budget: int | None = None) -> GradientReport:
    """Check a gradient function of your own against `jax.grad` and finite differences.

    Arguments:
        loss_fn: `loss_fn(params, *args) -> scalar`, written with `jax.numpy` (compiled with
            `jax.jit` and batched with `jax.vmap`).
        grad_fn: `grad_fn(params, *args) -> tree like params`, the formula under test
            (compiled with `jax.jit`).
        params: any pytree of float arrays of any rank; compared leaf by leaf.
        *args: further arguments of both functions (e.g. `X`, `Y`, token ids); float arrays
            are cast to float64, integer arrays are passed unchanged, non-array values
            (Python numbers, strings) are passed as compile-time constants.
        eps: the central-difference step (one-sided steps at kinks are 64·eps … eps/8).
        tol_manual, tol_fd: the relative-error thresholds (module docstring: 1e-10, 1e-6).
        entries: check at most this many randomly chosen entries per leaf by finite
            differences (all entries when None), always adding every entry where the
            hand-written gradient and autodiff disagree.  Manual~autodiff is always compared
            at every entry.
        key: seeds the choice of `entries` and the Taylor test's directions; default
            `jax.random.key(0)`.
        taylor: also run the Taylor test (at the given point; at the perturbed point when the
            given point has kinks).
        names, kinks: per-leaf display names and kink counts (used by `check_gradients`); a
            positive kink count also asks for the perturbed-point check.
        perturb: True: always repeat the check at a perturbed point; False: never; None
            (default): when the given point has kinks or unresolved entries.
        perturb_seed: the first seed of the perturbation (then +1, +2 if kinks remain).
        memory_budget: bytes of XLA temporaries one vmapped batch of loss evaluations may use
            (default `MEMORY_BUDGET`, 2 GiB); the batch size follows from it (docs/verification.md,
            "Memory and time of the check").  It changes only how many evaluations run at once,
            never which, nor the verdict.

    Raises:
        CheckMemoryError: (a `MemoryError`) when XLA runs out of memory anyway; its message
            says what to reduce.

    Returns:
        a `GradientReport`: ``report.ok``, ``report.failing``, ``report["W[1]"]`` and
        ``str(report)`` for the table.  What ``ok`` guarantees: the module docstring.
    """
    with jax.enable_x64(True):
        ctx, theta, leaf_names = _prepare(loss_fn, grad_fn, params, args)
        ctx.eps = float(eps)
        names = list(names) if names is not None else leaf_names
        sizes = ctx.spec.sizes
        offsets = np.cumsum([0, *sizes])
        rng = _rng(key)
        chosen = []
        for i, n in enumerate(sizes):
            idx = np.arange(offsets[i], offsets[i + 1])
            if entries is not None and n > entries:
                idx = np.sort(rng.choice(idx, entries, replace=False))
            chosen.append(idx)
        idx_sampled = np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, np.int64)
        # one chunk size per check, a power of two: one compilation serves every evaluation
        ctx.choose_chunk(theta, min(_CHUNK, max(16, 1 << (2 * len(idx_sampled) - 1).bit_length())),
                         memory_budget)
        here = _point(ctx, theta, idx_sampled, tol_manual, tol_fd, strict=False)
        notes = []
        for name, leaf in zip(names, here["leaves"]):
            bad_m, bad_a = leaf["nonfinite"]
            if bad_m or bad_a:
                notes.append(f"  {name}: non-finite gradient entries: {bad_m} hand-written, "
                             f"{bad_a} autodiff")
            if leaf["unresolved"]:
                notes.append(f"  {name}: {leaf['unresolved']} entries where finite differences "
                             "could not resolve the slope (checked manual~autodiff only)")
        if not math.isfinite(here["f0"]):
            notes.append(f"  the loss is not finite at params ({here['f0']})")
        if here["joint_note"]:
            notes.append(here["joint_note"])
        has_kinks = here["kinks"] > 0 or here["unresolved"] > 0 or any(kinks or [])
        there, line, seed = None, None, None
        if math.isfinite(here["f0"]) and (perturb or (perturb is None and has_kinks)):
            for attempt in range(PERTURB_TRIES):
                seed = perturb_seed + attempt
                theta2 = _perturbation(theta, seed)
                there = _point(ctx, theta2, idx_sampled, tol_manual, tol_fd, strict=True)
                if there["kinks"] == 0 and there["unresolved"] == 0:
                    break
            why = "kinks at the given point" if has_kinks else "requested"
            bad = [n for n, lf in zip(names, there["leaves"])
                   if not (lf["ok_manual"] and lf["ok_fd"])]
            if there["kinks"]:
                line = (f"{why}: also checked at perturbed points (seeds {perturb_seed}-{seed}): "
                        f"FAILED: {there['kinks']} entries still at a kink")
            else:
                line = (f"{why}: also checked at a perturbed point (seed {seed}): "
                        + ("OK" if not bad else "FAILED: " + ", ".join(bad))
                        + (f" ({there['unresolved']} entries unresolved there)"
                           if there["unresolved"] else ""))
        leaves = []
        for i, (name, h) in enumerate(zip(names, here["leaves"])):
            t = there["leaves"][i] if there is not None else None
            leaves.append(LeafReport(
                name=name, shape=ctx.spec.shapes[i], manual_vs_autodiff=h["rel_m"],
                autodiff_vs_fd=h["rel_fd"], worst_index=h["worst"], worst_fd_index=h["worst_fd"],
                fd_entries=h["fd_entries"], kink_entries=h["kinks"],
                kink_violations=h["violations"], kinks=None if kinks is None else kinks[i],
                manual_sides=h["manual_sides"], autodiff_sides=h["autodiff_sides"],
                excused=h["excused"], unresolved=h["unresolved"],
                perturbed_manual_vs_autodiff=None if t is None else t["rel_m"],
                perturbed_autodiff_vs_fd=None if t is None else t["rel_fd"],
                ok_manual=h["ok_manual"], ok_fd=h["ok_fd"],
                ok_perturbed=t is None or (t["ok_manual"] and t["ok_fd"])))
        result = None
        if taylor:
            if has_kinks and there is not None and there["kinks"] == 0:
                result = _taylor(ctx, _perturbation(theta, seed), key, None,
                                 f"at the perturbed point (seed {seed})")
            else:
                result = _taylor(ctx, theta, key, None, "")
    return GradientReport(tuple(leaves), eps, tol_manual, tol_fd, result, tuple(notes), line,
                          perturbed_ok=there is None or (there["kinks"] == 0 and all(
                              lf["ok_manual"] and lf["ok_fd"] for lf in there["leaves"])),
                          loss_finite=math.isfinite(here["f0"]))


# --- the Taylor test ---------------------------------------------------------------------------
def _taylor(ctx, theta, key, mask, where, h=TAYLOR_STEPS):
    f0, _, g = ctx.grads(theta)
    hs = np.asarray(h, np.float64)
    k = TAYLOR_DIRECTIONS
    nan = float("nan")
    if not (math.isfinite(f0) and np.isfinite(g).all()):
        return TaylorResult(tuple(h), (), nan, "fail", (nan,) * k, ("non-finite",) * k, where)
    V = _rng(key).standard_normal((k, len(g)))
    if mask is not None:
        V = np.where(np.asarray(mask, bool), V, 0.0)
    norms = np.linalg.norm(V, axis=1)
    usable_dir = norms > 0
    V = V / np.where(usable_dir, norms, 1.0)[:, None]
    steps = np.r_[hs, -hs]
    vals = ctx.values(theta, np.repeat(-1 - np.arange(k), len(steps)), np.tile(steps, k),
                      V).reshape(k, len(steps))
    orders, reasons, residuals = [], [], []
    for d in range(k):
        Jp, Jm = vals[d, :len(hs)], vals[d, len(hs):]
        R = Jp - f0 - hs * float(V[d] @ g)  # signed remainder
        S = np.abs(Jp + Jm - 2 * f0)  # ~h² where J is smooth along v, ~h at a kink
        with np.errstate(invalid="ignore"):
            floor = 100 * ROUNDOFF * _E * np.maximum(abs(f0), np.maximum(np.abs(Jp), np.abs(Jm)))
            use = np.isfinite(Jp) & np.isfinite(Jm) & (np.abs(R) > floor)
        residuals.append(tuple(np.abs(R).tolist()))
        pts = np.flatnonzero(use)[::-1]  # usable steps, smallest first
        # The order is read at the two smallest usable steps, passing over a pair between
        # which R changes sign (r(h) = h²|c + h d| dips to 0 where c + h d does).
        pairs = [(i, j) for i, j in zip(pts, pts[1:]) if R[i] * R[j] > 0]
        if not usable_dir[d]:
            orders.append(nan), reasons.append("masked")
        elif not pairs:
            orders.append(nan), reasons.append("round-off")
        else:
            i1, i2 = pairs[0]  # hs[i1] < hs[i2]
            span = math.log(hs[i2] / hs[i1])
            if S[i1] > floor[i1] and S[i2] > floor[i2] and math.log(S[i2] / S[i1]) / span < 1.5:
                orders.append(nan), reasons.append("kink")  # J not differentiable along v
            else:
                orders.append(math.log(R[i2] / R[i1]) / span), reasons.append("ok")
    good = [i for i in range(k) if reasons[i] == "ok"]
    if not good:
        return TaylorResult(tuple(h), residuals[0], nan, "inconclusive", tuple(orders),
                            tuple(reasons), where)
    worst = min(good, key=lambda i: orders[i])
    status = "pass" if orders[worst] > 1.5 else "fail"
    return TaylorResult(tuple(h), residuals[worst], float(orders[worst]), status, tuple(orders),
                        tuple(reasons), where)


@_friendly_oom
def taylor_test(loss_fn, grad_fn, params, *args, key=None, h=TAYLOR_STEPS,
                mask=None, memory_budget: int | None = None) -> TaylorResult:
    """The Taylor test alone: the order of `r(h) = |J(θ + h v) − J(θ) − h ⟨g, v⟩|` in h.

    Arguments:
        loss_fn, grad_fn, params, *args: as `check_grad`; `g = grad_fn(params, *args)`.
        key: the directions v are the ``TAYLOR_DIRECTIONS = 4`` normalized rows of
            ``np.random.default_rng(jax.random.key_data(key)).standard_normal((4, n))``, n the
            number of parameters; default ``jax.random.key(0)``.
        h: the steps, 1e-1 … 1e-7.
        mask: a boolean vector over the flattened parameters: directions only along its True
            entries.
        memory_budget: as `check_grad`.

    Returns:
        a `TaylorResult`.  Along each direction the order is read at the two smallest steps
        whose remainder is 100× above round-off: a correct gradient gives ≈ 2 (or more) along
        every direction, a wrong one ≈ 1 along some ("fail").  A direction along which J has a
        kink at θ, or whose remainders are all at round-off, is unusable; with none usable the
        result is "inconclusive" (``ok`` and ``failed`` both False).  A non-finite loss or
        gradient fails.  It sees relative errors of the whole gradient above ~1e-5 only (module
        docstring); smaller ones are `check_grad`'s entry-by-entry job.
    """
    with jax.enable_x64(True):
        ctx, theta, _ = _prepare(loss_fn, grad_fn, params, args)
        ctx.choose_chunk(theta, min(_CHUNK, 1 << (2 * TAYLOR_DIRECTIONS * len(h) - 1).bit_length()),
                         memory_budget)
        return _taylor(ctx, theta, key, mask, "", h)


@functools.partial(jax.jit, static_argnums=0)
def _near_kinks(net, params, X, eps):
    """Per layer, the ReLU/leaky-ReLU pre-activations within the FD step of 0 (-1: no kink)."""
    if hasattr(net, "layers"):  # a Sequential: walk its layers
        out, A = [], X
        for layer, p in zip(net.layers, params):
            A_prev = A
            A, cache = layer.forward(p, A_prev)
            name = getattr(layer, "activation", None)
            if name in ("relu", "leaky_relu") and isinstance(cache, dict) and "Z" in cache:
                scale = jnp.max(jnp.abs(A_prev)) if jnp.issubdtype(A_prev.dtype, jnp.floating) \
                    else 1.0
                tau = eps * jnp.maximum(1.0, scale)
                out.append(jnp.sum(jnp.abs(cache["Z"]) <= tau))
            else:
                out.append(jnp.asarray(-1))
        return jnp.stack(out)
    from .network import forward_cache

    _, cache = forward_cache(net, params, X)
    out = []
    for layer, name in zip(cache, net.activations):
        tau = eps * jnp.maximum(1.0, jnp.max(jnp.abs(layer["A_prev"])))
        count = jnp.sum(jnp.abs(layer["Z"]) <= tau)
        out.append(count if name in ("relu", "leaky_relu") else -1)
    return jnp.stack(out)


@_friendly_oom
def check_gradients(net, params, X, Y, **options) -> GradientReport:
    """Three-way check of `net.backprop` against `jax.grad(net.cost)` and finite differences.

    Arguments:
        net: an `MLP` or a `Sequential`; params: its parameters; `X` `(n_x, m)`, `Y` `(n_y, m)`
            (for a `Sequential`, its input and output shapes with the examples last; integer
            ids stay integers).
        per_layer: also check each layer's own backward (`jaxnet.layercheck.layer_reports`:
            at the input the float64 forward pass feeds it, with the upstream gradient that
            autodiff of the layers above sends it).  True (default), False, or
            ``"on_failure"``: only when the network's own check fails (to name the layer at no
            cost for a passing network; the per-layer checks add about a network check's
            compilation).
        layer_entries: finite-difference entries sampled per leaf in the per-layer checks,
            besides every entry where manual and autodiff disagree (default 0: the network's
            own check already proves the forward passes' autodiff against differences).
        **options: passed to `check_grad` (`eps`, `tol_manual`, `tol_fd`, `entries`, `key`,
            `taylor`, `perturb`, `perturb_seed`, `memory_budget`).

    Returns:
        a `GradientReport` with one row per leaf (``W[1]``, ``b[1]``, …, ``Wq[3]``: parameter
        name and layer number; the layer column gives its type); the kinks column also
        counts the layer's ReLU/leaky-ReLU pre-activations within the step of 0, ``(n Z)``;
        when there are any, the check is also repeated at a perturbed point.  With
        ``per_layer``, ``report.layers`` holds one report per layer (leaves ``dx``, ``W``,
        …) and ``report.first_wrong_layer`` the index of the first layer from the output down
        whose own backward is wrong (None if none); the verdict line then names that layer
        and leaf (``FAILED: layer 2 ResidualTanh(): dx``), and ``report.ok`` needs every
        layer to pass too.
    """
    per_layer = options.pop("per_layer", True)
    layer_entries = options.pop("layer_entries", None)
    X, Y = net._check(params, X, Y)  # clear errors for bad params, X or Y
    eps = options.get("eps", EPS)
    with jax.enable_x64(True):
        cast = lambda t: jax.tree.map(
            lambda x: jnp.asarray(x, jnp.float64)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else jnp.asarray(x), t)
        counts = [int(c) for c in _near_kinks(net, cast(params), cast(X), float(eps))]
    # Leaves in tree order: layer by layer, each layer's dict in sorted key order.
    names = [f"{k}[{l}]" for l, p in enumerate(params, start=1) for k in sorted(p)]
    kinks = [None if c < 0 else c for c, p in zip(counts, params) for _ in p]
    # Bound methods of an equal network compare equal: later checks reuse the compilations.
    report = check_grad(net._cost, net._backprop, params, X, Y, names=names, kinks=kinks,
                        **options)
    if per_layer not in (True, False, "on_failure"):
        raise ValueError(f"per_layer must be True, False or 'on_failure', got {per_layer!r}")
    if not per_layer or (per_layer == "on_failure" and report.ok):
        return report
    from .layercheck import layer_reports, with_layers

    return with_layers(report, net, params, layer_reports(
        net, params, X, Y, **{**options, "entries": layer_entries}))
