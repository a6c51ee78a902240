"""`fit`: gradient descent as the document writes it, compiled end to end.

    repeat: J, grads = cost and gradients at θ;  θ = θ − α·grads  (or any optax optimizer)
    until |J_t − J_{t-1}| < tol, max |Δθ| < param_tol, or `steps` updates

The loop is a `lax.while_loop` under one `jit`; the host only sees it between chunks of
`chunk` steps, to advance the progress bar.  A second call with the same shapes and options
reuses the compiled loop (the learning rate of a named optimizer is data, not a constant).
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .metrics import accuracy_from_output, is_classifier

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
GRADIENTS = ("autodiff", "manual")
CHUNK = 2000
STATUS = ("running", "steps", "converged_cost", "converged_params", "diverged")
TRACE_COUNT = [0]  # incremented each time the loop is traced (i.e. compiled); for tests
LAST_CALL: list = []  # the arguments of the latest compiled call, to inspect its HLO


class DivergenceWarning(RuntimeWarning):
    """The cost became non-finite; training stopped with the last finite parameters."""


class DivergenceError(FloatingPointError):
    """Raised instead of the warning with ``on_divergence="raise"``."""


def _named(name: str, learning_rate):
    kwargs = {"momentum": 0.9} if name == "momentum" else \
        {"momentum": 0.9, "nesterov": True} if name == "nesterov" else {}
    base = "sgd" if name in ("momentum", "nesterov") else name
    return partial(getattr(optax, base), **kwargs)


_INJECTED: dict[str, optax.GradientTransformation] = {}
_SCHEDULED: dict = {}  # (name, schedule) -> transformation, so a reused schedule compiles once


def _is_number(value) -> bool:
    """A real scalar: Python, numpy or 0-d JAX; not a bool."""
    return (not isinstance(value, bool) and np.ndim(value) == 0
            and np.asarray(value).dtype.kind in "iuf")


def _is_count(value, least=1) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, np.integer))
            and value >= least)


def _optimizer(optimizer, learning_rate):
    """`(tx, lr)`: a GradientTransformation reused across calls, and the lr to inject (or None)."""
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None:
            raise ValueError("pass learning_rate=None with an optax optimizer: it already holds "
                             "its learning rate (or schedule)")
        return optimizer, None
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid are {list(OPTIMIZERS)} or an "
                         "optax.GradientTransformation")
    if learning_rate is None:
        raise ValueError("fit needs learning_rate (the document's α), e.g. learning_rate=0.1")
    if callable(learning_rate):  # an optax schedule: one transformation per schedule object
        key = (optimizer, learning_rate)
        if key not in _SCHEDULED:
            _SCHEDULED[key] = _named(optimizer, None)(learning_rate)
        return _SCHEDULED[key], None
    if not _is_number(learning_rate):
        raise ValueError(f"learning_rate must be a finite number > 0 or an optax schedule, got "
                         f"{learning_rate!r}")
    lr = float(learning_rate)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if optimizer not in _INJECTED:  # one object per name, so jit's cache keeps hitting
        _INJECTED[optimizer] = optax.inject_hyperparams(_named(optimizer, None))(learning_rate=0.0)
    return _INJECTED[optimizer], lr


class _Config(NamedTuple):
    net: object  # an MLP or a Sequential: anything with the network protocol
    gradients: str
    batch_size: int | None
    chunk: int
    validate: bool
    use_tol: bool
    use_param_tol: bool
    compute_dtype: str | None = None
    clip_norm: float | None = None


class _State(NamedTuple):
    params: list
    prev_params: list  # the parameters one step back: the last good ones if J turns non-finite
    opt_state: object
    step: jax.Array
    prev_cost: jax.Array
    status: jax.Array


def _floating(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


def _cost_and_grads(cfg: _Config, params, X, Y):
    """`(J, Ŷ, grads)`; with a compute dtype the layers run in it, the loss in float32."""
    net = cfg.net
    low = cfg.compute_dtype
    if low is not None and _floating(X):
        X = X.astype(low)
    cast = (lambda t: t) if low is None else \
        (lambda t: jax.tree.map(lambda a: a.astype(low), t))

    def loss_from_output(Z, A):
        if low is None:
            return net._loss(Z, A, Y)
        Y32 = Y.astype(jnp.float32) if _floating(Y) else Y
        return net._loss(Z.astype(jnp.float32), A.astype(jnp.float32), Y32)

    if cfg.gradients == "manual":
        p = cast(params)
        Z, A, cache = net._forward(p, X)
        J = loss_from_output(Z, A)
        grads = net._backward(p, cache, Z, A, Y if low is None or not _floating(Y)
                              else Y.astype(low))
        if low is not None:
            grads = jax.tree.map(lambda g, a: g.astype(a.dtype), grads, params)
        return J, A, grads

    def J(params):
        Z, A, _ = net._forward(cast(params), X)
        return loss_from_output(Z, A), A

    (J_value, A), grads = jax.value_and_grad(J, has_aux=True)(params)
    return J_value, A, grads


def _clip(cfg: _Config, grads):
    """Gradients rescaled to global norm `clip_norm` when larger (optax's clip_by_global_norm)."""
    if cfg.clip_norm is None:
        return grads
    clipped, _ = optax.clip_by_global_norm(cfg.clip_norm).update(grads, optax.EmptyState())
    return clipped


def _batch(cfg, key, step, X, Y):
    if cfg.batch_size is None:
        return X, Y
    m = X.shape[-1]
    per_epoch = m // cfg.batch_size
    epoch, j = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), m)
    idx = jax.lax.dynamic_slice_in_dim(perm, j * cfg.batch_size, cfg.batch_size)
    return jnp.take(X, idx, axis=-1), jnp.take(Y, idx, axis=-1)  # examples are the last axis


