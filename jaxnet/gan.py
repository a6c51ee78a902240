"""Generative adversarial networks on the layer design: two networks, their losses, and the game.

A generator `G` maps noise `z ~ N(0, I)` of shape `(n_z, m)` to samples `G(z)`; a discriminator
`D` maps a sample to one score per example.  With a sigmoid output unit its logits are
`l = Z^[L]` and `D(x) = σ(l)` is the probability that `x` is real.  The game alternates:

    discriminator step:  J_D = mean BCE(D(x), 1) + mean BCE(D(G(z)), 0)     (G(z) held fixed)
    generator step:      J_G = mean BCE(D(G(z)), 1)                         (non-saturating)

Every loss is computed from the logits (softplus forms, finite for logits of any size) and is
written beside its derivative with respect to the logits (or scores).  The generator's gradient
flows through `D` **by hand**: `D.backward_chain` turns `∂J_G/∂l` into `∂J_G/∂G(z)` (the
gradient of D's input), which is the `dŶ` that `G.backward_chain` starts from.  No `jax.grad`
runs in `discriminator_backprop` or `generator_backprop`; the tests prove both equal `jax.grad`
of the costs in float64.  `train` runs the alternating loop under one `jit`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import checkpoint as ckpt
from . import long_runs, training
from .network import MLP
from .sequential import Sequential, as_sequential

softplus, sigmoid = jax.nn.softplus, jax.nn.sigmoid


# --- the losses, each beside its derivative ------------------------------------------------------
# BCE(σ(l), 1) = −log σ(l) = softplus(−l);   BCE(σ(l), 0) = −log(1 − σ(l)) = softplus(l).
def discriminator_loss(logits_real, logits_fake):
    """`J_D = mean BCE(σ(l_r), 1) + mean BCE(σ(l_f), 0) = mean softplus(−l_r) + mean softplus(l_f)`.

    `logits_real` `(1, m_r)` and `logits_fake` `(1, m_f)` (any shapes: means over all entries)."""
    return jnp.mean(softplus(-logits_real)) + jnp.mean(softplus(logits_fake))


def discriminator_loss_grad(logits_real, logits_fake):
    """`(∂J_D/∂l_r, ∂J_D/∂l_f) = ((σ(l_r) − 1) / m_r, σ(l_f) / m_f)`, with `σ(l) − 1 = −σ(−l)`."""
    return -sigmoid(-logits_real) / logits_real.size, sigmoid(logits_fake) / logits_fake.size


def generator_loss(logits_fake):
    """Non-saturating: `J_G = mean BCE(σ(l_f), 1) = mean softplus(−l_f) = −mean log D(G(z))`."""
    return jnp.mean(softplus(-logits_fake))


def generator_loss_grad(logits_fake):
    """`∂J_G/∂l_f = (σ(l_f) − 1) / m = −σ(−l_f) / m`: near −1/m when D rejects the fakes."""
    return -sigmoid(-logits_fake) / logits_fake.size


def minimax_generator_loss(logits_fake):
    """The original minimax loss, to minimize: `J_G = mean log(1 − D(G(z))) = −mean BCE(σ(l_f), 0)
    = −mean softplus(l_f)` (≤ 0; the generator lowers it by making D call its fakes real)."""
    return -jnp.mean(softplus(logits_fake))


def minimax_generator_loss_grad(logits_fake):
    """`∂J_G/∂l_f = −σ(l_f) / m`: near 0 when D rejects the fakes (σ(l_f) ≈ 0), the saturation
    that the non-saturating loss avoids."""
    return -sigmoid(logits_fake) / logits_fake.size


def ls_discriminator_loss(scores_real, scores_fake):
    """Least squares (LSGAN): `J_D = ½ mean((s_r − 1)²) + ½ mean(s_f²)`, `s` = D's output."""
    return 0.5 * jnp.mean((scores_real - 1) ** 2) + 0.5 * jnp.mean(scores_fake ** 2)


def ls_discriminator_loss_grad(scores_real, scores_fake):
    """`(∂J_D/∂s_r, ∂J_D/∂s_f) = ((s_r − 1) / m_r, s_f / m_f)`."""
    return (scores_real - 1) / scores_real.size, scores_fake / scores_fake.size


def ls_generator_loss(scores_fake):
    """Least squares (LSGAN): `J_G = ½ mean((s_f − 1)²)`."""
    return 0.5 * jnp.mean((scores_fake - 1) ** 2)


def ls_generator_loss_grad(scores_fake):
    """`∂J_G/∂s_f = (s_f − 1) / m`."""
    return (scores_fake - 1) / scores_fake.size


class LossPair(NamedTuple):
    """The two players' losses; `from_logits`: scores are `Z^[L]` (sigmoid D) or D's output."""

    d_loss: object
    d_grad: object
    g_loss: object
    g_grad: object
    from_logits: bool


