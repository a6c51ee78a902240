"""Checks that name the wrong layer: one layer alone, every layer of a network, and spot checks
along a training run.

* `check_layer(layer, in_shape)` proves one layer's hand-written `backward` — a vector-Jacobian
  product — against `jax.vjp` of its `forward` and finite differences, with `check_grad`'s
  machinery (Taylor test, kinks, ties, the perturbed point).  The loss is

      J(x, θ) = Σ dy ⊙ y,    y = layer.forward(θ, x)[0]

  whose gradient is exactly what `backward(θ, cache, dy)` returns: `(dx, grads)`.  The report's
  leaves are ``dx`` and the parameter names (``W``, ``b``, ``Wq``, …); an output layer's
  `backward_from_dZ` is checked too, on `J = Σ dZ ⊙ Z` with `Z = cache["Z"]` (leaves
  ``dx (from dZ)``, ``W (from dZ)``, …).
* `layer_reports(net, params, X, Y)` checks every layer of a network the same way, at the input
  `A^[l-1]` the float64 forward pass feeds it and with the upstream gradient `∂J/∂A^[l]` the
  network sends it — computed by `jax.grad` through the layers above (their forward passes
  only), so a wrong backward above does not distort it.  `check_gradients` adds these reports
  to its own (``report.layers``, ``report.first_wrong_layer``).
* `spot_check(net, params, X, Y)` is the cheap check `fit(..., check_every=N)` runs along the
  trajectory: a few columns, a few sampled entries per leaf, no Taylor test.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import activations, losses
from .gradcheck import GradientReport, check_grad

LAYER_ENTRIES = 0  # per-layer checks: finite differences at this many sampled entries per leaf
CHECK_OPTIONS = ("eps", "tol_manual", "tol_fd", "entries", "taylor", "perturb", "perturb_seed",
                 "memory_budget")
SPOT_COLUMNS = 8  # spot_check: the most examples it uses
SPOT_ENTRIES = 4  # spot_check: finite differences at this many entries per leaf


class GradientCheckWarning(RuntimeWarning):
    """`fit(..., check_every=N)` found the hand-written gradient wrong; training stopped."""


# --- naming -----------------------------------------------------------------------------------
def layer_name(layer) -> str:
    """``LSTM(64)``, ``Dense(32, activation='relu')``, ``ResidualTanh()``: the class name with
    the fields that have no default (positionally) and those that differ from their default."""
    cls = type(layer).__name__
    if not dataclasses.is_dataclass(layer):
        own = type(layer).__repr__ is not object.__repr__
        return repr(layer) if own else f"{cls}()"
    parts = []
    for f in dataclasses.fields(layer):
        if not f.init or not f.repr:
            continue
        value = getattr(layer, f.name)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            parts.append(repr(value))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if value != default:
                parts.append(f"{f.name}={value!r}")
    return f"{cls}({', '.join(parts)})"


# --- the loss and the hand-written gradient, as hashable callables ---------------------------
# Frozen dataclasses compare equal for equal layers, so `check_grad`'s compilations (keyed on
# these functions) are reused by a later check of the same layers.
@dataclass(frozen=True)
class _Loss:
    """`J = Σ_k Σ cot_k ⊙ out_k` over the terms `(layer, mode, has_dx)`: mode ``"backward"``
    (out = y, cot = dy) or ``"dZ"`` (out = cache["Z"], cot = dZ).  `tree` holds one
    `(x, params)` pair per term, or `(params,)` when that term's `x` holds integers (then
    passed in `x_ints`).  The terms share no variable, so each one's gradient is its own."""

    terms: tuple

    def __call__(self, tree, x_ints, cots):
        total = 0.0
        for (layer, mode, has_dx), t, x_int, cot in zip(self.terms, tree, x_ints, cots):
            x, p = (t[0], t[1]) if has_dx else (x_int, t[0])
            y, cache = layer.forward(p, x)
            total = total + jnp.sum(cot * (y if mode == "backward" else cache["Z"]))
        return total