def _step(cfg: _Config, tx, params, opt_state, prev_cost, step, key, tol, param_tol, X, Y,
          X_val, Y_val, val_every):
    """One update of one model: `(new_params, opt_state, J, accuracy, val_cost, val_acc, status)`."""
    net = cfg.net
    dtype = jax.tree.leaves(params)[0].dtype
    Xb, Yb = _batch(cfg, key, step, X, Y)
    J, A_L, grads = _cost_and_grads(cfg, params, Xb, Yb)
    updates, opt_state = tx.update(_clip(cfg, grads), opt_state, params)
    new_params = optax.apply_updates(params, updates)
    status = jnp.where(jnp.isfinite(J), 0, 4)
    if cfg.use_param_tol:
        delta = jnp.max(jnp.stack([jnp.max(jnp.abs(u)) for u in jax.tree.leaves(updates)]))
        status = jnp.where((status == 0) & (delta < param_tol), 3, status)
    if cfg.use_tol:
        status = jnp.where((status == 0) & (jnp.abs(J - prev_cost) < tol), 2, status)
    nan = jnp.asarray(jnp.nan, dtype)
    acc = accuracy_from_output(net, A_L, Yb).astype(dtype) if is_classifier(net) else nan
    vc = va = nan
    if cfg.validate:
        def evaluate(p):
            Z_v, A_v, _ = net._forward(p, X_val)
            J_v = net._loss(Z_v, A_v, Y_val).astype(dtype)
            acc_v = accuracy_from_output(net, A_v, Y_val).astype(dtype) \
                if is_classifier(net) else nan
            return J_v, acc_v
        vc, va = jax.lax.cond(step % val_every == 0, evaluate, lambda p: (nan, nan), params)
    return new_params, opt_state, J.astype(dtype), acc, vc, va, status.astype(jnp.int32)


UNROLL = 64  # steps per while-loop iteration on the fast path of `_loop`
UNROLL_INNER = 1  # of which unrolled inside the block's scan


