"""`fit`: gradient descent as the document writes it, compiled end to end.

    repeat: J, grads = cost and gradients at θ;  θ = θ − α·grads  (or any optax optimizer)
    until |J_t − J_{t-1}| < tol, max |Δθ| < param_tol, or `steps` updates

The loop is a `lax.while_loop` under one `jit`; the host only sees it between chunks (sized
to about a second of work), to advance the progress bar, write checkpoints and notice an
interrupt.  A second call with the same shapes and options reuses the compiled loop (the
learning rate of a named optimizer and the chunk length are data, not constants).  Resume,
checkpoints, interrupts and early stopping: `long_runs` and ``docs/long-runs.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .long_runs import (
    ChunkSizer,
    Interrupts,
    batch_indices,
    check_settings,
    key_from_record,
    opt_state_leaves,
    restore_opt_state,
    settings,
    write_checkpoint,
)
from .metrics import accuracy_from_output, is_classifier

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
GRADIENTS = ("autodiff", "manual")
CHUNK = 2000  # the most steps per compiled call (chunks are sized to ~1 s of work below this)
STATUS = ("running", "steps", "converged_cost", "converged_params", "diverged", "early_stopped")
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
    early_stop: bool = False


class _State(NamedTuple):
    params: list
    prev_params: list  # the parameters one step back: the last good ones if J turns non-finite
    opt_state: object
    step: jax.Array  # the global step: minibatches and schedules are functions of it
    prev_cost: jax.Array
    status: jax.Array
    # early stopping: (best params, best validation cost, its step, evaluations since), else ()
    best: tuple = ()


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
    idx = batch_indices(key, step, X.shape[-1], cfg.batch_size)  # of the global step alone
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
          val_every, patience, *, batched=False):
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

        def keep(new, old, where=ok):
            return jax.tree.map(
                lambda a, b: jnp.where(where.reshape(lead + (1,) * (a.ndim - len(lead))), a, b),
                new, old)

        best = st.best
        if cfg.early_stop:  # vc is the cost of st.params, evaluated at this step or NaN
            best_params, best_cost, best_step, since = best
            evaluated = active & (st.step % val_every == 0)
            better = evaluated & (vc < best_cost)
            since = jnp.where(better, 0, since + evaluated)
            best = (keep(st.params, best_params, better), jnp.where(better, vc, best_cost),
                    jnp.where(better, st.step, best_step), since)
            status = jnp.where((status == 0) & (since >= patience), 5, status)

        values = (J, acc, vc, va)
        bufs = {k: bufs[k].at[..., i].set(jnp.where(active, x, jnp.nan))
                for k, x in zip(names, values)}
        st = _State(params=keep(new_params, st.params), prev_params=keep(st.params, st.prev_params),
                    opt_state=keep(opt_state, st.opt_state), step=st.step + active,
                    prev_cost=jnp.where(ok, J, st.prev_cost),
                    status=jnp.where(active, status, st.status), best=best)
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
        chunk: int | None = None, compute_dtype=None, mesh=None, clip_norm: float | None = None,
        resume=None, checkpoint=None, checkpoint_every: int | None = None, keep: int = 3,
        patience: int | None = None, restore_best: bool = True, interrupts: bool = True,
        check_every: int | None = None):
    """Train `params` by gradient descent; return `(params, history)`.

    Arguments:
        net, params: the network (an `MLP` or a `Sequential`) and its initial parameters
            (not modified).  With `resume` from a checkpoint, training continues from the
            checkpoint's parameters and `params` may be None (if given, it must fit `net`).
        X, Y: training data, `(n_x, m)` and `(n_y, m)` (for a `Sequential`: its input and
            output shapes with the examples last, or integer class ids as `Y`); floating data
            is cast to the parameters' dtype, integer data (token ids, class ids) is kept.
        steps: the run's total number of updates (with `resume`, counted from the start of
            the run, so a 400-step run resumed at step 200 makes 200 more).
        learning_rate: α (a float > 0) or an optax schedule, for a named `optimizer`.
        optimizer: ``"sgd"`` (the document's θ = θ − α dθ, default), ``"momentum"``,
            ``"nesterov"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"``, or any
            `optax.GradientTransformation` (then `learning_rate` must be None).
        gradients: ``"autodiff"`` (`jax.grad`) or ``"manual"`` (the hand-written backprop).
        batch_size: None for full batch (the document); else shuffled minibatches of this size:
            the batch of global step `s` is `jaxnet.long_runs.batch_indices(key, s, m,
            batch_size)`, a function of `key` and `s` alone (each epoch's permutation comes
            from ``fold_in(key, epoch)``; the last m mod batch_size examples of each shuffled
            epoch are left out, so every step has the same shape).
        tol: stop when |J_t − J_{t−1}| < tol (the document's "error is minimized").
        param_tol: stop when the largest |Δθ| of a step < param_tol ("weights stabilize").
        validation: optional `(X_val, Y_val)`, evaluated every `val_every` steps (default
            about 100 evaluations per run) and always at the returned parameters.
        on_divergence: ``"warn"`` (default) or ``"raise"`` when the cost turns non-finite;
            either way training stops and the last parameters with a finite cost are kept
            (returned with the warning; attached to the error as ``.params``/``.history``).
        progress: True/False, or None for a bar that appears after about a second.
        chunk: None (default): steps per compiled call sized to about one second of work
            (measured from the first, small, chunk; at most `CHUNK`), so the progress bar and
            interrupts respond within about two seconds; an int: exactly that many steps per
            call.  Either way one compilation serves every chunk length.
        compute_dtype: e.g. ``jnp.bfloat16``: the layers' matmuls run in this dtype while the
            parameters, the optimizer and the loss (computed from `Z^[L]` cast to float32) stay
            in the parameters' dtype (mixed precision). None: everything in the params' dtype.
        mesh: a `jax.sharding.Mesh` with an axis ``"data"``: the columns of `X` and `Y` are
            sharded across its devices and the parameters replicated; XLA inserts the all-reduce
            of the gradients. `m` (and `batch_size`) must divide by the axis size.
        clip_norm: rescale each step's gradients to this global norm when they are larger
            (`optax.clip_by_global_norm`: the usual guard against exploding gradients through
            time in recurrent networks). None: no clipping.
        resume: continue a run: a checkpoint path, a `Checkpoint` (from `load_checkpoint`), or
            the `history` a previous `fit` returned (then `params` are its returned
            parameters).  Its parameters, optimizer state, step and history are restored; the
            optimizer, its hyper-parameters, the batch size and `clip_norm` must be the
            checkpoint's (ValueError naming what differs); `key` defaults to the stored one.
            A run that stopped on its own (converged, diverged, early-stopped) stays stopped.
        checkpoint: a path: write a resumable checkpoint there (atomically) every
            `checkpoint_every` steps, at the end and on an interrupt.
        checkpoint_every: steps between checkpoints (None: only at the end).
        keep: how many step-named copies (``model.step-00001200.npz``) to keep beside
            `checkpoint`, the newest included; 0: only the file at `checkpoint`.
        patience: with `validation`, stop when the validation cost has not improved for this
            many evaluations (early stopping; ``history["stopped"] == "early_stopped"``).
        restore_best: with `patience`, return the parameters of the best validation cost
            seen (``history["best_step"]`` says which step) instead of the last ones.
        interrupts: True (default): SIGINT (Ctrl-C) and SIGTERM stop training at the end of
            the running chunk and `fit` returns the last completed parameters with
            ``history["stopped"] == "interrupted"`` (resumable); a second signal raises
            `KeyboardInterrupt` at once.  False: signals keep their usual effect.
        check_every: with ``gradients="manual"``, re-check the hand-written gradient every this
            many steps (`jaxnet.layercheck.spot_check`: manual ~ autodiff ~ finite differences in
            float64 on at most 8 columns of the step's batch); when it fails, training stops
            with the parameters of that step, ``history["stopped"] == "gradient_check_failed"``,
            ``history["gradient_check"]`` the report (naming the wrong layer) and a
            `GradientCheckWarning`.  None (default): no checks.

    Returns:
        `(params, history)`; `history` is a dict of numpy arrays over the run's steps (with
        `resume`, the old run's steps first): ``cost`` (J before each update, of the step's
        batch), ``accuracy`` (classifiers), ``val_step``, ``val_cost``, ``val_accuracy`` (with
        validation; the last entry is at the returned parameters), and ``steps_run`` (the
        global step count reached), ``stopped`` (one of ``"steps"``, ``"converged_cost"``,
        ``"converged_params"``, ``"diverged"``, ``"early_stopped"``, ``"interrupted"``,
        ``"gradient_check_failed"``; with ``"interrupted"`` also ``signal``, ``"SIGINT"`` or
        ``"SIGTERM"``; with ``"gradient_check_failed"`` also ``gradient_check``, the report),
        ``final_cost`` (J on the full training data at the returned parameters; with
        minibatches it is evaluated `max(batch_size, 1024)` examples at a time, so a training
        set too large for one forward pass still gets its final cost),
        ``learning_rate`` (α, or with a schedule its value at every step), ``best_step`` and
        ``best_val_cost`` (with `patience`), and the training state that makes the history
        resumable: ``opt_state`` (the optimizer state after the last update, a pytree),
        ``settings`` (the options a resumed run must share, JSON-able) and, with
        `patience`, ``best_params``.  ``jaxnet.save(path, net, params, history=history)``
        stores all of it.
    """
    ckpt = _load_resume(resume, net)
    if ckpt is not None and not isinstance(ckpt, dict):
        if params is not None:
            net._check_params(params)
        params = ckpt.params
    X, Y = net._check(params, X, Y)
    tx, lr = _optimizer(optimizer, learning_rate)
    return train(net, params, X, Y, tx=tx, lr=lr, K=None, steps=steps, gradients=gradients,
                 batch_size=batch_size, key=key, tol=tol, param_tol=param_tol,
                 validation=validation, val_every=val_every, on_divergence=on_divergence,
                 progress=progress, chunk=chunk, compute_dtype=compute_dtype, mesh=mesh,
                 clip_norm=clip_norm, optimizer=optimizer, learning_rate=learning_rate,
                 resume=ckpt, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                 keep=keep, patience=patience, restore_best=restore_best, interrupts=interrupts,
                 check_every=check_every)


def _load_resume(resume, net):
    """`resume` as a `Checkpoint` or a history dict (None stays None), checked against `net`."""
    from .checkpoint import Checkpoint, load_checkpoint

    if resume is None or isinstance(resume, dict):
        return resume
    if isinstance(resume, (str, os.PathLike)):
        resume = load_checkpoint(resume)
    if not isinstance(resume, Checkpoint):
        raise ValueError("resume must be a checkpoint path, a jaxnet Checkpoint or the history "
                         f"dict of a previous fit, got {type(resume).__name__}")
    if resume.net != net:
        raise ValueError(f"cannot resume: the checkpoint holds another network ({resume.net}) "
                         f"than the one given ({net})")
    if resume.opt_state is None or resume.step is None:
        raise ValueError("cannot resume: the checkpoint holds no training state (optimizer "
                         "state and step); save it with jaxnet.save(path, net, params, "
                         "history=history) from the history fit returns")
    return resume


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
          clip_norm=None, optimizer="sgd", learning_rate=None, resume=None, checkpoint=None,
          checkpoint_every=None, keep=3, patience=None, restore_best=True, interrupts=True,
          check_every=None):
    """The host side of `fit` and `fit_many` (K models with a leading axis when K is an int).

    `resume` is None, a `Checkpoint` or a history dict (see `fit`)."""
    dtype = jax.tree.leaves(params)[0].dtype
    X = X.astype(dtype) if _floating(X) else X
    Y = Y.astype(dtype) if _floating(Y) else Y
    m = X.shape[-1]
    batched = K is not None
    schedule = learning_rate if callable(learning_rate) else None
    stored = None if resume is None else (resume.get("settings") if isinstance(resume, dict)
                                          else resume.settings)
    if key is None and stored is not None and stored.get("key") is not None:
        key = key_from_record(stored["key"])
    check_options(m, steps=steps, gradients=gradients, on_divergence=on_divergence,
                  batch_size=batch_size, key=key, tol=tol, param_tol=param_tol,
                  compute_dtype=compute_dtype, val_every=val_every,
                  chunk=CHUNK if chunk is None else chunk, validation=validation, mesh=mesh,
                  clip_norm=clip_norm)
    check_long_run_options(validation=validation, checkpoint=checkpoint,
                           checkpoint_every=checkpoint_every, keep=keep, patience=patience,
                           restore_best=restore_best, interrupts=interrupts)
    _check_every_option(check_every, gradients, K)
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
    key = key if key is not None else jax.random.key(0)
    shape = () if K is None else (K,)

    opt_state = jax.vmap(tx.init)(params) if batched else tx.init(params)
    if lr is not None:
        opt_state.hyperparams["learning_rate"] = jnp.broadcast_to(jnp.asarray(lr, dtype), shape)
    record = partial(settings, optimizer=optimizer if isinstance(optimizer, str) else "optax",
                     learning_rate="schedule" if schedule is not None else lr,
                     batch_size=None if batch_size is None or batch_size == m else batch_size,
                     clip_norm=clip_norm, key=key)
    step0 = np.zeros(shape, np.int64)
    status0 = np.zeros(shape, np.int32)
    prior, best0 = None, None
    if resume is not None:
        where = "the history given" if isinstance(resume, dict) else "the checkpoint"
        if isinstance(resume, dict):
            for name in ("opt_state", "steps_run", "settings"):
                if name not in resume:
                    raise ValueError(f"cannot resume from {where}: it has no {name!r} entry "
                                     "(pass the history a fit of this jaxnet returned)")
            leaves, start = opt_state_leaves(resume["opt_state"]), resume["steps_run"]
            prior, best0 = resume, resume.get("best_params")
        else:
            leaves, start = resume.opt_state, resume.step
            prior, best0 = resume.history or {}, resume.best_params
        step0 = np.broadcast_to(np.asarray(start, np.int64), shape).copy()
        if stored is not None:  # first: it names the option that differs
            now = record(schedule_value=None if schedule is None else schedule(int(step0.max())))
            check_settings(stored, now, where)
        opt_state = restore_opt_state(opt_state, leaves, where)
        stopped = np.broadcast_to(np.asarray(prior.get("stopped", "steps")), shape)
        codes = {name: i for i, name in enumerate(STATUS)}
        status0 = np.array([0 if s in ("steps", "interrupted", "running") else codes.get(s, 0)
                            for s in stopped.ravel()], np.int32).reshape(shape)
        if batched and np.any(step0[status0 == 0] != step0.max()):
            raise ValueError(f"cannot resume from {where}: the models still running stopped at "
                             f"different steps {step0[status0 == 0].tolist()}")
    start = int(step0.max())
    if start > steps:
        raise ValueError(f"steps={steps} is the run's total, but the run to resume is already "
                         f"at step {start}: pass steps >= {start}")
    # The chunk length is traced: every time-sized chunk runs one program.  Only the history
    # buffers' length, `cfg.chunk`, is static (short runs keep short buffers, and skip
    # compiling the unrolled path of `_loop`).
    chunk_max = int(min(CHUNK if chunk is None else chunk, steps))
    low = None if compute_dtype is None or jnp.dtype(compute_dtype) == dtype \
        else jnp.dtype(compute_dtype).name
    early = patience is not None
    cfg = _Config(net, gradients, None if batch_size is None or batch_size == m else int(batch_size),
                  chunk_max, validation is not None, tol is not None, param_tol is not None, low,
                  None if clip_norm is None else float(clip_norm), early)
    best = ()
    if early:
        best = _initial_best(prior, best0, params, shape, dtype, start)
    state = _State(params, params, opt_state, jnp.asarray(step0, jnp.int32),
                   jnp.full(shape, jnp.inf, dtype), jnp.asarray(status0), best)
    X, Y, state = place(mesh, X, Y, state, batch_size=cfg.batch_size)
    tol_a = jnp.asarray(-1.0 if tol is None else tol, dtype)
    ptol_a = jnp.asarray(-1.0 if param_tol is None else param_tol, dtype)
    patience_a = jnp.asarray(0 if patience is None else patience, jnp.int32)

    run = _run_chunk_many if batched else _run_chunk
    pieces = {"cost": [], "accuracy": [], "val_cost": [], "val_accuracy": []}
    finish = partial(_finish, net, X=X, Y=Y, lr=lr, schedule=schedule, batched=batched,
                     val_every=val_every, on_divergence=on_divergence, start=start,
                     prior=prior, validation=None if validation is None else (X_val, Y_val),
                     restore_best=restore_best, record=record,
                     eval_chunk=None if cfg.batch_size is None else max(cfg.batch_size,
                                                                        EVAL_CHUNK))
    save_to = None
    if checkpoint is not None:  # every process calls save: process 0 writes, the others wait
        from .checkpoint import save

        def save_to(state, done=None):
            """A resumable checkpoint: the last parameters (not the best ones), their
            optimizer state and the history so far (`done`: the final `(params, history)`)."""
            last, history = finish(state, pieces, final=False) if done is None else done
            return write_checkpoint(checkpoint, lambda p: save(p, net, last, history=history),
                                    int(np.max(np.asarray(state.step))), keep)
    bar = _progress(steps, progress)
    if bar is not None and start:
        bar.update(start)
    sizer = ChunkSizer(chunk_max, fixed=chunk is not None)
    done = start
    every = checkpoint_every
    next_save = None if every is None else (done // every + 1) * every
    catcher = Interrupts(interrupts)
    gradient_check = None
    try:
        with catcher:
            while done < steps and np.any(np.asarray(state.status) == 0) and not catcher.signal:
                n = min(sizer.size, steps - done)
                if next_save is not None:
                    n = min(n, next_save - done)
                if check_every is not None:  # check_every: a chunk ends at each multiple of N
                    n = min(n, check_every - done % check_every)
                args = (cfg, tx, state, jnp.asarray(n), tol_a, ptol_a, key, X, Y, X_val, Y_val,
                        val_every, patience_a)
                LAST_CALL[:] = args  # for inspecting the compiled loop (e.g. its all-reduce)
                sizer.start()
                state, bufs = run(*args)
                ran = int(np.max(np.asarray(state.step))) - done
                sizer.done(ran)
                for k in pieces:
                    pieces[k].append(np.asarray(bufs[k])[..., :ran])
                done += ran
                if bar is not None:
                    bar.update(ran)
                    bar.set_postfix(cost=f"{float(np.nanmean(pieces['cost'][-1][..., -1])):.4g}")
                if next_save is not None and done >= next_save and done < steps \
                        and np.any(np.asarray(state.status) == 0):
                    save_to(state)
                    next_save += every
                if check_every is not None and done % check_every == 0:  # check_every hook
                    gradient_check = _check_step(cfg, state.params, done, key, X, Y)
                    if gradient_check is not None:
                        break
            if bar is not None:
                bar.close()
            # still inside: a first signal now changes nothing, the final checkpoint is written
            out, history, last = finish(state, pieces, interrupted=catcher.signal)
            if gradient_check is not None:
                _stop_on_check(history, gradient_check, done, check_every)
            if save_to is not None:  # a checkpoint stores the failed check's report as text
                save_to(state, (last, {**history, **({"gradient_check": str(gradient_check)}
                                                     if gradient_check is not None else {})}))
    finally:
        if bar is not None:
            bar.close()
    return out, history


# --- check_every: spot checks of the hand-written gradient along the run ----------------------
def _check_every_option(check_every, gradients, K):
    if check_every is None:
        return
    if not _is_count(check_every):
        raise ValueError(f"check_every must be an int >= 1 or None, got {check_every!r}")
    if gradients != "manual":
        raise ValueError(f"check_every checks the hand-written gradient, which only "
                         f"gradients='manual' uses (got gradients={gradients!r})")
    if K is not None:
        raise ValueError("check_every is an option of fit, not of fit_many")


def _check_step(cfg, params, done, key, X, Y):
    """The failing report of the spot check on the batch of step `done` − 1, or None."""
    from .layercheck import spot_check

    Xb, Yb = _batch(cfg, key, done - 1, X, Y)
    report = spot_check(cfg.net, params, Xb, Yb, key=jax.random.fold_in(key, done))
    return None if report.ok else dataclasses.replace(report, title=f"step {done}")


def _stop_on_check(history, report, done, check_every):
    from .layercheck import GradientCheckWarning

    history.update(stopped="gradient_check_failed", gradient_check=report)
    verdict = str(report).splitlines()[0]
    warnings.warn(f"the hand-written gradient failed its check after step {done} "
                  f"(check_every={check_every}): {verdict}; stopped and returned the parameters "
                  "of that step (history['gradient_check'] holds the report)",
                  GradientCheckWarning, stacklevel=4)


def check_long_run_options(*, validation, checkpoint, checkpoint_every, keep, patience,
                           restore_best, interrupts):
    """Raise a ValueError for an option of a long run (resume, checkpoints, early stopping)."""
    if patience is not None:
        if not _is_count(patience):
            raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
        if validation is None:
            raise ValueError("patience (early stopping) needs validation=(X_val, Y_val): it "
                             "counts evaluations of the validation cost without improvement")
    if checkpoint_every is not None:
        if not _is_count(checkpoint_every):
            raise ValueError(f"checkpoint_every must be an int >= 1 or None, got "
                             f"{checkpoint_every!r}")
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=path (where to write them)")
    if not _is_count(keep, least=0):
        raise ValueError(f"keep must be an int >= 0, got {keep!r}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(f"checkpoint must be a path, got {type(checkpoint).__name__}")
    for name, value in (("restore_best", restore_best), ("interrupts", interrupts)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def _initial_best(prior, best0, params, shape, dtype, start):
    """`(best params, best val cost, its step, evaluations since)` to start early stopping
    with: from the resumed history's validation entries before `start`, else nothing yet."""
    cost = np.full(shape, np.inf)
    step = np.zeros(shape, np.int64)
    since = np.zeros(shape, np.int64)
    if prior is not None and "val_cost" in prior and best0 is not None:
        vs = np.asarray(prior["val_step"])
        vc = np.asarray(prior["val_cost"], np.float64)[..., vs < start]
        vs = vs[vs < start]
        if vs.size:
            filled = np.where(np.isnan(vc), np.inf, vc)
            i = np.argmin(filled, axis=-1)
            cost = np.take_along_axis(filled, np.asarray(i)[..., None], -1)[..., 0]
            step = vs[i]
            since = (vs[None, :] > np.asarray(step)[..., None]).sum(-1) if shape else \
                int((vs > step).sum())
            since = np.asarray(since).reshape(shape)
            params = best0
    return (params, jnp.asarray(cost, dtype), jnp.asarray(step, jnp.int32),
            jnp.asarray(since, jnp.int32))


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


_val_one = jax.jit(lambda net, p, X, Y: _val_scores(net, p, X, Y), static_argnums=0)
_val_many = jax.jit(lambda net, p, X, Y: jax.vmap(lambda q: _val_scores(net, q, X, Y))(p),
                    static_argnums=0)


def _val_scores(net, params, X_val, Y_val):
    """`(J, accuracy)` on the validation set, as the compiled loop evaluates them."""
    dtype = jax.tree.leaves(params)[0].dtype
    Z, A, _ = net._forward(params, X_val)
    acc = accuracy_from_output(net, A, Y_val).astype(dtype) if is_classifier(net) \
        else jnp.asarray(jnp.nan, dtype)
    return net._loss(Z, A, Y_val).astype(dtype), acc


def _finish(net, state, pieces, X, Y, *, lr, schedule, batched, val_every, on_divergence,
            start, prior, validation, restore_best, record, eval_chunk=None, interrupted=None,
            final=True):
    """Pick the returned parameters (the last finite ones where J diverged, or the best ones
    with early stopping) and build the history, the resumed run's history first.

    Returns `(params, history, last)`, `last` the last finite parameters (not the best ones).
    With ``final=False`` (a checkpoint during the run) nothing is warned or raised,
    ``stopped`` is ``"running"`` and it returns `(last, history)`."""
    J = partial(full_cost, net, X=X, Y=Y, chunk=eval_chunk, batched=batched)
    status = np.asarray(state.status).copy()
    final_J = np.asarray(J(state.params))
    # The very last update may overflow without a step left to see it: same treatment.
    status[(status != 4) & ~np.isfinite(final_J)] = 4
    diverged = status == 4

    def pick(mask, new, old):
        return jax.tree.map(lambda a, b: jnp.where(
            mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), b, a), new, old)

    out = last = pick(diverged, state.params, state.prev_params)
    steps_run = np.asarray(state.step).astype(np.int64)
    if not final:
        names = np.array(["running"] * status.size).reshape(status.shape)
    else:
        names = np.array([STATUS[s] if s else ("interrupted" if interrupted else "steps")
                          for s in status.ravel()]).reshape(status.shape)
    history = _history_arrays(net, pieces, prior, start, val_every, validation is not None,
                              status.shape)
    if validation is not None:  # always evaluated at the returned (last) parameters
        vc, va = (_val_many if batched else _val_one)(net, out, *validation)
        end = int(steps_run.max())
        history["val_step"] = np.append(history["val_step"], end)
        history["val_cost"] = np.concatenate([history["val_cost"],
                                              np.asarray(vc)[..., None]], -1)
        if "val_accuracy" in history:
            history["val_accuracy"] = np.concatenate([history["val_accuracy"],
                                                      np.asarray(va)[..., None]], -1)
    if state.best != ():
        best_params, best_cost, best_step, _ = state.best
        final_val = np.asarray(history["val_cost"])[..., -1]  # not `last`: the params below
        better = np.asarray(final_val < np.asarray(best_cost)) | ~np.isfinite(np.asarray(best_cost))
        best_params = jax.tree.map(
            lambda b, o: jnp.where(jnp.asarray(better).reshape(better.shape + (1,) * (
                o.ndim - better.ndim)), o, b), best_params, out)
        best_step = np.where(better, steps_run, np.asarray(best_step))
        best_cost = np.where(better, final_val, np.asarray(best_cost, np.float64))
        history["best_step"] = best_step if batched else int(best_step)
        history["best_val_cost"] = best_cost if batched else float(best_cost)
        history["best_params"] = best_params
        if restore_best:
            out = best_params
    final_J = np.asarray(J(out), np.float64)
    if not batched:
        steps_run, names, final_J = int(steps_run), str(names), float(final_J)
    history.update(steps_run=steps_run, stopped=names, final_cost=final_J,
                   learning_rate=_learning_rates_run(lr, schedule, int(np.max(steps_run))))
    if interrupted and final:
        history["signal"] = interrupted
    end = int(np.max(steps_run))
    history["opt_state"] = state.opt_state
    history["settings"] = record(schedule_value=None if schedule is None else schedule(end))
    if final and diverged.any():
        where = f"step {int(steps_run) - 1}" if not batched else \
            f"{int(diverged.sum())} of {diverged.size} models ({np.flatnonzero(diverged)[:10]})"
        msg = (f"the cost became non-finite at {where} (learning_rate={lr}); stopped and "
               f"returned the last parameters with a finite cost")
        if on_divergence == "raise":
            err = DivergenceError(msg)
            err.params, err.history = out, history
            raise err
        warnings.warn(msg, DivergenceWarning, stacklevel=4)
    return (out, history, last) if final else (last, history)


SCHEDULE_BLOCK = 4096  # schedule values are computed this many steps at a time, one compile


@partial(jax.jit, static_argnums=0)
def _schedule_block(schedule, first):
    return jax.vmap(schedule)(first + jnp.arange(SCHEDULE_BLOCK))


def _learning_rates_run(lr, schedule, steps_run):
    """α as given, or the schedule's value at each global step 0 … steps_run − 1."""
    if schedule is None:
        return lr
    blocks = [np.asarray(_schedule_block(schedule, jnp.asarray(first, jnp.int32)), np.float64)
              for first in range(0, steps_run, SCHEDULE_BLOCK)]
    return np.concatenate(blocks)[:steps_run] if blocks else np.zeros(0)


def _history_arrays(net, pieces, prior, start, val_every, validate, lead):
    """``cost``, ``accuracy`` and the validation entries over global steps 0 … end − 1: the
    resumed run's entries before `start` (NaN where it recorded none), then this run's."""
    new = {k: np.concatenate(v, axis=-1) if v else np.zeros(lead + (0,), np.float32)
           for k, v in pieces.items()}
    end = start + new["cost"].shape[-1]
    classify = is_classifier(net)
    names = ("cost", "accuracy") if classify else ("cost",)
    history = {}
    prior = prior or {}
    for k in names:
        old = np.full(lead + (start,), np.nan, new[k].dtype)
        if k in prior:
            p = np.asarray(prior[k])[..., :start]
            old[..., :p.shape[-1]] = p
        history[k] = np.concatenate([old, new[k]], axis=-1)
    if validate:
        val_step = np.arange(-(-start // val_every) * val_every, end, val_every)
        history["val_step"] = val_step
        history["val_cost"] = new["val_cost"][..., val_step - start]
        if classify:
            history["val_accuracy"] = new["val_accuracy"][..., val_step - start]
        if "val_step" in prior:
            keep = np.asarray(prior["val_step"]) < start
            history["val_step"] = np.concatenate([np.asarray(prior["val_step"])[keep],
                                                  val_step])
            for k in ("val_cost", "val_accuracy"):
                if k in history and k in prior:
                    history[k] = np.concatenate([np.asarray(prior[k])[..., keep], history[k]],
                                                axis=-1)
    return history