LOSSES = {
    "non_saturating": LossPair(discriminator_loss, discriminator_loss_grad, generator_loss,
                               generator_loss_grad, True),
    "minimax": LossPair(discriminator_loss, discriminator_loss_grad, minimax_generator_loss,
                        minimax_generator_loss_grad, True),
    "least_squares": LossPair(ls_discriminator_loss, ls_discriminator_loss_grad,
                              ls_generator_loss, ls_generator_loss_grad, False),
}


def _check_key(key):
    if not (hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key must be a typed PRNG key from jax.random.key(seed), got {key!r}")


def _as_network(role: str, net) -> Sequential:
    if isinstance(net, (MLP, Sequential)):
        return as_sequential(net)
    raise TypeError(f"the {role} must be a jaxnet MLP or Sequential, got {type(net).__name__}")


# --- the pair of networks ------------------------------------------------------------------------
@dataclass(frozen=True)
class GAN:
    """A generator and a discriminator (any `MLP` or `Sequential`; hashable: static under `jit`).

    Arguments:
        generator: maps noise `(*noise_shape, m)` (its input shape) to samples; its output shape
            must equal the discriminator's input shape.
        discriminator: maps samples to one unit per example.  For ``"non_saturating"`` and
            ``"minimax"`` that unit must be a sigmoid (its logits `Z^[L]` enter the losses).
            For ``"least_squares"`` its output `A^[L]` is the score, usually an identity unit
            (the LSGAN: scores unbounded, pulled to 1 for real and 0 for fake samples).
        loss: ``"non_saturating"`` (default), ``"minimax"`` or ``"least_squares"``.

    Parameters are ``{"generator": [...], "discriminator": [...]}``, one dict per layer each.
    """

    generator: object
    discriminator: object
    loss: str = "non_saturating"

    def __post_init__(self):
        G = _as_network("generator", self.generator)
        D = _as_network("discriminator", self.discriminator)
        if self.loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {self.loss!r}; valid are {list(LOSSES)}")
        if G.output_shape != D.input_shape:
            raise ValueError(f"the generator's output shape {G.output_shape} must equal the "
                             f"discriminator's input shape {D.input_shape} (m left out)")
        if D.output_shape != (1,):
            raise ValueError(f"the discriminator must end in a single unit (output shape (1,)), "
                             f"got output shape {D.output_shape}")
        if LOSSES[self.loss].from_logits:
            if D.output != "sigmoid":
                raise ValueError(f"loss {self.loss!r} needs a discriminator ending in one "
                                 f"sigmoid unit (its logits are Z^[L]), got activation "
                                 f"{D.output!r}; use loss='least_squares' for an identity output")
            # The losses' gradients are with respect to the logits; turning them into dA^[L]
            # would divide by σ'(Z), which underflows where D is sure: the shortcut is needed.
            if not hasattr(D.layers[-1], "backward_from_dZ"):
                raise ValueError(f"loss {self.loss!r} starts the discriminator's backward pass "
                                 f"from its logits' gradient dZ^[L], but its last layer "
                                 f"{D.layers[-1]!r} has no backward_from_dZ(params, cache, dZ); "
                                 "add it (docs/layers.md, 'Write your own layer') or use "
                                 "loss='least_squares' with an identity output")
        object.__setattr__(self, "_G", G)
        object.__setattr__(self, "_D", D)

    @property
    def noise_shape(self) -> tuple:
        """The generator's input shape (one example, m left out): `(n_z,)` for an MLP."""
        return self._G.input_shape

    @property
    def noise_dim(self) -> int:
        """Entries of one noise vector: `prod(noise_shape)`."""
        return math.prod(self.noise_shape)

    @property
    def sample_shape(self) -> tuple:
        """The shape of one sample, m left out (G's output, D's input)."""
        return self._D.input_shape

    def init(self, key, *, dtype=jnp.float32) -> dict:
        """`{"generator": G.init(k_G), "discriminator": D.init(k_D)}` with `k_G, k_D = split(key)`."""
        k_g, k_d = jax.random.split(key)
        return {"generator": self.generator.init(k_g, dtype=dtype),
                "discriminator": self.discriminator.init(k_d, dtype=dtype)}

    def noise(self, key, m: int, *, dtype=jnp.float32):
        """`Z ~ N(0, I)` of shape `(*noise_shape, m)`."""
        _check_key(key)
        if not training._is_count(m):
            raise ValueError(f"m must be an int >= 1, got {m!r}")
        return jax.random.normal(key, (*self.noise_shape, m), dtype)

    def sample(self, params, Z):
        """`G(z)` of shape `(*sample_shape, m)` for noise `Z` `(*noise_shape, m)`."""
        self._check_params(params)
        return self._G._forward(params["generator"], self._check_Z(Z))[1]

    def discriminate(self, params, X):
        """D's output `(1, m)` (the probability of "real" for a sigmoid D) for `X`."""
        self._check_params(params)
        return self._D._forward(params["discriminator"], self._check_X(X))[1]

    # --- costs and their hand-written gradients (validated) ----------------------------------
    def discriminator_cost(self, params, X_real, Z):
        """`J_D` on real samples `X_real` `(*sample_shape, m_r)` and fakes `G(Z)`, `Z`
        `(*noise_shape, m_f)`.  The fakes are detached (`lax.stop_gradient`): as in the game's
        discriminator step, `jax.grad` of this cost has zero generator leaves."""
        self._check_params(params)
        X_real, Z = self._check_X(X_real), self._check_Z(Z)
        return self._d_cost(params, X_real, Z)

    def generator_cost(self, params, Z):
        """`J_G` of `D(G(Z))` (non-saturating, minimax or least squares, per `loss`)."""
        self._check_params(params)
        return self._g_cost(params, self._check_Z(Z))

    def discriminator_backprop(self, params, X_real, Z):
        """`∂J_D/∂θ_D` by hand: the tree of ``params["discriminator"]``."""
        self._check_params(params)
        X_fake = self._G._forward(params["generator"], self._check_Z(Z))[1]
        return self._d_grads(params["discriminator"], self._check_X(X_real), X_fake)[1]

    def generator_backprop(self, params, Z):
        """`∂J_G/∂θ_G` by hand, through D's backward to its input: the tree of
        ``params["generator"]``."""
        self._check_params(params)
        return self._g_grads(params, self._check_Z(Z))[1]

    # --- pure functions (no checks: for compiled loops) --------------------------------------
    def _scores(self, dp, X):
        """`(scores, D's output, caches)`: scores are the logits `Z^[L]` or the output `A^[L]`."""
        Z_L, A_L, caches = self._D._forward(dp, X)
        if LOSSES[self.loss].from_logits and Z_L is A_L:  # no "Z" in the cache: no logits
            raise ValueError(f"loss {self.loss!r} needs the logits Z^[L]: the discriminator's "
                             f"last layer {self._D.layers[-1]!r} must keep them as cache['Z']")
        return (Z_L if LOSSES[self.loss].from_logits else A_L), A_L, caches

    def _d_cost(self, params, X_real, Z):
        X_fake = jax.lax.stop_gradient(self._G._forward(params["generator"], Z)[1])
        s_r, s_f = self._scores(params["discriminator"], X_real)[0], \
            self._scores(params["discriminator"], X_fake)[0]
        return LOSSES[self.loss].d_loss(s_r, s_f)

    def _g_cost(self, params, Z):
        X_fake = self._G._forward(params["generator"], Z)[1]
        return LOSSES[self.loss].g_loss(self._scores(params["discriminator"], X_fake)[0])

    def _d_grads(self, dp, X_real, X_fake):
        """`(J_D, grads_D, mean D(x), mean D(G(z)))`: one pass of D over `[X_real, X_fake]`
        (examples concatenated), `dZ^[L]` (or `dA^[L]`) from the loss, D's backward chain."""
        pair, m_r = LOSSES[self.loss], X_real.shape[-1]
        s, A, caches = self._scores(dp, jnp.concatenate([X_real, X_fake], axis=-1))
        s_r, s_f = s[..., :m_r], s[..., m_r:]
        d_r, d_f = pair.d_grad(s_r, s_f)
        _, grads = self._D.backward_chain(dp, caches, jnp.concatenate([d_r, d_f], axis=-1),
                                          from_logits=pair.from_logits)
        return pair.d_loss(s_r, s_f), grads, jnp.mean(A[..., :m_r]), jnp.mean(A[..., m_r:])

    def _through_d(self, dp, X_fake):
        """`(J_G, ∂J_G/∂X_fake)`: D's forward on the fakes, `∂J_G/∂l`, D's backward to its
        input (D's own parameter gradients are not used; under `jit` they are never computed)."""
        pair = LOSSES[self.loss]
        s_f, _, caches = self._scores(dp, X_fake)
        dX, _ = self._D.backward_chain(dp, caches, pair.g_grad(s_f), from_logits=pair.from_logits)
        return pair.g_loss(s_f), dX

    def _g_grads(self, params, Z, forward=None):
        """`(J_G, grads_G)`; `forward = (X_fake, caches_G)` reuses a forward pass of G."""
        gp = params["generator"]
        if forward is None:
            _, X_fake, caches = self._G._forward(gp, Z)
        else:
            X_fake, caches = forward
        J, dX = self._through_d(params["discriminator"], X_fake)
        return J, self._G.backward_chain(gp, caches, dX)[1]

    # --- validation --------------------------------------------------------------------------
    def _check_params(self, params):
        if not isinstance(params, dict) or set(params) != {"generator", "discriminator"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"GAN params must be a dict with keys ['discriminator', "
                             f"'generator'], got {got}")
        for role, net in (("generator", self._G), ("discriminator", self._D)):
            try:
                net._check_params(params[role])
            except (ValueError, TypeError) as err:
                raise type(err)(f"params[{role!r}]: {err}") from None

    def _check_Z(self, Z):
        try:
            return self._G._check_X(Z)
        except ValueError as err:
            raise ValueError(f"noise Z (the generator's input): {err}") from None

    def _check_X(self, X):
        try:
            return self._D._check_X(X)
        except ValueError as err:
            raise ValueError(f"X_real (the discriminator's input, like G's output): {err}") \
                from None


# --- the alternating game, compiled ----------------------------------------------------------------
TRACE_COUNT = [0]  # incremented each time the training chunk is traced (compiled); for tests
RECORDS = ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm")
CHUNK = 1000  # the most steps per compiled call (its scan length)


class _Config(NamedTuple):
    gan: GAN
    gradients: str
    batch_size: int | None
    k_disc: int
    chunk: int


class _State(NamedTuple):
    params: dict
    prev_params: dict  # one step back: what is returned if a step turns non-finite
    opt_g: object
    opt_d: object
    step: jax.Array
    status: jax.Array  # 0 running, 1 diverged


def _d_update(cfg, tx_d, params, opt_d, X, key):
    """One discriminator step on a real batch and a fresh fake batch.  Returns
    `(params, opt_d, (J_D, mean D(x), mean D(G(z))), (Z, X_fake, caches_G))`."""
    gan, m = cfg.gan, X.shape[-1]
    k_x, k_z = jax.random.split(key)
    b = cfg.batch_size or m
    X_b = X if cfg.batch_size is None else \
        jnp.take(X, jax.random.randint(k_x, (b,), 0, m), axis=-1)
    Z = jax.random.normal(k_z, (*gan.noise_shape, b), X.dtype)
    _, X_fake, caches = gan._G._forward(params["generator"], Z)
    dp = params["discriminator"]
    if cfg.gradients == "manual":
        J, grads, d_real, d_fake = gan._d_grads(dp, X_b, X_fake)
    else:
        def cost(dp):
            s, A, _ = gan._scores(dp, jnp.concatenate([X_b, X_fake], axis=-1))
            return LOSSES[gan.loss].d_loss(s[..., :b], s[..., b:]), A
        (J, A), grads = jax.value_and_grad(cost, has_aux=True)(dp)
        d_real, d_fake = jnp.mean(A[..., :b]), jnp.mean(A[..., b:])
    updates, opt_d = tx_d.update(grads, opt_d, dp)
    params = {**params, "discriminator": optax.apply_updates(dp, updates)}
    return params, opt_d, (J, d_real, d_fake), (Z, X_fake, caches)


def _game_step(cfg, tx_g, tx_d, params, opt_g, opt_d, X, key):
    """`k_disc` discriminator steps, then one generator step on the last step's fakes (G has not
    changed since, so its forward pass is reused).  Returns the new state and the record."""
    gan = cfg.gan
    for j in range(cfg.k_disc):
        params, opt_d, (J_D, d_real, d_fake), (Z, X_fake, caches) = _d_update(
            cfg, tx_d, params, opt_d, X, jax.random.fold_in(key, j))
    gp = params["generator"]
    if cfg.gradients == "manual":
        J_G, grads = gan._g_grads(params, Z, forward=(X_fake, caches))
    else:
        J_G, grads = jax.value_and_grad(lambda gp: gan._g_cost({**params, "generator": gp}, Z))(gp)
    updates, opt_g = tx_g.update(grads, opt_g, gp)
    params = {**params, "generator": optax.apply_updates(gp, updates)}
    record = (J_D, J_G, d_real, d_fake, optax.tree.norm(grads))
    return params, opt_g, opt_d, record


def _chunk(cfg, tx_g, tx_d, state: _State, n, key, X):
    """Up to `n` (≤ cfg.chunk) more game steps in one `lax.scan`; returns the state and the
    records `(5, chunk)` (NaN past the steps run)."""
    TRACE_COUNT[0] += 1
    dtype = X.dtype

    def run(st):
        params, opt_g, opt_d, rec = _game_step(cfg, tx_g, tx_d, st.params, st.opt_g, st.opt_d,
                                               X, jax.random.fold_in(key, st.step))
        rec = jnp.stack([r.astype(dtype) for r in rec])
        accept = lambda: (_State(params, st.params, opt_g, opt_d, st.step + 1, st.status), rec)
        # A non-finite step: stop, keeping the parameters one step back (those of `st` gave it).
        reject = lambda: (st._replace(step=st.step + 1, status=jnp.ones((), jnp.int32)), rec)
        return jax.lax.cond(jnp.all(jnp.isfinite(rec)), accept, reject)

    def skip(st):
        return st, jnp.full((len(RECORDS),), jnp.nan, dtype)

    def body(st, i):
        return jax.lax.cond((i < n) & (st.status == 0), run, skip, st)

    state, recs = jax.lax.scan(body, state, jnp.arange(cfg.chunk))
    return state, recs.T


_run_chunk = jax.jit(_chunk, static_argnames=("cfg", "tx_g", "tx_d"))
_INIT: dict = {}  # optimizer -> its jitted init


def _per_player(value, name):
    if isinstance(value, dict):
        if set(value) != {"generator", "discriminator"}:
            raise ValueError(f"{name} as a dict needs the keys 'generator' and 'discriminator', "
                             f"got {sorted(value)}")
        return value["generator"], value["discriminator"]
    return value, value


def train(gan: GAN, params, X_real, *, steps: int, key, batch_size: int | None = None,
          optimizer="adam", learning_rate=None, k_disc: int = 1, gradients: str = "manual",
          noise_dim: int | None = None, on_divergence: str = "warn",
          progress: bool | None = None, chunk: int | None = None, snapshots=(), resume=None,
          checkpoint=None, checkpoint_every: int | None = None, keep: int = 3):
    """Play the game for `steps` generator steps; return `(params, history)`.

    Each step: `k_disc` discriminator steps (each on a real batch drawn with replacement from
    `X_real` and a fresh noise batch `Z ~ N(0, I)`), then one generator step on the last fake
    batch, through the updated discriminator.  The loop is a `lax.scan` under one `jit`, run in
    chunks of about one second (at most `chunk` steps) between progress-bar updates; a second
    call with the same shapes and options reuses the compiled loop.

    The batches and noise of step `s` come from `fold_in(key, s)` alone, so a run resumed at
    step `s` (``resume=``) plays exactly the steps an uninterrupted one would: the same
    parameters bit for bit on the same machine.  SIGINT or SIGTERM stop the game at the end of
    the running chunk (``history["stopped"] == "interrupted"``, a checkpoint written when
    `checkpoint` is set); a second SIGINT aborts at once.

    Arguments:
        gan, params: the `GAN` and its initial parameters (not modified).
        X_real: real samples `(*sample_shape, m)`, cast to the parameters' dtype.
        steps: generator steps.
        key: a `jax.random.key`: step t draws from `fold_in(key, t)`.
        batch_size: examples per batch (real and fake alike); None: all m each step.
        optimizer, learning_rate: as `jn.fit` (a name with a learning rate, or an optax
            optimizer with None), one for both players or a dict ``{"generator": ...,
            "discriminator": ...}``.
        k_disc: discriminator steps per generator step.
        gradients: ``"manual"`` (the hand-written backward passes, default) or ``"autodiff"``.
        noise_dim: optional check that the generator takes noise of this size (it always comes
            from the generator's input shape).
        on_divergence: ``"warn"`` or ``"raise"`` when a loss or gradient turns non-finite:
            either way training stops with the last parameters whose step was finite.
        progress: True/False, or None for a bar that appears after about a second.
        chunk: None (default): steps per compiled call sized to about one second of work
            (at most `CHUNK`; `jaxnet.long_runs.ChunkSizer`), so the bar and an interrupt
            respond within about two seconds; an int: exactly that many steps per call.  Either
            way one compilation serves every chunk length.
        snapshots: steps (in 1..steps) after which to keep a copy of the parameters, e.g. for
            figures of samples over training (no recompilation: chunks end there).
        resume: a path or a `GANCheckpoint` written by this function (``checkpoint=``) or by
            `save` with `opt_state` and `step`: play on from its step to `steps` (the run's
            total), with its parameters and both optimizers' states (`params` is then only
            checked).  The GAN, the optimizers with their learning rates, the batch size,
            `k_disc` and `key` must be the checkpoint's, else a `ValueError` says which differs.
        checkpoint, checkpoint_every, keep: write a resumable checkpoint to `checkpoint` every
            `checkpoint_every` steps (None: only at the end) and at the end (also when
            interrupted), atomically; the `keep` newest lie beside it as
            ``NAME.step-00001200.npz`` (`jaxnet.long_runs.write_checkpoint`; 0: only the
            file at `checkpoint`).

    Returns:
        `(params, history)`: history holds per step ``d_loss``, ``g_loss``, ``d_real`` (mean
        D(x)), ``d_fake`` (mean D(G(z)), before the discriminator's update), ``g_grad_norm``
        (global norm of the generator's gradient), then ``steps_run`` (the total, counting
        the steps before a resume), ``stopped`` (``"steps"``, ``"diverged"`` or
        ``"interrupted"``, then also ``signal``: ``"SIGINT"`` or ``"SIGTERM"``), ``loss``, ``k_disc``, ``learning_rate``, ``opt_state``
        (``{"generator": ..., "discriminator": ...}``, to resume from), and ``snapshots``
        (``{step: params}``) when asked for.
    """
    if not isinstance(gan, GAN):
        raise TypeError(f"train needs a jaxnet GAN, got {type(gan).__name__}")
    gan._check_params(params)
    X = gan._check_X(X_real)
    m = X.shape[-1]
    if noise_dim is not None and (not training._is_count(noise_dim) or noise_dim != gan.noise_dim):
        raise ValueError(f"noise_dim must be an int >= 1 equal to the generator's input size "
                         f"{gan.noise_dim}, got {noise_dim!r}")
    if not training._is_count(k_disc):
        raise ValueError(f"k_disc must be an int >= 1, got {k_disc!r}")
    training.check_options(m, steps=steps, gradients=gradients, on_divergence=on_divergence,
                           batch_size=batch_size, key=key, tol=None, param_tol=None,
                           compute_dtype=None, chunk=CHUNK if chunk is None else chunk)
    _check_key(key)
    marks = sorted({int(s) for s in snapshots}) if isinstance(snapshots, (list, tuple, range)) \
        and all(training._is_count(s) and s <= steps for s in snapshots) else None
    if marks is None:
        raise ValueError(f"snapshots must be a list of steps in [1, steps={steps}], got "
                         f"{snapshots!r}")
    if checkpoint_every is not None and not training._is_count(checkpoint_every):
        raise ValueError(f"checkpoint_every must be an int >= 1 or None, got {checkpoint_every!r}")
    if not training._is_count(keep, 0):
        raise ValueError(f"keep must be an int >= 0, got {keep!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every needs checkpoint=PATH (where to write them)")
    optimizers = _per_player(optimizer, "optimizer")
    txs = [training._optimizer(o, lr) for o, lr in zip(optimizers,
                                                       _per_player(learning_rate, "learning_rate"))]
    settings = _settings(optimizers, txs, batch_size, k_disc, key)
    dtype = jax.tree.leaves(params)[0].dtype
    X = X.astype(dtype)
    opts = []
    for (tx, lr), role in zip(txs, ("generator", "discriminator")):
        if tx not in _INIT:  # compiled: op-by-op it dispatches one zeros_like per leaf
            _INIT[tx] = jax.jit(tx.init)
        state = _INIT[tx](params[role])
        if lr is not None:
            state.hyperparams["learning_rate"] = jnp.asarray(lr, dtype)
        opts.append(state)
    start, before = 0, {}
    if resume is not None:
        params, opts, start, before = _resumed(resume, gan, settings, steps, opts, dtype)
    most = int(min(CHUNK if chunk is None else chunk, steps))
    cfg = _Config(gan, gradients, None if batch_size is None else int(batch_size), int(k_disc),
                  most)
    state = _State(params, params, opts[0], opts[1], jnp.asarray(start, jnp.int32),
                   jnp.zeros((), jnp.int32))
    saves = [] if checkpoint_every is None else \
        list(range((start // checkpoint_every + 1) * checkpoint_every, steps, checkpoint_every))
    ends = sorted({*marks, *saves})

    def save_state(st, done, history):
        opt = {"generator": st.opt_g, "discriminator": st.opt_d}
        long_runs.write_checkpoint(checkpoint, lambda target: _write(
            target, gan, st.params, history, opt, done, settings), done, keep)

    pieces, done, kept = [], start, {}
    sizer = long_runs.ChunkSizer(most, fixed=chunk is not None)
    bar = training._progress(steps, progress)
    if bar is not None and start:
        bar.update(start)
    catcher = long_runs.Interrupts()
    try:
        with catcher:
            while done < steps and not catcher.signal:
                end = min([s for s in ends if s > done] + [steps])
                sizer.start()
                state, recs = _run_chunk(cfg, txs[0][0], txs[1][0], state,
                                         jnp.asarray(min(sizer.size, end - done)), key, X)
                ran = int(state.step) - done
                sizer.done(ran)
                pieces.append(np.asarray(recs)[:, :ran])
                done += ran
                if done in marks and int(state.status) == 0:
                    kept[done] = state.params
                if bar is not None:
                    bar.update(ran)
                    bar.set_postfix(d_loss=f"{pieces[-1][0, -1]:.3g}",
                                    g_loss=f"{pieces[-1][1, -1]:.3g}")
                if int(state.status) != 0:
                    break
                if done in saves:
                    save_state(state, done, _history(before, pieces, done, "steps", gan,
                                                     k_disc, txs))
    finally:
        if bar is not None:
            bar.close()
    stopped = "interrupted" if catcher.signal and done < steps else None
    diverged = int(state.status) != 0
    stopped = "diverged" if diverged else stopped or "steps"
    history = _history(before, pieces, done, stopped, gan, k_disc, txs)
    if stopped == "interrupted":
        history["signal"] = catcher.signal
    if checkpoint is not None and not diverged:
        save_state(state, done, history)
    history["opt_state"] = {"generator": state.opt_g, "discriminator": state.opt_d}
    if marks:
        history["snapshots"] = kept
    out = state.prev_params if diverged else state.params
    if diverged:
        msg = (f"a GAN loss or gradient became non-finite at step {done - 1}; stopped and "
               "returned the parameters of the step before")
        if on_divergence == "raise":
            err = training.DivergenceError(msg)
            err.params, err.history = out, history
            raise err
        warnings.warn(msg, training.DivergenceWarning, stacklevel=2)
    return out, history


def _history(before, pieces, done, stopped, gan, k_disc, txs) -> dict:
    """The per-step records (those before a resume first) and the run's summary."""
    recs = np.concatenate(pieces, axis=1) if pieces else np.zeros((len(RECORDS), 0))
    history = {name: np.concatenate([np.asarray(before.get(name, ()), recs.dtype), recs[i]])
               for i, name in enumerate(RECORDS)}
    history.update(steps_run=done, stopped=stopped, loss=gan.loss, k_disc=int(k_disc),
                   learning_rate={"generator": txs[0][1], "discriminator": txs[1][1]})
    return history


# --- resuming: what must match, and the optimizers' states put back -------------------------------
def _settings(optimizers, txs, batch_size, k_disc, key) -> dict:
    """What a resumed run must share with the checkpoint (JSON): each player's
    `jaxnet.long_runs.settings` (optimizer, learning rate, batch size, key) and k_disc."""
    each = {role: long_runs.settings(
        optimizer=o if isinstance(o, str) else "optax", learning_rate=lr,
        batch_size=batch_size, clip_norm=None, key=key)
        for role, o, (_, lr) in zip(("generator", "discriminator"), optimizers, txs)}
    return {**each, "k_disc": int(k_disc)}


def _resumed(resume, gan, settings, steps, templates, dtype):
    """`(params, [opt_g, opt_d], step, per-step records)` from a resumable checkpoint."""
    ck = resume if isinstance(resume, GANCheckpoint) else load_checkpoint(resume)
    where = "the checkpoint" if isinstance(resume, GANCheckpoint) else str(resume)
    if ck.step is None or ck.opt_state is None:
        raise ValueError(f"{where} holds no optimizer state and step: save it with "
                         "gan.save(..., opt_state=history['opt_state'], step=...) or train "
                         "with checkpoint=PATH")
    if ck.gan != gan:
        raise ValueError(f"{where} holds another GAN ({ck.gan}) than the one given ({gan})")
    saved = ck.metadata.get("settings")
    if saved is not None:
        for role in ("generator", "discriminator"):
            long_runs.check_settings(saved[role], settings[role], f"{where} ({role})")
            if saved[role]["key"] != settings[role]["key"]:
                raise ValueError(f"cannot resume from {where}: key differs (the batches and "
                                 "noise of every step come from it)")
        if saved["k_disc"] != settings["k_disc"]:
            raise ValueError(f"cannot resume from {where}: k_disc differs ({saved['k_disc']} "
                             f"there, {settings['k_disc']} now)")
    if ck.step > steps:
        raise ValueError(f"{where} is at step {ck.step}, past steps={steps} (steps is the "
                         "run's total)")
    if jax.tree.leaves(ck.params)[0].dtype != dtype:
        raise ValueError(f"{where} holds {jax.tree.leaves(ck.params)[0].dtype} parameters, "
                         f"the parameters given are {dtype}")
    opts = [long_runs.restore_opt_state(template, ck.opt_state[role], f"{where} ({role})")
            for role, template in zip(("generator", "discriminator"), templates)]
    history = ck.history or {}
    before = {name: np.asarray(history[name])[:ck.step] for name in RECORDS if name in history}
    return ck.params, opts, int(ck.step), before


# --- checkpoints: both networks in one atomic file ---------------------------------------------------
FORMAT = "jaxnet.gan"
FORMAT_VERSION = 1


class GANCheckpoint(NamedTuple):
    """What `load_checkpoint` returns; `step` and `opt_state` are None unless saved."""

    gan: GAN
    params: dict
    history: dict | None
    metadata: dict

    @property
    def step(self) -> int | None:
        """The game step the checkpoint was written at (resumable checkpoints)."""
        return self.metadata.get("step")

    @property
    def opt_state(self) -> dict | None:
        """``{"generator": [leaves], "discriminator": [leaves]}``: each optimizer state's
        arrays in `jax.tree.leaves` order (`train(resume=...)` puts them back into the
        optimizer's own structure)."""
        return self.metadata.get("opt_state_arrays")


def save(path, gan: GAN, params, *, history: dict | None = None, opt_state=None,
         step: int | None = None) -> Path:
    """Write both networks, their parameters (and `history`) to exactly `path`, atomically
    (one `.npz`: arrays ``generator.W1``, ``discriminator.p1.W``, ... and JSON metadata).

    With `opt_state` (``{"generator": state, "discriminator": state}``, e.g.
    ``history["opt_state"]`` of `train`) and `step`, `train(resume=path)` continues the game
    from there (it then checks the optimizers' state shapes only: `train(checkpoint=...)`
    also records the settings a resume must share)."""
    return _write(path, gan, params, history, opt_state, step, None)


def _write(path, gan, params, history, opt_state, step, settings) -> Path:
    if not isinstance(gan, GAN):
        raise TypeError(f"save needs a jaxnet GAN, got {type(gan).__name__}")
    gan._check_params(params)
    if (opt_state is None) != (step is None):
        raise ValueError("pass opt_state and step together (both are needed to resume)")
    if step is not None and not training._is_count(step, 0):
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    path, arrays, meta = Path(path), {}, {}
    for role in ("generator", "discriminator"):
        net = getattr(gan, role)
        enc, shapes, dtype = ckpt._encode_params(net, params[role])
        arrays.update({f"{role}.{k}": a for k, a in enc.items()})
        meta[role] = {"architecture": ckpt._architecture(net), "shapes": shapes, "dtype": dtype}
    if meta["generator"]["dtype"] != meta["discriminator"]["dtype"]:
        raise ValueError("the generator's and the discriminator's parameters differ in dtype")
    opt_meta = None
    if opt_state is not None:
        if not isinstance(opt_state, dict) or set(opt_state) != {"generator", "discriminator"}:
            raise ValueError("opt_state must be a dict with keys 'generator' and "
                             f"'discriminator', got {opt_state!r:.80}")
        opt_meta = {}
        for role in ("generator", "discriminator"):
            leaves = long_runs.opt_state_leaves(opt_state[role])
            arrays.update({f"opt.{role}.{i}": a for i, a in enumerate(leaves)})
            opt_meta[role] = len(leaves)
    if history is not None:  # train's: its states are stored above; per-player dicts flat
        flat = {}
        for k, v in history.items():
            if k in ("opt_state", "snapshots"):
                continue
            if isinstance(v, dict):
                flat.update({f"{k}.{role}": x for role, x in v.items()})
            else:
                flat[k] = v
        history = flat
    history_arrays, history_meta = ckpt._encode_history(history)
    from . import __version__

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "jaxnet_version": __version__,
            "loss": gan.loss, "dtype": meta["generator"]["dtype"], "history": history_meta,
            **meta}
    if opt_meta is not None:
        meta.update(step=int(step), opt_state=opt_meta, settings=settings)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt._write_atomic(path, {**arrays, **history_arrays, ckpt.METADATA_KEY: blob})
    return path


def load(path):
    """`(gan, params)` from a file written by `save` (see `load_checkpoint`)."""
    return load_checkpoint(path)[:2]


def load_checkpoint(path) -> GANCheckpoint:
    """Read a GAN checkpoint; `CheckpointError` for anything that is not an intact one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no GAN checkpoint at this path", str(path))
    arrays = ckpt._read_arrays(path)
    if ckpt.METADATA_KEY not in arrays:
        raise ckpt.CheckpointError(f"{path} is not a jaxnet GAN checkpoint (no metadata)")
    try:
        meta = json.loads(arrays[ckpt.METADATA_KEY].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ckpt.CheckpointError(f"{path}: unreadable metadata ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        hint = " (a single network: use jaxnet.load)" \
            if isinstance(meta, dict) and meta.get("format") == ckpt.FORMAT else ""
        raise ckpt.CheckpointError(f"{path} is not a jaxnet GAN checkpoint{hint}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ckpt.CheckpointError(f"{path}: unsupported GAN checkpoint version "
                                   f"{meta.get('format_version')!r}")
    nets, params = {}, {}
    for role in ("generator", "discriminator"):
        sub = {**meta[role], "dtype": meta["dtype"]}
        nets[role] = ckpt._rebuild_net(path, sub)
        prefix = f"{role}."
        mine = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
        params[role] = ckpt._rebuild_params(path, nets[role], sub, mine)
    try:
        gan = GAN(nets["generator"], nets["discriminator"], loss=meta["loss"])
    except (KeyError, ValueError) as err:
        raise ckpt.CheckpointError(f"{path}: invalid GAN in metadata ({err})") from err
    if meta.get("opt_state") is not None:
        try:
            meta["opt_state_arrays"] = {role: [arrays[f"opt.{role}.{i}"] for i in range(n)]
                                        for role, n in meta["opt_state"].items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise ckpt.CheckpointError(f"{path}: optimizer state missing or malformed "
                                       f"({err!r})") from err
    return GANCheckpoint(gan, params, ckpt._rebuild_history(path, meta, arrays), meta)


__all__ = ["GAN", "GANCheckpoint", "LOSSES", "discriminator_loss", "discriminator_loss_grad",
           "generator_loss", "generator_loss_grad", "minimax_generator_loss",
           "minimax_generator_loss_grad", "ls_discriminator_loss", "ls_discriminator_loss_grad",
           "ls_generator_loss", "ls_generator_loss_grad", "train", "save", "load",
           "load_checkpoint"]