@dataclass(frozen=True)
class _Grad:
    """The hand-written gradient of `_Loss`: `backward` (or `backward_from_dZ`) per term."""

    terms: tuple

    def __call__(self, tree, x_ints, cots):
        out = []
        for (layer, mode, has_dx), t, x_int, cot in zip(self.terms, tree, x_ints, cots):
            x, p = (t[0], t[1]) if has_dx else (x_int, t[0])
            _, cache = layer.forward(p, x)
            back = layer.backward if mode == "backward" else layer.backward_from_dZ
            dx, grads = back(p, cache, cot)
            out.append((dx, grads) if has_dx else (grads,))
        return tuple(out)


# --- argument checks --------------------------------------------------------------------------
def _check_layer_object(layer):
    missing = [m for m in ("init", "forward", "backward") if not callable(getattr(layer, m, None))]
    if isinstance(layer, type) or missing:
        raise TypeError(f"check_layer needs a layer instance with init, forward and backward "
                        f"methods, got {layer!r}" + (f" (missing {missing})" if missing else ""))


def _check_shape(in_shape):
    try:
        shape = tuple(in_shape)
    except TypeError:
        raise TypeError(f"in_shape must be a tuple of ints (one example, m left out), got "
                        f"{in_shape!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"in_shape must be a tuple of positive ints (one example, m left out), "
                         f"got {in_shape!r}")
    return tuple(int(s) for s in shape)


def _check_options(options, where):
    unknown = sorted(set(options) - set(CHECK_OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {unknown}; the options of check_grad it "
                        f"takes are {list(CHECK_OPTIONS)}")


def _init(layer, key, in_shape):
    """`layer.init(key, in_shape, dtype=float64)`, with clear errors for protocol violations."""
    try:
        accepts_dtype = "dtype" in inspect.signature(layer.init).parameters or any(
            p.kind == p.VAR_KEYWORD for p in inspect.signature(layer.init).parameters.values())
    except (TypeError, ValueError):
        accepts_dtype = True
    if not accepts_dtype:
        raise TypeError(f"{layer_name(layer)}: init must accept dtype= (the protocol calls "
                        "init(key, in_shape, dtype=...)); pass params=... to check it anyway")
    out = layer.init(key, in_shape, dtype=jnp.float64)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
        raise ValueError(f"{layer_name(layer)}: init must return (params dict, out_shape), got "
                         f"{type(out).__name__}")
    return out[0]


def _floats(params, where):
    if not isinstance(params, dict):
        raise TypeError(f"{where}: params must be a dict of arrays, got {type(params).__name__}")
    out = {}
    for k, v in params.items():
        v = jnp.asarray(v)
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"{where}: params[{k!r}] must hold floating values, got {v.dtype}")
        out[k] = v.astype(jnp.float64)
    return out


def _is_int(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)


def _validate_backward(layer, name, params, x, cot, mode):
    """Run the layer's backward once (abstractly) and check what the protocol promises."""
    what = "backward" if mode == "backward" else "backward_from_dZ"

    def run(p, x, cot):
        _, cache = layer.forward(p, x)
        return getattr(layer, what)(p, cache, cot)

    out = jax.eval_shape(run, params, x, cot)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"{name}: {what} must return (dx, grads), got "
                         f"{type(out).__name__}" + (f" of length {len(out)}"
                                                    if isinstance(out, tuple) else ""))
    dx, grads = out
    if _is_int(x):
        if dx is not None:
            raise ValueError(f"{name}: {what} must return dx = None for integer input")
    elif dx is None or tuple(dx.shape) != tuple(jnp.shape(x)):
        raise ValueError(f"{name}: {what} returned dx of shape "
                         f"{None if dx is None else tuple(dx.shape)}, the input x has "
                         f"{tuple(jnp.shape(x))}")
    if not isinstance(grads, dict) or set(grads) != set(params):
        got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
        raise ValueError(f"{name}: {what} must return grads with the keys of params "
                         f"{sorted(params)}, got {got}")
    for k, g in grads.items():
        if tuple(g.shape) != tuple(params[k].shape):
            raise ValueError(f"{name}: {what} returned grads[{k!r}] of shape {tuple(g.shape)}, "
                             f"params[{k!r}] has {tuple(params[k].shape)}")


