"""The perceptron learning algorithm: online updates, one sample at a time.

The document's three steps, literally: (1) initialize `w` and `b` to zeros or small random
numbers; (2) for each training sample compute `y_hat`, the error `y - y_hat` and update

.. math::

    w_j \\leftarrow w_j - \\alpha \\, (-(y - \\hat y) \\, x_j), \\qquad
    b \\leftarrow b - \\alpha \\, (-(y - \\hat y));

(3) repeat until the weights stabilize or a maximum number of epochs is reached. The update has
the same form for regression (`y_hat = w x + b`, ½ squared error), for classification
(`y_hat = σ(w x + b)`, binary cross-entropy) and for Rosenblatt's rule
(`y_hat = 1 if w x + b >= 0 else 0`).

Examples are columns: `X` is `(n_x, m)`, `Y` is `(1, m)`, `w` is `(1, n_x)`, `b` is `(1, 1)`, and
the parameters are `[{"W": w, "b": b}]`, layer 1 of a jaxnet network.
"""

from functools import partial
from operator import index
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RULES = ("linear", "sigmoid", "step")
INITS = ("zeros", "random")


class PerceptronResult(NamedTuple):
    """What `perceptron_learning` returns.

    Attributes:
        params: `[{"W": (1, n_x), "b": (1, 1)}]`, the learned `w` and `b`.
        epochs: the number of epochs run (`int`).
        converged: whether training stopped because the weights stabilized (`bool`).
        history: `{"loss": (epochs,), "max_delta": (epochs,)}`; `loss` after each epoch is the mean
            ½ squared error ("linear"), the mean binary cross-entropy ("sigmoid") or the number
            of misclassified samples ("step"); `max_delta` is the largest `|Δw|`, `|Δb|` over it.
    """

    params: list
    epochs: int
    converged: bool
    history: dict


def _output(z, rule):
    """`y_hat` from `z = w x + b`: identity, sigmoid, or the step `1[z >= 0]`."""
    if rule == "linear":
        return z
    if rule == "sigmoid":
        return jax.nn.sigmoid(z)
    if rule == "step":
        return (z >= 0).astype(z.dtype)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _loss(z, Y, rule):
    """The epoch's loss from `z` `(1, m)`: mean ½(y-ŷ)², mean BCE, or the mistake count."""
    if rule == "linear":
        return jnp.mean(0.5 * (Y - z) ** 2)
    if rule == "sigmoid":
        # -y log σ(z) - (1-y) log(1-σ(z)) with log σ(z) = -softplus(-z), log(1-σ(z)) = -softplus(z):
        # finite when σ(z) saturates, and no cancellation as in softplus(z) - y z.
        return jnp.mean(Y * jax.nn.softplus(-z) + (1 - Y) * jax.nn.softplus(z))
    return jnp.sum(_output(z, rule) != Y).astype(z.dtype)


def _sample_update(params, sample, learning_rate, rule):
    """One online step on one sample `x` `(n_x, 1)`, `y` `(1, 1)`; also returns `y != y_hat`."""
    w, b = params
    x, y = sample
    y_hat = _output(w @ x + b, rule)
    error = y - y_hat
    w = w - learning_rate * (-error * x.T)
    b = b - learning_rate * (-error)
    return (w, b), jnp.any(error != 0)


@partial(jax.jit, static_argnames=("rule", "max_epochs", "shuffle"))
def _train(X, Y, w, b, key, learning_rate, tol, *, rule, max_epochs, shuffle):
    """Epochs of online updates in a `while_loop`; each epoch is a `scan` over the samples."""
    m = X.shape[1]
    nan = jnp.full((max_epochs,), jnp.nan, X.dtype)

    def epoch(state):
        w, b, key, t, _, losses, deltas = state
        if shuffle:
            key, sub = jax.random.split(key)
            order = jax.random.permutation(sub, m)
        else:
            order = jnp.arange(m)
        samples = (X.T[order][:, :, None], Y.T[order][:, :, None])  # (m, n_x, 1), (m, 1, 1)
        step = partial(_sample_update, learning_rate=learning_rate, rule=rule)
        (w_new, b_new), wrong = jax.lax.scan(step, (w, b), samples)
        delta = jnp.maximum(jnp.max(jnp.abs(w_new - w)), jnp.max(jnp.abs(b_new - b)))
        # Rosenblatt's criterion: an epoch without a mistake. Mistakes that cancel out (Δ = 0)
        # do not count as convergence.
        converged = ~jnp.any(wrong) if rule == "step" else delta < tol
        loss = _loss(w_new @ X + b_new, Y, rule)
        return (w_new, b_new, key, t + 1, converged,
                losses.at[t].set(loss), deltas.at[t].set(delta))

    def not_done(state):
        return (state[3] < max_epochs) & ~state[4]

    state = (w, b, key, jnp.int32(0), jnp.bool_(False), nan, nan)
    w, b, _, t, converged, losses, deltas = jax.lax.while_loop(not_done, epoch, state)
    return w, b, t, converged, losses, deltas


def _is_real(v):
    """A real scalar (Python, numpy or a concrete 0-d array), not a bool."""
    return not isinstance(v, bool) and np.ndim(v) == 0 and np.asarray(v).dtype.kind in "iuf"


