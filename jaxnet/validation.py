"""Input checks that raise before any computation, with what was expected and what was given.

Shape checks read only static shapes, so under `jit` they run once at trace time and cost
nothing afterwards.  Value checks (finite values, label ranges) need concrete arrays; they are
skipped for tracers, i.e. inside a user's own `jit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def concrete(x):
    """`x` as a numpy array, or None when `x` is a tracer (values unknown at trace time)."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) \
            and not x.is_fully_addressable and not x.is_fully_replicated:
        return _local_columns(x)  # spans several processes: check this process's columns
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _local_columns(x):
    """This process's columns of an array sharded over its last axis only (each process checks
    its own part), or None for any other layout."""
    shards = {}
    for s in x.addressable_shards:
        idx = s.index
        if any(i != slice(None) and (i.start, i.stop) != (0, n)
               for i, n in zip(idx[:-1], x.shape[:-1])):
            return None
        shards.setdefault(idx[-1].indices(x.shape[-1])[:2], s.data)
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)], axis=-1)


def check_sizes(sizes) -> tuple[int, ...]:
    """`sizes` as a tuple of positive Python ints, at least two of them (n_x and n_y)."""
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(
            f"sizes must be a sequence of layer widths like (n_x, 16, n_y), got {sizes!r}"
        ) from None
    if len(sizes) < 2:
        raise ValueError(
            f"sizes needs at least 2 entries (n_x and n_y), got {len(sizes)}: {sizes!r}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"every layer width must be an int, got {s!r} in sizes={sizes!r}")
        if s <= 0:
            raise ValueError(f"every layer width must be positive, got {s} in sizes={sizes!r}")
    return tuple(int(s) for s in sizes)


def check_params(net, params) -> None:
    """Raise unless `params` is a list of L dicts {"W": (n_l, n_{l-1}), "b": (n_l, 1)}."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(
            f"params must be a list of {{'W', 'b'}} dicts (one per layer), got "
            f"{type(params).__name__}")
    if len(params) != net.L:
        raise ValueError(
            f"params has {len(params)} layers but the network {net.sizes} has {net.L}")
    for l, layer in enumerate(params, start=1):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"layer {l} of params must be a dict with keys 'W' and 'b', got {got}")
        for name in ("W", "b"):
            leaf = layer[name]
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                raise TypeError(f"{name}^[{l}] must be an array (jax or numpy), got "
                                f"{type(leaf).__name__}")
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"{name}^[{l}] must hold floating values, got dtype {leaf.dtype}")
            values = concrete(leaf)
            if values is not None and not np.all(np.isfinite(values)):
                raise ValueError(f"{name}^[{l}] holds {int(np.size(values) - np.isfinite(values).sum())}"
                                 " non-finite values")
        want_W = (net.sizes[l], net.sizes[l - 1])
        want_b = (net.sizes[l], 1)
        if jnp.shape(layer["W"]) != want_W:
            raise ValueError(
                f"W^[{l}] must have shape {want_W} for sizes {net.sizes}, got "
                f"{jnp.shape(layer['W'])}")
        if jnp.shape(layer["b"]) != want_b:
            raise ValueError(
                f"b^[{l}] must have shape {want_b} for sizes {net.sizes}, got "
                f"{jnp.shape(layer['b'])}")


def check_X(net, X):
    """`X` as an array of shape `(n_x, m)` with m >= 1 and finite values."""
    X = jnp.asarray(X)
    n_x = net.sizes[0]
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D with shape (n_x, m) = ({n_x}, m) (examples are columns), got "
            f"shape {X.shape}")
    if X.shape[0] != n_x:
        hint = " (transposed? examples are columns)" if X.shape[1] == n_x else ""
        raise ValueError(f"X must have {n_x} rows (n_x = sizes[0]), got shape {X.shape}{hint}")
    if X.shape[1] == 0:
        raise ValueError(f"X has no examples (m = 0): shape {X.shape}")
    x = concrete(X)
    if x is not None and np.issubdtype(x.dtype, np.number) and not np.all(np.isfinite(x)):
        raise ValueError(f"X holds {int(np.size(x) - np.isfinite(x).sum())} non-finite values")
    return X


def binary_row(Y, out_shape, loss, m=None):
    """0/1 labels of shape `(m,)` for a single binary-cross-entropy unit, as the `(1, m)` row
    its output `Ŷ` has (the shape scikit-learn gives labels in, as a softmax output takes
    integer ids `(m,)`).  Every other `Y` (and, with `m` given, labels of another length) is
    returned as it is, for the shape check to judge."""
    if loss == "binary_cross_entropy" and tuple(out_shape) == (1,) and jnp.ndim(Y) == 1 \
            and (m is None or jnp.shape(Y)[0] == m):
        return jnp.reshape(Y, (1, -1))
    return Y


def check_Y(net, Y, m: int):
    """`Y` as an array of shape `(n_y, m)` whose values suit the network's loss; for a single
    sigmoid (binary cross-entropy) unit, 0/1 labels of shape `(m,)` are taken as `(1, m)`."""
    Y = binary_row(jnp.asarray(Y), (net.sizes[-1],), net.loss, m)
    want = (net.sizes[-1], m)
    if Y.shape != want:
        extra = f" or 0/1 labels of shape ({m},)" if net.loss == "binary_cross_entropy" \
            and want[0] == 1 else ""
        raise ValueError(f"Y must have shape (n_y, m) = {want}{extra}, got {Y.shape}")
    y = concrete(Y)
    if y is None:
        return Y
    if not np.all(np.isfinite(y)):
        raise ValueError(f"Y holds {int(np.size(y) - np.isfinite(y).sum())} non-finite values")
    if net.loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"binary cross-entropy needs labels in [0, 1], got values in [{y.min()}, {y.max()}]")
    if net.loss == "categorical_cross_entropy":
        sums = y.sum(axis=0)
        if y.min() < 0 or not np.allclose(sums, 1, atol=1e-4):
            bad = int(np.argmax(np.abs(sums - 1)))
            raise ValueError(
                "categorical cross-entropy needs each column of Y to be a distribution "
                f"(non-negative, summing to 1, e.g. one-hot); column {bad} sums to {sums[bad]} "
                f"and the smallest entry is {y.min()}")
    return Y