# --- one layer ---------------------------------------------------------------------------------
def _terms(layer, title, params, x, cots, modes):
    """`(terms, tree, x_ints, names)` of `_Loss` for one layer, after checking its protocol."""
    has_dx = not _is_int(x)
    for cot, mode in zip(cots, modes):
        _validate_backward(layer, title, params, x, cot, mode)
    names = []
    for mode in modes:
        suffix = "" if mode == "backward" else " (from dZ)"
        names += (["dx" + suffix] if has_dx else []) + [k + suffix for k in sorted(params)]
    if not names:
        raise ValueError(f"{title}: nothing to check: integer input and no parameters")
    terms = tuple((layer, mode, has_dx) for mode in modes)
    tree = tuple((x, params) if has_dx else (params,) for _ in modes)
    x_ints = tuple(None if has_dx else x for _ in modes)
    return terms, tree, x_ints, names


def _check(layer, title, params, x, cots, modes, key, options) -> GradientReport:
    """`check_grad` of `_Grad` against `_Loss` for one layer (inside x64), titled `title`."""
    terms, tree, x_ints, names = _terms(layer, title, params, x, cots, modes)
    report = check_grad(_Loss(terms), _Grad(terms), tree, x_ints, tuple(cots), names=names,
                        key=key, **options)
    return dataclasses.replace(report, title=title)


def _has_dZ_path(layer, cache) -> bool:
    return callable(getattr(layer, "backward_from_dZ", None)) and isinstance(cache, dict) \
        and "Z" in cache