def _block(cfg: _Config, tx, st: _State, key, tol, X, Y):
    """`UNROLL` updates of one model with no per-step selects or history writes.

    Returns `(state, J, accuracy, status)`, the last three of shape `(UNROLL,)`, with `status`
    computed from the costs as `_step` computes it step by step.
    """
    dtype = jax.tree.leaves(st.params)[0].dtype
    classify = is_classifier(cfg.net)

    # A scan of its own: its carry is small, so XLA runs it as a tight sequential loop, apart
    # from the outer loop that carries the (large) history buffers.
    def one(carry, j):
        params, opt_state, _ = carry
        Xb, Yb = _batch(cfg, key, st.step + j, X, Y)
        J, A_L, grads = _cost_and_grads(cfg, params, Xb, Yb)
        updates, opt_state = tx.update(_clip(cfg, grads), opt_state, params)
        acc = accuracy_from_output(cfg.net, A_L, Yb) if classify else jnp.nan
        return (optax.apply_updates(params, updates), opt_state, params), \
            (J.astype(dtype), jnp.asarray(acc, dtype))

    (params, opt_state, prev), (J, acc) = jax.lax.scan(
        one, (st.params, st.opt_state, st.params), jnp.arange(UNROLL), unroll=UNROLL_INNER)
    status = jnp.where(jnp.isfinite(J), 0, 4)
    if cfg.use_tol:
        prev_J = jnp.concatenate([st.prev_cost[None], J[:-1]])
        status = jnp.where((status == 0) & (jnp.abs(J - prev_J) < tol), 2, status)
    new = st._replace(params=params, prev_params=prev, opt_state=opt_state,
                      step=st.step + UNROLL, prev_cost=J[-1])
    return new, J, acc.astype(dtype), status.astype(jnp.int32)


def _loop(cfg: _Config, tx, state: _State, n, tol, param_tol, key, X, Y, X_val, Y_val,
          val_every, *, batched=False):
    """Run up to `n` more steps (n ≤ cfg.chunk); returns the state and this chunk's history.

    Batched (K models, every state leaf with a leading axis K), the step is `vmap`ped but the
    loop is not: a model that stopped keeps its state through a select on the (small)
    parameters, while the history buffers, the largest arrays here, are written one column per
    step instead of being selected whole each step, as `vmap` of a `while_loop` would.
    """
    TRACE_COUNT[0] += 1
    dtype = jax.tree.leaves(state.params)[0].dtype
    lead = state.step.shape  # () or (K,)
    nan = jnp.full((*lead, cfg.chunk), jnp.nan, dtype)
    names = ("cost", "accuracy", "val_cost", "val_accuracy")
    one = partial(_step, cfg, tx, tol=tol, param_tol=param_tol, X=X, Y=Y, X_val=X_val,
                  Y_val=Y_val, val_every=val_every)
    if batched:
        one = jax.vmap(one, in_axes=(0, 0, 0, 0, 0 if key.ndim == 1 else None))

    def body(carry):
        st, bufs, i = carry
        new_params, opt_state, J, acc, vc, va, status = one(
            st.params, st.opt_state, st.prev_cost, st.step, key)
        active = st.status == 0
        ok = active & (status != 4)

        def keep(new, old):
            return jax.tree.map(
                lambda a, b: jnp.where(ok.reshape(lead + (1,) * (a.ndim - len(lead))), a, b),
                new, old)

        values = (J, acc, vc, va)
        bufs = {k: bufs[k].at[..., i].set(jnp.where(active, x, jnp.nan))
                for k, x in zip(names, values)}
        st = _State(params=keep(new_params, st.params), prev_params=keep(st.params, st.prev_params),
                    opt_state=keep(opt_state, st.opt_state), step=st.step + active,
                    prev_cost=jnp.where(ok, J, st.prev_cost),
                    status=jnp.where(active, status, st.status))
        return st, bufs, i + 1

    def block(carry):
        """UNROLL steps at once, or, if one of them stops training, the same UNROLL steps
        again one `body` at a time: both compute the same values, so UNROLL changes speed
        only.  (Per-step work on tiny networks is dominated by XLA's per-operation overhead:
        this removes the selects, history writes and status checks from all but one step in
        UNROLL.)"""
        st, bufs, i = carry
        new, J, acc, status = _block(cfg, tx, st, key, tol, X, Y)
        fast = (new, dict(bufs, cost=jax.lax.dynamic_update_slice(bufs["cost"], J, (i,)),
                          accuracy=jax.lax.dynamic_update_slice(bufs["accuracy"], acc, (i,))),
                i + UNROLL)
        exact = lambda c: jax.lax.while_loop(
            lambda c: (c[2] < i + UNROLL) & (c[0].status == 0), body, c)
        return jax.lax.cond(jnp.all(status == 0), lambda c: fast, exact, carry)

    def cond(carry):
        st, _, i = carry
        return (i < n) & jnp.any(st.status == 0)

    carry = (state, dict.fromkeys(names, nan), jnp.asarray(0, jnp.int32))
    if cfg.chunk >= UNROLL and not (batched or cfg.validate or cfg.use_param_tol):
        # Whole blocks while they fit, then single steps for the rest, as two loops: one loop
        # choosing between `block` and `body` with a `cond` each iteration made every step of
        # a short run (n < UNROLL) about 10 % slower on a transformer (XLA:CPU, A/B measured).
        carry = jax.lax.while_loop(lambda c: (c[2] + UNROLL <= n) & cond(c), block, carry)
    state, bufs, _ = jax.lax.while_loop(cond, body, carry)
    return state, bufs


