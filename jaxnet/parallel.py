"""Scale on JAX's own machinery: many models with `vmap`, many devices with `jax.sharding`.

* `fit_many` trains K networks of one architecture at once: `params_batch` has a leading axis K
  (e.g. ``jax.vmap(net.init)(jax.random.split(key, K))``), learning rates may differ per model,
  and one compilation serves all K (the loop of `fit` under `jax.vmap`).
* ``fit(..., mesh=mesh)`` / ``fit_many(..., mesh=mesh)`` shard the example axis (the columns of
  `X`, `Y`) over the mesh axis ``"data"`` and replicate the parameters; XLA inserts the
  all-reduce that sums `dW = (1/m) dZ A_prevᵀ` over the devices.
* `check_execution_modes` proves the gradient is the same eagerly, under `jit`, as one member of
  a `vmap`ped batch, and sharded over the devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .training import _optimizer, place, train


def _member(tree, k=0):
    return jax.tree.map(lambda a: a[k], tree)


def _batch_size_of(params_batch) -> int:
    sizes = {jnp.shape(a)[0] if jnp.ndim(a) else None for a in jax.tree.leaves(params_batch)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError("params_batch needs one leading axis K on every leaf (e.g. from "
                         f"jax.vmap(net.init)(keys)); got leading sizes {sorted(map(str, sizes))}")
    return sizes.pop()


def _learning_rates(learning_rate, K):
    if learning_rate is None or callable(learning_rate) or np.ndim(learning_rate) == 0:
        return learning_rate, False
    lr = np.asarray(learning_rate, np.float64)
    if lr.shape != (K,):
        raise ValueError(f"learning_rate must be a scalar or have shape (K,) = ({K},), got "
                         f"shape {lr.shape}")
    if not (np.all(np.isfinite(lr)) and np.all(lr > 0)):
        raise ValueError(f"every learning rate must be a finite number > 0, got {lr}")
    return lr, True


def fit_many(net, params_batch, X, Y, *, steps: int, learning_rate=None, optimizer="sgd",
             gradients: str = "autodiff", batch_size: int | None = None, key=None,
             tol: float | None = None, param_tol: float | None = None, validation=None,
             val_every: int | None = None, on_divergence: str = "warn",
             progress: bool | None = None, chunk: int | None = None, compute_dtype=None,
             mesh=None, clip_norm: float | None = None, resume: dict | None = None,
             patience: int | None = None, restore_best: bool = True, interrupts: bool = True):
    """Train K networks of one architecture on the same data in one compiled loop.

    Arguments:
        params_batch: the parameters of K networks, every leaf with a leading axis K.
        learning_rate: one α for all, or an array of shape `(K,)` (named optimizers only).
        key: one key (the same minibatch order for all) or K keys (`jax.random.split(key, K)`).
        resume: the `history` a previous `fit_many` returned, with `params_batch` its returned
            parameters: continues the run to `steps` in all (see `fit`); models that stopped
            on their own stay stopped.
        everything else: as `fit` (`chunk`, `patience`, `restore_best`, `interrupts`
            included; checkpoint files are `fit`'s alone); each model stops on its own
            (tol, divergence, early stopping) while the others go on.

    Returns:
        `(params_batch, history)`: ``cost`` and ``accuracy`` of shape `(K, steps)` (NaN after a
        model stopped), ``val_cost``/``val_accuracy`` `(K, n_val)`, ``steps_run``,
        ``final_cost`` `(K,)`, ``stopped`` (an array of K strings) and the training state
        (``opt_state`` with a leading axis K, ``settings``) for `resume`.
        Model k's result equals ``fit`` on model k alone, to float tolerance.
    """
    K = _batch_size_of(params_batch)
    net._check_params(_member(params_batch))
    X = net._check_X(X)
    Y = net._check_Y(Y, X.shape[-1])
    lr, per_model = _learning_rates(learning_rate, K)
    tx, scalar_lr = _optimizer(optimizer, 1.0 if per_model else lr)
    return train(net, params_batch, X, Y, tx=tx, lr=lr if per_model else scalar_lr, K=K,
                 steps=steps, gradients=gradients, batch_size=batch_size, key=key, tol=tol,
                 param_tol=param_tol, validation=validation, val_every=val_every,
                 on_divergence=on_divergence, progress=progress, chunk=chunk,
                 compute_dtype=compute_dtype, mesh=mesh, clip_norm=clip_norm,
                 optimizer=optimizer, learning_rate=learning_rate,
                 resume=_history_only(resume), patience=patience, restore_best=restore_best,
                 interrupts=interrupts)


def _history_only(resume):
    if resume is not None and not isinstance(resume, dict):
        raise ValueError("fit_many resumes from the history dict a previous fit_many returned "
                         f"(with its parameters as params_batch), got {type(resume).__name__}")
    return resume


def data_mesh(devices=None):
    """A one-axis mesh named ``"data"`` over `devices` (default: all of them)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return jax.sharding.Mesh(devices, ("data",))


# --- the same gradient in every execution mode ------------------------------------------------
@dataclass(frozen=True)
class ModeReport:
    """Per execution mode, the relative error of the manual and autodiff gradients against the
    eager hand-written reference (float64); ``ok`` when all are within `tol`."""

    rows: tuple  # (mode, manual_rel, autodiff_rel)
    tol: float

    @property
    def ok(self) -> bool:
        return all(max(m, a) <= self.tol for _, m, a in self.rows)

    def __str__(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        lines = [f"execution modes (float64; reference: eager hand-written backprop): "
                 f"{'OK' if self.ok else 'FAILED'}",
                 f"{'mode'.ljust(width)}  manual     autodiff"]
        lines += [f"{mode.ljust(width)}  {m:.1e}    {a:.1e}"
                  + ("" if max(m, a) <= self.tol else "  FAIL") for mode, m, a in self.rows]
        lines.append(f"threshold: relative error <= {self.tol:g} per leaf")
        return "\n".join(lines)


def _rel(tree, ref) -> float:
    errs = [float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-300))
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref))]
    return max(errs)