def check_layer(layer, in_shape, *, key=None, m: int = 3, params=None, x=None, dy=None,
                **options) -> GradientReport:
    """Check one layer's hand-written `backward` against `jax.vjp` of its `forward` and finite
    differences (float64), for `dx` and every parameter.

    Arguments:
        layer: any object with the layer protocol (`init(key, in_shape, dtype)`, `forward`,
            `backward`), e.g. ``jn.LSTM(64)`` or a layer of your own.
        in_shape: the shape of one example, `m` left out (as `init` takes it).
        key: a `jax.random.key`; draws the parameters (`layer.init(k, in_shape,
            dtype=float64)`), `x` `(*in_shape, m)` ~ N(0, 1), `dy` ~ N(0, 1) shaped like
            `y`, and seeds the check (sampled entries, Taylor directions).  Default
            ``jax.random.key(0)``.
        m: examples in the random `x` (ignored when `x` is given).
        params: the layer's parameters (a dict of float arrays) instead of random ones.
        x: the input `(*in_shape, m)` instead of a random one.  Integer `x` (token ids) has no
            `dx`.  A random `x` is integer ids in `[0, vocab)` when the layer has an int
            attribute ``vocab`` (as `Embedding`), else float; pass `x` for other integer
            inputs.
        dy: the upstream gradient, shaped like `y`, instead of a random one.
        **options: `check_grad`'s ``eps``, ``tol_manual``, ``tol_fd``, ``entries``,
            ``taylor``, ``perturb``, ``perturb_seed``.

    Returns:
        a `GradientReport` titled with the layer (``str(report)`` starts ``LSTM(64):
        gradient check ...``); leaves ``dx`` (float input only) and the parameter names.  A
        layer with `backward_from_dZ` (an output layer's `A − Y` shortcut) and ``"Z"`` in its
        cache has that checked too: leaves ``dx (from dZ)``, ``W (from dZ)``, … on
        `J = Σ dZ ⊙ Z`, `dZ` ~ N(0, 1).

    Raises:
        TypeError / ValueError for a bad argument or a protocol violation (`init` without
        `dtype`, a `backward` that does not return `(dx, grads)`, a `dx` or gradient of the
        wrong shape, a gradient leaf missing), naming the layer.
    """
    _check_layer_object(layer)
    in_shape = _check_shape(in_shape)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an int >= 1, got {m!r}")
    if key is not None and not (hasattr(key, "dtype")
                                and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"key must be a typed PRNG key from jax.random.key(seed), got {key!r}")
    _check_options(options, "check_layer")
    title = layer_name(layer)
    with jax.enable_x64(True):
        k_init, k_x, k_dy, k_dz, k_check = jax.random.split(
            key if key is not None else jax.random.key(0), 5)
        params = _init(layer, k_init, in_shape) if params is None else params
        params = _floats(params, title)
        if x is None:
            vocab = getattr(layer, "vocab", None)
            if isinstance(vocab, int) and not isinstance(vocab, bool):
                x = jax.random.randint(k_x, (*in_shape, m), 0, vocab)
            else:
                x = jax.random.normal(k_x, (*in_shape, m), jnp.float64)
        x = jnp.asarray(x)
        if x.ndim != len(in_shape) + 1 or tuple(x.shape[:-1]) != in_shape:
            raise ValueError(f"x must have shape {(*in_shape, 'm')} (examples last), got "
                             f"{tuple(x.shape)}")
        if not _is_int(x):
            x = x.astype(jnp.float64)
        y, cache = layer.forward(params, x)
        if dy is None:
            dy = jax.random.normal(k_dy, jnp.shape(y), jnp.float64)
        dy = jnp.asarray(dy, jnp.float64)
        if dy.shape != jnp.shape(y):
            raise ValueError(f"dy must have the shape of the layer's output {jnp.shape(y)}, got "
                             f"{dy.shape}")
        cots, modes = [dy], ["backward"]
        if _has_dZ_path(layer, cache):
            cots.append(jax.random.normal(k_dz, jnp.shape(cache["Z"]), jnp.float64))
            modes.append("dZ")
        return _check(layer, title, params, x, cots, modes, k_check, options)


# --- every layer of a network -----------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _sequential(net):
    from .sequential import as_sequential

    return as_sequential(net)


def _uses_shortcut(net, cache) -> bool:
    """The network's output takes the `A − Y` path (`backward_from_dZ`) in its backprop."""
    return losses.get(net.loss).output == net.output and _has_dZ_path(net.layers[-1], cache)


@functools.partial(jax.jit, static_argnums=0)
def _signals(net, params, X, Y):
    """`(inputs, upstream, dZ)`: per layer l its input `A^[l-1]` and `∂J/∂A^[l]` (autodiff
    through the forward passes of the layers above: zero offsets added to each output are
    differentiated), and `∂J/∂Z^[L]` of the output's pre-activation (None without one)."""
    L = net.L
    inputs, A = [], X
    caches = []
    for layer, p in zip(net.layers, params):
        inputs.append(A)
        A, cache = layer.forward(p, A)
        caches.append(cache)
    A_L, last = A, caches[-1]

    def J(offsets):
        A = X
        for l, (layer, p) in enumerate(zip(net.layers[:-1], params[:-1])):
            A = layer.forward(p, A)[0] + offsets[l]
        A, cache = net.layers[-1].forward(params[-1], A)
        Z = cache["Z"] if isinstance(cache, dict) and "Z" in cache else A
        return net._loss(Z, A, Y)

    zeros = [jnp.zeros_like(a) for a in inputs[1:]]
    upstream = list(jax.grad(J)(zeros)) if L > 1 else []
    # The output layer's dA: the loss as a function of A^[L] (one-hot ids), differentiated.
    loss = losses.get(net.loss)
    Y1 = jax.nn.one_hot(Y, A_L.shape[0], axis=0, dtype=A_L.dtype) \
        if jnp.issubdtype(Y.dtype, jnp.integer) and Y.ndim == A_L.ndim - 1 else Y
    upstream.append(jax.grad(lambda A: jnp.mean(loss.forward(A, Y1)))(A_L))
    dZ = None
    if _uses_shortcut(net, last):
        g = activations.get(net.output).forward
        dZ = jax.grad(lambda Z: net._loss(Z, g(Z), Y))(last["Z"])
    return inputs, upstream, dZ