_run_chunk = jax.jit(_loop, static_argnames=("cfg", "tx", "batched"))


def _run_chunk_many(*args):
    """`_loop` for K models at once: every state leaf has a leading axis K."""
    return _run_chunk(*args, batched=True)


def _progress(total, enabled):
    if enabled is False or jax.process_index() != 0:  # several processes: drawn by process 0
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # delay=1: the bar appears only for runs longer than about a second.
    return tqdm(total=total, unit="step", delay=0 if enabled else 1.0, leave=False)


def fit(net, params, X, Y, *, steps: int, learning_rate=None, optimizer="sgd",
        gradients: str = "autodiff", batch_size: int | None = None, key=None,
        tol: float | None = None, param_tol: float | None = None, validation=None,
        val_every: int | None = None, on_divergence: str = "warn", progress: bool | None = None,
        chunk: int = CHUNK, compute_dtype=None, mesh=None, clip_norm: float | None = None):
    """Train `params` by gradient descent; return `(params, history)`.

    Arguments:
        net, params: the network (an `MLP` or a `Sequential`) and its initial parameters
            (not modified).
        X, Y: training data, `(n_x, m)` and `(n_y, m)` (for a `Sequential`: its input and
            output shapes with the examples last, or integer class ids as `Y`); floating data
            is cast to the parameters' dtype, integer data (token ids, class ids) is kept.
        steps: the most updates to make.
        learning_rate: α (a float > 0) or an optax schedule, for a named `optimizer`.
        optimizer: ``"sgd"`` (the document's θ = θ − α dθ, default), ``"momentum"``,
            ``"nesterov"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"``, or any
            `optax.GradientTransformation` (then `learning_rate` must be None).
        gradients: ``"autodiff"`` (`jax.grad`) or ``"manual"`` (the hand-written backprop).
        batch_size: None for full batch (the document); else shuffled minibatches of this size,
            reshuffled each epoch from `key` (the last m mod batch_size examples of each
            shuffled epoch are left out, so every step has the same shape).
        tol: stop when |J_t − J_{t−1}| < tol (the document's "error is minimized").
        param_tol: stop when the largest |Δθ| of a step < param_tol ("weights stabilize").
        validation: optional `(X_val, Y_val)`, evaluated every `val_every` steps (default
            about 100 evaluations per run).
        on_divergence: ``"warn"`` (default) or ``"raise"`` when the cost turns non-finite;
            either way training stops and the last parameters with a finite cost are kept
            (returned with the warning; attached to the error as ``.params``/``.history``).
        progress: True/False, or None for a bar that appears after about a second.
        chunk: steps per compiled call between progress updates.
        compute_dtype: e.g. ``jnp.bfloat16``: the layers' matmuls run in this dtype while the
            parameters, the optimizer and the loss (computed from `Z^[L]` cast to float32) stay
            in the parameters' dtype (mixed precision). None: everything in the params' dtype.
        mesh: a `jax.sharding.Mesh` with an axis ``"data"``: the columns of `X` and `Y` are
            sharded across its devices and the parameters replicated; XLA inserts the all-reduce
            of the gradients. `m` (and `batch_size`) must divide by the axis size.
        clip_norm: rescale each step's gradients to this global norm when they are larger
            (`optax.clip_by_global_norm`: the usual guard against exploding gradients through
            time in recurrent networks). None: no clipping.

    Returns:
        `(params, history)`; `history` is a dict of numpy arrays over the steps run: ``cost``
        (J before each update, of the step's batch), ``accuracy`` (classifiers), ``val_step``,
        ``val_cost``, ``val_accuracy`` (with validation), and ``steps_run``, ``stopped``
        (one of ``"steps"``, ``"converged_cost"``, ``"converged_params"``, ``"diverged"``),
        ``final_cost`` (J on the full training data at the returned parameters; with
        minibatches it is evaluated `max(batch_size, 1024)` examples at a time, so a training
        set too large for one forward pass still gets its final cost),
        ``learning_rate``.
    """
    X, Y = net._check(params, X, Y)
    tx, lr = _optimizer(optimizer, learning_rate)
    return train(net, params, X, Y, tx=tx, lr=lr, K=None, steps=steps, gradients=gradients,
                 batch_size=batch_size, key=key, tol=tol, param_tol=param_tol,
                 validation=validation, val_every=val_every, on_divergence=on_divergence,
                 progress=progress, chunk=chunk, compute_dtype=compute_dtype, mesh=mesh,
                 clip_norm=clip_norm)


