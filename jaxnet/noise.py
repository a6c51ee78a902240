"""Corrupted copies of data for a denoising autoencoder: (noisy input, clean target) pairs.

The document: autoencoders are trained "to ignore signal noise and capture essential data
features".  A denoising autoencoder shows it: its input is a corrupted `x̃`, its target the clean
`x`, and `J = mean ½‖x − f(x̃)‖²`, so it must learn what the data look like to undo the noise.

    gaussian:  x̃ = x + level · ε,   ε ~ N(0, 1) per entry   (then clipped to `clip` if given)
    masking:   x̃ = x ⊙ b,           b ~ Bernoulli(1 − level) per entry (each entry zeroed
                                     with probability `level`; the kept ones are not rescaled)

Train with ``jn.fit(net, params, X_noisy, X_clean, ...)`` on any network whose output shape is
its input shape (an `MLP`, or a dense or convolutional `Sequential`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("gaussian", "masking")


def noisy_pairs(X, *, key, kind: str = "gaussian", level: float, clip=None, copies: int = 1):
    """`(X_noisy, X_clean)`: `copies` corrupted versions of every example of `X`.

    Arguments:
        X: clean data, examples on the last axis: `(n, m)`, `(C, H, W, m)`, ... (floating).
        key: a `jax.random.key`; the same key gives the same noise.
        kind: ``"gaussian"`` (additive `N(0, level²)` noise) or ``"masking"`` (each entry
            zeroed with probability `level`).
        level: the noise's standard deviation (gaussian, ≥ 0) or the drop probability
            (masking, in [0, 1]).
        clip: None (default: Gaussian noise is not clipped, so the noisy data leave the clean
            data's range) or `(lo, hi)` to clip the noisy values, e.g. ``(0, 1)`` for pixels.
        copies: corrupted versions of each example (a larger training set from one `X`).

    Returns:
        `X_noisy` and `X_clean`, both of shape `(..., copies·m)`: copy `c` of example `i` is
        column `c·m + i`, and `X_clean` is `X` repeated `copies` times along the last axis.
    """
    if not (hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key must be a typed PRNG key from jax.random.key(seed), got {key!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid are {list(KINDS)}")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)) \
            or not math.isfinite(level) or level < 0:
        raise ValueError(f"level must be a finite number >= 0, got {level!r}")
    if kind == "masking" and level > 1:
        raise ValueError(f"masking level is a probability in [0, 1], got {level!r}")
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies must be an int >= 1, got {copies!r}")
    if clip is not None:
        if not (isinstance(clip, (tuple, list)) and len(clip) == 2 and clip[0] < clip[1]):
            raise ValueError(f"clip must be None or a pair (lo, hi) with lo < hi, got {clip!r}")
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise ValueError(f"X must hold floating values, got dtype {X.dtype}")
    if X.ndim < 2 or X.shape[-1] == 0:
        raise ValueError(f"X must have shape (..., m) with examples on the last axis and m >= 1, "
                         f"got {X.shape}")
    clean = jnp.concatenate([X] * int(copies), axis=-1) if copies > 1 else X
    if kind == "gaussian":
        noisy = clean + jnp.asarray(level, X.dtype) * jax.random.normal(key, clean.shape, X.dtype)
    else:
        keep = jax.random.bernoulli(key, 1.0 - float(level), clean.shape)
        noisy = jnp.where(keep, clean, jnp.zeros((), X.dtype))
    if clip is not None:
        noisy = jnp.clip(noisy, clip[0], clip[1])
    return noisy, clean