def layer_reports(net, params, X, Y, *, key=None, **options) -> tuple:
    """One `GradientReport` per layer of `net` (an `MLP` or a `Sequential`), each titled
    ``layer l Type(...)`` (l from 1, as in ``W[l]``): the layer's `backward` checked alone at
    the input and with the upstream gradient the network gives it (float64), plus its
    `backward_from_dZ` with the network's `∂J/∂Z^[L]` where the output takes the `A − Y`
    shortcut.

    All layers are checked in one `check_grad` call (one compilation, whatever the depth) on
    `Σ_l Σ dA^[l] ⊙ layer_l(θ_l, x_l)`, each layer with its own copy `(x_l, θ_l)`, so no term
    shares a variable with another and each leaf's comparison is that layer's alone; the
    report is then split by layer.  Each leaf is held to `check_grad`'s thresholds:
    manual~autodiff at every entry; finite differences at every entry where the two disagree
    (to judge kinks and ties: one-sided slopes, excuses, the perturbed point) plus ``entries``
    sampled entries per leaf, default ``LAYER_ENTRIES`` = 0.  Zero suffices because the
    layers' autodiff is that of the very forward passes whose autodiff the network's own
    check proves against finite differences; it saves a compilation per check.  The Taylor
    test is not run per layer (``taylor`` is ignored; the network's own report has it).
    """
    _check_options(options, "layer_reports")
    options = dict(options)
    if options.get("entries") is None:
        options["entries"] = LAYER_ENTRIES
    options["taylor"] = False
    seq = _sequential(net)
    key = key if key is not None else jax.random.key(0)
    with jax.enable_x64(True):
        cast = lambda t: jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64)
            if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else jnp.asarray(a), t)
        params, X, Y = cast(list(params)), cast(X), cast(Y)
        inputs, upstream, dZ = _signals(seq, params, X, Y)
        upstream = list(upstream)
        stand_in = not bool(jnp.all(jnp.isfinite(upstream[-1])))
        if stand_in:
            # A saturated sigmoid/softmax output (σ rounds to 0 or 1): ∂L/∂A^[L] = −y/a + …
            # is not finite there, although J and ∂J/∂Z^[L] are.  `backward` is a VJP, correct
            # or not for every cotangent, so its check takes a random one instead (a NaN
            # cotangent would fail every leaf of every layer in the combined check).
            upstream[-1] = jax.random.normal(jax.random.fold_in(key, seq.L),
                                             upstream[-1].shape, jnp.float64)
        terms, tree, x_ints, cots, names, owner, titles = [], [], [], [], [], [], []
        for l, layer in enumerate(seq.layers):
            cot, modes = [upstream[l]], ["backward"]
            if l == seq.L - 1 and dZ is not None:
                cot.append(dZ)
                modes.append("dZ")
            titles.append(f"layer {l + 1} {layer_name(layer)}")
            t, tr, xi, nm = _terms(layer, titles[-1], params[l], inputs[l], cot, modes)
            terms += t
            tree += tr
            x_ints += xi
            cots += cot
            names += [f"{l}:{n}" for n in nm]  # unique while combined; the prefix goes below
            owner += [l] * len(nm)
        report = check_grad(_Loss(tuple(terms)), _Grad(tuple(terms)), tuple(tree),
                            tuple(x_ints), tuple(cots), names=names, key=key, **options)
    out = _split(report, owner, titles)
    if stand_in:
        note = ("  the network's ∂J/∂A at this (saturated) output is not finite: `backward` was "
                "checked with a random upstream gradient instead (`backward_from_dZ` with ∂J/∂Z)")
        out = out[:-1] + (dataclasses.replace(out[-1], notes=out[-1].notes + (note,)),)
    return out