def check_execution_modes(net, params, X, Y, *, mesh=None, K: int = 4, member: int = 1,
                          tol: float = 1e-10, key=None) -> ModeReport:
    """Prove the gradient is the same eagerly, under `jit`, in a `vmap`, and sharded.

    Arguments:
        net, params, X, Y: as `check_gradients`.
        mesh: the mesh for the sharded mode (default: all devices, when there are several;
            with one device the sharded row is left out). `m` must divide by its size.
        K, member: the vmapped batch stacks `params` as member `member` among K − 1 random
            perturbations of it.
        tol: relative-error threshold; float64 round-off differs between modes only by
            summation order, far below 1e-10.
    """
    X, Y = net._check(params, X, Y)
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(jnp.asarray(a).dtype,
                                                                    jnp.floating)
            else jnp.asarray(a), t)
        p, X, Y = to64(params), to64(X), to64(Y)
        manual = lambda p, X, Y: net._backprop(p, X, Y)
        auto = jax.grad(lambda p, X, Y: net._cost(p, X, Y))
        with jax.disable_jit():
            ref = manual(p, X, Y)
            rows = [("eager", 0.0, _rel(auto(p, X, Y), ref))]
        rows.append(("jit", _rel(jax.jit(manual)(p, X, Y), ref),
                     _rel(jax.jit(auto)(p, X, Y), ref)))
        keys = jax.random.split(key if key is not None else jax.random.key(0), K)
        stack = jax.vmap(lambda k: jax.tree.map(
            lambda a: a + 0.1 * jax.random.normal(k, a.shape, a.dtype), p))(keys)
        stack = jax.tree.map(lambda s, a: s.at[member].set(a), stack, p)
        in_vmap = lambda f: _member(jax.jit(jax.vmap(f, in_axes=(0, None, None)))(stack, X, Y),
                                    member)
        rows.append((f"vmap (member {member} of {K})", _rel(in_vmap(manual), ref),
                     _rel(in_vmap(auto), ref)))
        if mesh is None and len(jax.devices()) > 1:
            mesh = data_mesh()
        if mesh is not None:
            Xs, Ys, ps = place(mesh, X, Y, p)
            n = mesh.shape["data"]
            rows.append((f"sharded ({n} devices, 'data' axis)",
                         _rel(jax.jit(manual)(ps, Xs, Ys), ref), _rel(jax.jit(auto)(ps, Xs, Ys), ref)))
    return ModeReport(tuple(rows), tol)