def _check_options(rule, init, learning_rate, max_epochs, tol, key, shuffle):
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not (_is_real(learning_rate) and np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if not (isinstance(max_epochs, (int, np.integer)) and not isinstance(max_epochs, bool)
            and max_epochs >= 1):
        raise ValueError(f"max_epochs must be an int >= 1, got {max_epochs!r}")
    if not (_is_real(tol) and tol >= 0):  # `tol >= 0` is also False for NaN
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if key is None and (init == "random" or shuffle):
        what = 'init="random"' if init == "random" else "shuffle=True"
        raise ValueError(f"{what} needs a PRNG key: pass key=jax.random.key(...)")


def _check_data(X, Y, rule):
    """Return `X` `(n_x, m)` and `Y` `(1, m)` as float arrays, or raise a ValueError."""
    Xn, Yn = np.asarray(X), np.asarray(Y)
    if Xn.ndim != 2:
        raise ValueError(f"X must be 2-D with shape (n_x, m), got shape {Xn.shape}")
    n_x, m = Xn.shape
    if n_x == 0 or m == 0:
        raise ValueError(f"X must have n_x >= 1 features and m >= 1 examples, got {Xn.shape}")
    if Yn.shape != (1, m):
        raise ValueError(f"Y must have shape (1, m) = (1, {m}) to match X {Xn.shape}, "
                         f"got shape {Yn.shape}")
    for name, A in (("X", Xn), ("Y", Yn)):
        if not np.issubdtype(A.dtype, np.number) and A.dtype != np.bool_:
            raise ValueError(f"{name} must be numeric, got dtype {A.dtype}")
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{name} must be finite, got {np.size(A) - np.isfinite(A).sum()} "
                             "NaN or infinite values")
    if rule in ("sigmoid", "step") and not np.all((Yn == 0) | (Yn == 1)):
        raise ValueError(f'rule={rule!r} needs labels in {{0, 1}}, got {np.unique(Yn)[:10]}')
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    return X, jnp.asarray(Y, dtype=X.dtype)


def perceptron_learning(X, Y, *, rule="sigmoid", learning_rate=0.1, max_epochs=100, tol=1e-6,
                        init="zeros", key=None, shuffle=False):
    """Train one perceptron with the document's per-sample rule, compiled end to end.

    Arguments:
        X: inputs, examples as columns, `(n_x, m)`.
        Y: targets `(1, m)`; labels in `{0, 1}` for "sigmoid" and "step".
        rule: "linear" (`y_hat = w x + b`), "sigmoid" (`y_hat = σ(w x + b)`) or "step"
            (`y_hat = 1 if w x + b >= 0 else 0`).
        learning_rate: `α`, the step size, `> 0`.
        max_epochs: the most passes over the data, `>= 1`.
        tol: converged once the largest `|Δw|`, `|Δb|` over an epoch is `< tol`; for "step",
            once an epoch makes no mistake.
        init: "zeros" or "random" (normal with scale 0.01 for `w` and `b`; needs `key`).
        key: a `jax.random.key`, for `init="random"` and `shuffle=True`.
        shuffle: visit the samples in a new random order each epoch.

    Returns:
        A `PerceptronResult(params, epochs, converged, history)`, history trimmed to `epochs`.
    """
    _check_options(rule, init, learning_rate, max_epochs, tol, key, shuffle)
    X, Y = _check_data(X, Y, rule)
    n_x = X.shape[0]
    init_key, shuffle_key = jax.random.split(key) if key is not None else (None, None)
    if init == "random":
        w_key, b_key = jax.random.split(init_key)
        w = 0.01 * jax.random.normal(w_key, (1, n_x), X.dtype)
        b = 0.01 * jax.random.normal(b_key, (1, 1), X.dtype)
    else:
        w, b = jnp.zeros((1, n_x), X.dtype), jnp.zeros((1, 1), X.dtype)
    w, b, t, converged, losses, deltas = _train(
        X, Y, w, b, shuffle_key if shuffle else None, float(learning_rate), float(tol),
        rule=rule, max_epochs=index(max_epochs), shuffle=shuffle)
    epochs = int(t)
    history = {"loss": losses[:epochs], "max_delta": deltas[:epochs]}
    return PerceptronResult([{"W": w, "b": b}], epochs, bool(converged), history)


def predict_perceptron(params, X, *, rule):
    """The perceptron's output for each column of `X`.

    Arguments:
        params: `[{"W": (1, n_x), "b": (1, 1)}]`, as returned in `PerceptronResult.params`.
        X: inputs `(n_x, m)`.
        rule: "linear" (the value), "sigmoid" (the probability) or "step" (0 or 1).

    Returns:
        `y_hat`, `(1, m)`.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    w, b = params[0]["W"], params[0]["b"]
    X = jnp.asarray(X)
    if X.ndim != 2 or w.shape != (1, X.shape[0]) or b.shape != (1, 1):
        raise ValueError(f"expected X (n_x, m) with W (1, n_x) and b (1, 1), got X {X.shape}, "
                         f"W {w.shape}, b {b.shape}")
    return _output(w @ X + b, rule)