def _split(report, owner, titles) -> tuple:
    """The combined report cut into one report per layer."""
    out = []
    for l, title in enumerate(titles):
        prefix = f"{l}:"
        leaves = tuple(dataclasses.replace(leaf, name=leaf.name[len(prefix):])
                       for leaf, o in zip(report.leaves, owner) if o == l)
        notes = tuple(n.replace(f"  {prefix}", "  ", 1) for n in report.notes
                      if n.startswith(f"  {prefix}"))
        perturbed_ok = all(leaf.ok_perturbed for leaf in leaves)
        if not report.perturbed_ok and all(leaf.ok_perturbed for leaf in report.leaves):
            # entries still at a kink at every perturbed point: blame the layers with kinks
            perturbed_ok = not any(leaf.kink_entries or leaf.unresolved for leaf in leaves)
        line = report.perturbed
        if line is not None and "FAILED: " in line and "still at a kink" not in line:
            head, bad = line.split("FAILED: ", 1)
            bad = [n[len(prefix):] for n in bad.split(" (")[0].split(", ")
                   if n.startswith(prefix)]
            line = head + ("FAILED: " + ", ".join(bad) if bad else "OK")
        out.append(dataclasses.replace(report, leaves=leaves, notes=notes, title=title,
                                       perturbed=line, perturbed_ok=perturbed_ok))
    return tuple(out)


def first_wrong(reports) -> int | None:
    """The index of the first failing report from the output down, or None."""
    return next((l for l in reversed(range(len(reports))) if not reports[l].ok), None)


def with_layers(report: GradientReport, net, params, reports) -> GradientReport:
    """`report` with the per-layer `reports`, its leaves tagged with their layer's type."""
    seq = _sequential(net)
    types = [type(layer).__name__ for layer, p in zip(seq.layers, params) for _ in p]
    leaves = report.leaves
    if len(types) == len(leaves):
        leaves = tuple(dataclasses.replace(leaf, layer=t) for leaf, t in zip(leaves, types))
    return dataclasses.replace(report, leaves=leaves, layers=tuple(reports),
                               first_wrong_layer=first_wrong(reports))


# --- along the training trajectory --------------------------------------------------------------
def spot_check(net, params, X, Y, *, key=None, columns: int = SPOT_COLUMNS,
               entries: int = SPOT_ENTRIES) -> GradientReport:
    """A cheap re-check of the hand-written gradient, for use along a training run.

    `check_gradients` on the first `columns` examples of `X`, `Y` (float64) with finite
    differences at `entries` sampled entries per leaf, without the Taylor test and the
    per-layer checks; manual~autodiff is still compared at every entry.  When that fails, the
    full `check_gradients` (per-layer checks, Taylor test) runs on the same columns, so the
    report names the wrong layer.  After its first call (which compiles) a check of a small
    network takes milliseconds.

    Arguments:
        net, params, X, Y: as `check_gradients` (examples on the last axis).
        key: seeds the sampled entries; default ``jax.random.key(0)``.
        columns, entries: the most examples, and finite-difference entries per leaf.

    Returns:
        a `GradientReport`.
    """
    from .gradcheck import check_gradients

    for name, value in (("columns", columns), ("entries", entries)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"spot_check: {name} must be an int >= 1, got {value!r}")
    m = min(int(columns), X.shape[-1])
    X, Y = X[..., :m], Y[..., :m]
    report = check_gradients(net, params, X, Y, entries=int(entries), key=key, taylor=False,
                             per_layer=False)
    if report.ok:
        return report
    return check_gradients(net, params, X, Y, entries=int(entries), key=key)  # names the layer


__all__ = ["GradientCheckWarning", "check_layer", "layer_name", "layer_reports", "spot_check"]