def check_options(m, *, steps, gradients, on_divergence, batch_size, key, tol, param_tol,
                  compute_dtype, val_every=None, chunk=CHUNK, validation=None, mesh=None,
                  clip_norm=None):
    """Raise a ValueError for any option of `fit` that is out of range."""
    if clip_norm is not None and not (_is_number(clip_norm) and math.isfinite(clip_norm)
                                      and clip_norm > 0):
        raise ValueError(f"clip_norm must be a finite number > 0 or None, got {clip_norm!r}")
    if val_every is not None and not _is_count(val_every):
        raise ValueError(f"val_every must be an int >= 1 or None, got {val_every!r}")
    if not _is_count(chunk):
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    if validation is not None and not (isinstance(validation, (tuple, list))
                                       and len(validation) == 2):
        raise ValueError("validation must be a pair (X_val, Y_val), got "
                         f"{type(validation).__name__}")
    if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh (e.g. jaxnet.data_mesh()), got "
                         f"{type(mesh).__name__}")
    if key is not None and not (hasattr(key, "dtype")
                                and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError("key must be a typed PRNG key from jax.random.key(seed) (or "
                         f"jax.random.split of one), got {key!r}")
    if not _is_count(steps):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients must be one of {list(GRADIENTS)}, got {gradients!r}")
    if on_divergence not in ("warn", "raise"):
        raise ValueError(f"on_divergence must be 'warn' or 'raise', got {on_divergence!r}")
    if batch_size is not None:
        if not _is_count(batch_size) or batch_size > m:
            raise ValueError(f"batch_size must be an int in [1, m={m}] or None, got {batch_size!r}")
        if key is None:
            raise ValueError("minibatches are shuffled from an explicit key: pass key=jax.random.key(0)")
    for name, value in (("tol", tol), ("param_tol", param_tol)):
        if value is not None and not (_is_number(value) and float(value) >= 0):
            raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}")
    try:
        floating = compute_dtype is None or jnp.issubdtype(jnp.dtype(compute_dtype), jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise ValueError(f"compute_dtype must be a floating dtype such as jnp.bfloat16, got "
                         f"{compute_dtype!r}")


def place(mesh, X, Y, tree, *, batch_size=None):
    """Shard the columns of `X`, `Y` over the mesh axis ``"data"``; replicate `tree`."""
    if mesh is None:
        if any(isinstance(a, jax.Array) and not a.is_fully_addressable for a in (X, Y)):
            raise ValueError("X and Y span the devices of several processes (e.g. from "
                             "jaxnet.data.global_batch): pass mesh=, the mesh they were made on")
        return X, Y, tree
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if "data" not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named 'data', got axes {mesh.axis_names}")
    n = mesh.shape["data"]
    m = X.shape[-1]
    if m % n:
        raise ValueError(f"m = {m} examples do not split evenly over the {n} devices of the "
                         f"'data' axis; use a multiple of {n} (e.g. {m - m % n})")
    if batch_size is not None and batch_size % n:
        raise ValueError(f"batch_size = {batch_size} does not split over the {n} devices of the "
                         f"'data' axis; use a multiple of {n}")
    last = lambda a: NamedSharding(mesh, P(*([None] * (a.ndim - 1)), "data"))  # examples
    replicated = NamedSharding(mesh, P())
    return (jax.device_put(X, last(X)), jax.device_put(Y, last(Y)),
            jax.device_put(tree, replicated))


def train(net, params, X, Y, *, tx, lr, K, steps, gradients, batch_size, key, tol, param_tol,
          validation, val_every, on_divergence, progress, chunk, compute_dtype, mesh,
          clip_norm=None):
    """The host side of `fit` and `fit_many` (K models with a leading axis when K is an int)."""
    dtype = jax.tree.leaves(params)[0].dtype
    X = X.astype(dtype) if _floating(X) else X
    Y = Y.astype(dtype) if _floating(Y) else Y
    m = X.shape[-1]
    check_options(m, steps=steps, gradients=gradients, on_divergence=on_divergence,
                  batch_size=batch_size, key=key, tol=tol, param_tol=param_tol,
                  compute_dtype=compute_dtype, val_every=val_every, chunk=chunk,
                  validation=validation, mesh=mesh, clip_norm=clip_norm)
    tol = None if tol is None else float(tol)
    param_tol = None if param_tol is None else float(param_tol)
    if validation is not None:
        X_val, Y_val = validation
        X_val = net._check_X(X_val)
        Y_val = net._check_Y(Y_val, X_val.shape[-1])
        X_val = X_val.astype(dtype) if _floating(X_val) else X_val
        Y_val = Y_val.astype(dtype) if _floating(Y_val) else Y_val
    else:
        X_val, Y_val = X[..., :1], Y[..., :1]  # unused placeholders of fixed shape
    val_every = int(val_every) if val_every is not None else max(1, steps // 100)

    batched = K is not None
    opt_state = jax.vmap(tx.init)(params) if batched else tx.init(params)
    if lr is not None:
        opt_state.hyperparams["learning_rate"] = jnp.broadcast_to(jnp.asarray(lr, dtype),
                                                                  () if K is None else (K,))
    chunk = int(min(chunk, steps))
    low = None if compute_dtype is None or jnp.dtype(compute_dtype) == dtype \
        else jnp.dtype(compute_dtype).name
    cfg = _Config(net, gradients, None if batch_size is None or batch_size == m else int(batch_size),
                  chunk, validation is not None, tol is not None, param_tol is not None, low,
                  None if clip_norm is None else float(clip_norm))
    shape = () if K is None else (K,)
    state = _State(params, params, opt_state, jnp.zeros(shape, jnp.int32),
                   jnp.full(shape, jnp.inf, dtype), jnp.zeros(shape, jnp.int32))
    X, Y, state = place(mesh, X, Y, state, batch_size=cfg.batch_size)
    key = key if key is not None else jax.random.key(0)
    tol_a = jnp.asarray(-1.0 if tol is None else tol, dtype)
    ptol_a = jnp.asarray(-1.0 if param_tol is None else param_tol, dtype)

    run = _run_chunk_many if batched else _run_chunk
    pieces = {"cost": [], "accuracy": [], "val_cost": [], "val_accuracy": []}
    bar = _progress(steps, progress)
    done = 0
    try:
        while done < steps:
            args = (cfg, tx, state, jnp.asarray(min(chunk, steps - done)), tol_a, ptol_a, key,
                    X, Y, X_val, Y_val, val_every)
            LAST_CALL[:] = args  # for inspecting the compiled loop (e.g. its all-reduce)
            state, bufs = run(*args)
            ran = int(np.max(np.asarray(state.step))) - done
            for k in pieces:
                pieces[k].append(np.asarray(bufs[k])[..., :ran])
            done += ran
            if bar is not None:
                bar.update(ran)
                bar.set_postfix(cost=f"{float(np.nanmean(pieces['cost'][-1][..., -1])):.4g}")
            if np.all(np.asarray(state.status) != 0):
                break
    finally:
        if bar is not None:
            bar.close()
    return _finish(net, state, pieces, X, Y, lr=lr, batched=batched, val_every=val_every,
                   validate=validation is not None, on_divergence=on_divergence,
                   eval_chunk=None if cfg.batch_size is None else max(cfg.batch_size, EVAL_CHUNK))


_cost_one = jax.jit(lambda net, p, X, Y: net._cost(p, X, Y), static_argnums=0)
_costs_many = jax.jit(lambda net, p, X, Y: jax.vmap(lambda q: net._cost(q, X, Y))(p),
                      static_argnums=0)


# With minibatches, the final J on the training set is summed over column chunks of at least
# this many examples: one forward pass on all of a large set (say 48 000 windows of 64 tokens
# through attention, whose weights are heads·T²·m floats per block) may not fit in memory,
# although every training step did.
EVAL_CHUNK = 1024


def full_cost(net, params, X, Y, *, chunk=None, batched=False):
    """J on all columns of `X`, `Y`, evaluated `chunk` examples at a time (None: in one pass).

    Every cost of jaxnet is a mean over the examples (and, for sequences, over the positions of
    each): the chunks' costs weighted by their share of the examples add up to the whole J.
    With `batched`, `params` holds K models on a leading axis and the result is `(K,)`."""
    J = partial(_costs_many if batched else _cost_one, net)
    m = X.shape[-1]
    # Columns spread over several processes: one compiled pass (each device holds only its
    # m/D columns anyway); eager slices of such arrays, one program each, deadlocked Gloo.
    if chunk is None or chunk >= m or not getattr(X, "is_fully_addressable", True):
        return J(params, X, Y)
    total = 0.0
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        total = total + J(params, X[..., start:stop], Y[..., start:stop]) * ((stop - start) / m)
    return total


def _finish(net, state, pieces, X, Y, *, lr, batched, val_every, validate, on_divergence,
            eval_chunk=None):
    """Pick the returned parameters (the last finite ones where J diverged) and the history."""
    J = partial(full_cost, net, X=X, Y=Y, chunk=eval_chunk, batched=batched)
    status = np.asarray(state.status).copy()
    final = np.asarray(J(state.params))
    # The very last update may overflow without a step left to see it: same treatment.
    status[(status != 4) & ~np.isfinite(final)] = 4
    diverged = status == 4
    pick = lambda new, old: jnp.where(diverged.reshape(diverged.shape + (1,) * (new.ndim
                                                                             - diverged.ndim)),
                                      old, new)
    out = jax.tree.map(pick, state.params, state.prev_params)
    final = np.asarray(J(out), np.float64)
    steps_run = np.asarray(state.step)
    stopped = np.array([STATUS[s] if s else "steps" for s in status.ravel()]).reshape(status.shape)
    history = {k: np.concatenate(pieces[k], axis=-1) for k in pieces}
    classify = is_classifier(net)
    if not classify:
        del history["accuracy"]
    if validate:
        val_step = np.arange(0, int(steps_run.max()), val_every)
        history["val_step"] = val_step
        history["val_cost"] = history["val_cost"][..., val_step]
        if classify:
            history["val_accuracy"] = history["val_accuracy"][..., val_step]
        else:
            del history["val_accuracy"]
    else:
        del history["val_cost"], history["val_accuracy"]
    if not batched:
        steps_run, stopped, final = int(steps_run), str(stopped), float(final)
    history.update(steps_run=steps_run, stopped=stopped, final_cost=final, learning_rate=lr)
    if diverged.any():
        where = f"step {int(steps_run) - 1}" if not batched else \
            f"{int(diverged.sum())} of {diverged.size} models ({np.flatnonzero(diverged)[:10]})"
        msg = (f"the cost became non-finite at {where} (learning_rate={lr}); stopped and "
               f"returned the last parameters with a finite cost")
        if on_divergence == "raise":
            err = DivergenceError(msg)
            err.params, err.history = out, history
            raise err
        warnings.warn(msg, DivergenceWarning, stacklevel=4)
    return out, history
