"""Data for the document's examples: small synthetic problems and scikit-learn's bundled data sets.

Every array is in the document's column layout: `X` is `(n_x, m)`, `Y` is `(n_y, m)`. Binary
targets are `(1, m)` of 0/1, multi-class targets are one-hot `(n_classes, m)`, regression targets
are `(1, m)`. Randomness comes only from the keyword-only `key`. Nothing is downloaded: the real
data sets are the ones that ship inside scikit-learn (an optional dependency, `jaxnet[data]`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

DATASETS = ("digits", "breast_cancer", "iris", "wine", "diabetes")
# name -> (scikit-learn loader, task)
_SOURCES = {
    "digits": ("load_digits", "multiclass"),
    "breast_cancer": ("load_breast_cancer", "binary"),
    "iris": ("load_iris", "multiclass"),
    "wine": ("load_wine", "multiclass"),
    "diabetes": ("load_diabetes", "regression"),
}


def names() -> tuple[str, ...]:
    """Return the names `load` accepts."""
    return DATASETS


def _dtype(dtype):
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype such as jnp.float32, got {dt}")
    if dt.itemsize == 8 and not jax.config.jax_enable_x64:  # JAX would truncate it silently
        raise ValueError(f"dtype={dt} needs 64-bit JAX: call this in `with jax.enable_x64(True):`")
    return dt


def _int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {name}={value!r}")
    return int(value)


def _fraction(test_size):
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1), got test_size={test_size!r}")


def _nonneg(name, value):
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {name}={value!r}")


def _key(key, fn):
    if key is None:
        raise ValueError(f"{fn} needs key=jax.random.key(...), got key=None")


def one_hot(labels, n_classes, dtype=jnp.float32):
    """One-hot encode integer labels as columns.

    Arguments:
        labels: integer class labels, shape `(m,)`, values in `0 … n_classes-1`.
        n_classes: number of classes (rows of the result).
        dtype: floating dtype of the result.

    Returns:
        `Y` of shape `(n_classes, m)`; column `i` has a single 1 in row `labels[i]`.
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape (m,), got {labels.dtype}{labels.shape}")
    _int("n_classes", n_classes, 1)
    if not isinstance(labels, jax.core.Tracer) and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"labels must lie in 0 … {n_classes - 1}, got range {lo} … {hi}")
    return _one_hot(labels, int(n_classes), _dtype(dtype))


# The helpers below run under jit: one compilation per shape instead of one per operation.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _one_hot(labels, n_classes, dt):
    return (labels[None, :] == jnp.arange(n_classes)[:, None]).astype(dt)


def train_test_split(X, Y, *, key, test_size=0.2):
    """Split the columns of `X` and `Y` with one random permutation drawn from `key`.

    Arguments:
        X: inputs `(n_x, m)`.
        Y: targets `(n_y, m)` (same `m`).
        key: a `jax.random.key`; the same key gives the same split.
        test_size: fraction of the `m` columns put in the test part, in `(0, 1)`; the test part
            gets `ceil(test_size * m)` columns and the training part at least one.

    Returns:
        `(X_train, Y_train, X_test, Y_test)` of shapes `(n_x, m_train)`, `(n_y, m_train)`,
        `(n_x, m_test)`, `(n_y, m_test)`, both parts in shuffled order.
    """
    _key(key, "train_test_split")
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X and Y must be (n_x, m) and (n_y, m) with the same m, got {X.shape} and {Y.shape}"
        )
    _fraction(test_size)
    m = X.shape[1]
    m_test = math.ceil(test_size * m)
    if m_test >= m:
        raise ValueError(f"test_size={test_size} leaves no training column out of m={m}")
    return _split(key, X, Y, m_test)


@functools.partial(jax.jit, static_argnums=3)
def _split(key, X, Y, m_test):
    perm = jax.random.permutation(key, X.shape[1])
    test, train = perm[:m_test], perm[m_test:]
    return X[:, train], Y[:, train], X[:, test], Y[:, test]


@jax.jit
def standardize(X_train, X_test):
    """Scale each feature (row) to zero mean and unit variance, fitted on `X_train` only.

    A feature that is (numerically) constant on the training part, like digits' blank border
    pixels, is divided by 1 instead of its zero std, so it comes out as 0 and never as NaN.

    Arguments:
        X_train: training inputs `(n_x, m_train)`; the statistics come from these alone.
        X_test: test inputs `(n_x, m_test)`, scaled with the training statistics.

    Returns:
        `(X_train_s, X_test_s, mean, std)`; `mean` and `std` have shape `(n_x, 1)` and `std`
        holds the divisor actually used (1 for constant features).
    """
    X_train, X_test = jnp.asarray(X_train), jnp.asarray(X_test)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[0] != X_test.shape[0]:
        raise ValueError(f"X_train, X_test must be (n_x, m), got {X_train.shape}, {X_test.shape}")
    mean = X_train.mean(axis=1, keepdims=True)
    std = X_train.std(axis=1, keepdims=True)
    tiny = jnp.finfo(std.dtype).eps * (1 + jnp.abs(mean))
    std = jnp.where(std > tiny, std, jnp.ones_like(std))
    return (X_train - mean) / std, (X_test - mean) / std, mean, std


def linear_regression(*, key, m, w=(2.0, -3.0), b=0.5, noise=0.1, dtype=jnp.float32):
    """A noisy linear target, the perceptron's regression example.

    The true parameters are the arguments `w` and `b`: `Y = w·X + b + noise·ε`, `ε ~ N(0, 1)`.

    Arguments:
        key: a `jax.random.key`.
        m: number of examples.
        w: true weights, length `n_x`.
        b: true bias.
        noise: standard deviation of the additive Gaussian noise.

    Returns:
        `(X, Y)` with `X ~ N(0, 1)` of shape `(n_x, m)` and `Y` of shape `(1, m)`.
    """
    _key(key, "linear_regression")
    m, dt = _int("m", m, 1), _dtype(dtype)
    _nonneg("noise", noise)
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"w must be a non-empty 1-D sequence of weights, got shape {w.shape}")
    kx, ke = jax.random.split(key)
    X = jax.random.normal(kx, (w.size, m), dt)
    Y = jnp.asarray(w[None, :], dt) @ X + b + noise * jax.random.normal(ke, (1, m), dt)
    return X, Y.astype(dt)


def blobs(*, key, m, n_x=2, separation=3.0, dtype=jnp.float32):
    """Two Gaussian clusters that a hyperplane separates exactly.

    The centres sit at `±(separation/2)·u`, `u = (1, …, 1)/√n_x`. Across `u` the spread is
    `N(0, 1)`; along `u` it is a normal truncated so that class 1 has `u·x ≥ separation/4` and
    class 0 has `u·x ≤ -separation/4`: the plane `u·x = 0` separates them with that margin.

    Arguments:
        key: a `jax.random.key`.
        m: number of examples (`≥ 2`); `m // 2` of class 1, the rest class 0, in random order.
        n_x: number of features.
        separation: distance between the two centres, `> 0`.

    Returns:
        `(X, Y)` of shapes `(n_x, m)` and `(1, m)` with `Y` in `{0, 1}`.
    """
    _key(key, "blobs")
    m, dt = _int("m", m, 2), _dtype(dtype)
    _int("n_x", n_x, 1)
    if not separation > 0:
        raise ValueError(f"separation must be > 0, got separation={separation!r}")
    kl, kn, ka = jax.random.split(key, 3)
    y = jax.random.permutation(kl, jnp.arange(m) < m // 2).astype(dt)[None, :]
    sign = 2 * y - 1
    u = jnp.full((n_x, 1), 1 / math.sqrt(n_x), dt)
    E = jax.random.normal(kn, (n_x, m), dt)
    E = E - u @ (u.T @ E)  # keep only the part across u
    along = jax.random.truncated_normal(ka, -separation / 4, jnp.inf, (1, m), dt)
    X = E + u * (sign * (separation / 2 + along))
    return X, y


def xor(*, key=None, m=4, noise=0.0, dtype=jnp.float32):
    """The XOR problem, which no single perceptron solves.

    With `m=4` and `noise=0` these are the four corners `(0,0)→0, (0,1)→1, (1,0)→1, (1,1)→0`
    in that order, and no key is needed. Otherwise each column is a corner (all four equally
    often, in random order) plus `noise·N(0, 1)`, which needs `key`.

    Arguments:
        key: a `jax.random.key`, or `None` for the four exact corners.
        m: number of examples, `≥ 4`.
        noise: standard deviation of the Gaussian noise around the corners.

    Returns:
        `(X, Y)` of shapes `(2, m)` and `(1, m)` with `Y` in `{0, 1}`.
    """
    m, dt = _int("m", m, 4), _dtype(dtype)
    _nonneg("noise", noise)
    corners = jnp.array([[0, 0, 1, 1], [0, 1, 0, 1]], dt)
    labels = jnp.array([[0, 1, 1, 0]], dt)
    if m == 4 and noise == 0:
        return corners, labels
    if key is None:
        raise ValueError(f"xor needs key=jax.random.key(...) when m != 4 or noise > 0, got m={m}")
    kc, kn = jax.random.split(key)
    idx = jax.random.permutation(kc, jnp.arange(m) % 4)
    X = corners[:, idx] + noise * jax.random.normal(kn, (2, m), dt)
    return X, labels[:, idx]


def two_moons(*, key, m, noise=0.1, dtype=jnp.float32):
    """Two interleaving half circles, a problem a linear model cannot fit.

    Class 0 lies on `(cos t, sin t)`, class 1 on `(1 - cos t, 0.5 - sin t)`, `t ~ U(0, π)`.

    Arguments:
        key: a `jax.random.key`.
        m: number of examples; the classes alternate before shuffling, so they differ by ≤ 1.
        noise: standard deviation of the Gaussian noise added to each coordinate.

    Returns:
        `(X, Y)` of shapes `(2, m)` and `(1, m)` with `Y` in `{0, 1}`.
    """
    _key(key, "two_moons")
    m, dt = _int("m", m, 1), _dtype(dtype)
    _nonneg("noise", noise)
    kl, kt, kn = jax.random.split(key, 3)
    y = jax.random.permutation(kl, jnp.arange(m) % 2)[None, :]
    t = jax.random.uniform(kt, (1, m), dt, 0, jnp.pi)
    x1 = jnp.where(y == 0, jnp.cos(t), 1 - jnp.cos(t))
    x2 = jnp.where(y == 0, jnp.sin(t), 0.5 - jnp.sin(t))
    X = jnp.concatenate([x1, x2]) + noise * jax.random.normal(kn, (2, m), dt)
    return X, y.astype(dt)


def spirals(*, key, m, n_classes=2, noise=0.2, dtype=jnp.float32):
    """Interleaved spiral arms, one per class.

    A point of class `k` at radius `r ~ U(0, 1)` has angle `3π r + 2π k / n_classes + noise·ε`.

    Arguments:
        key: a `jax.random.key`.
        m: number of examples; the classes are as equal in size as `m` allows.
        n_classes: number of arms, `≥ 2`.
        noise: standard deviation of the Gaussian noise on the angle, in radians.

    Returns:
        `(X, Y)`: `X` of shape `(2, m)`; `Y` of shape `(1, m)` with 0/1 labels when
        `n_classes == 2`, else one-hot of shape `(n_classes, m)`.
    """
    _key(key, "spirals")
    m, dt = _int("m", m, 1), _dtype(dtype)
    _nonneg("noise", noise)
    _int("n_classes", n_classes, 2)
    kl, kr, kn = jax.random.split(key, 3)
    k = jax.random.permutation(kl, jnp.arange(m) % n_classes)
    r = jax.random.uniform(kr, (1, m), dt)
    t = 3 * jnp.pi * r + 2 * jnp.pi * k[None, :] / n_classes
    t = t + noise * jax.random.normal(kn, (1, m), dt)
    X = jnp.concatenate([r * jnp.cos(t), r * jnp.sin(t)])
    Y = k[None, :].astype(dt) if n_classes == 2 else one_hot(k, n_classes, dt)
    return X, Y


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A real data set split into training and test columns.

    `X_*` are `(n_x, m_*)`. `Y_*` are `(1, m_*)` of 0/1 (binary), one-hot `(n_classes, m_*)`
    (multiclass) or `(1, m_*)` targets in their original units (regression). `labels_*` are
    the integer classes `(m_*,)` (None for regression). `mean`/`std` `(n_x, 1)` are the
    standardization fitted on the training part (None when not standardized).
    """

    name: str
    task: str
    X_train: jax.Array
    Y_train: jax.Array
    X_test: jax.Array
    Y_test: jax.Array
    n_classes: int | None
    labels_train: jax.Array | None
    labels_test: jax.Array | None
    feature_names: tuple[str, ...]
    mean: jax.Array | None
    std: jax.Array | None

    def __repr__(self):
        return (
            f"Dataset({self.name!r}, task={self.task!r}, n_classes={self.n_classes}, "
            f"X_train={self.X_train.shape}, X_test={self.X_test.shape}, "
            f"Y_train={self.Y_train.shape}, standardized={self.mean is not None})"
        )


def load(name, *, key, test_size=0.2, standardize=True, dtype=jnp.float32) -> Dataset:
    """Load one of scikit-learn's bundled data sets, split and (optionally) standardized.

    Arguments:
        name: one of `DATASETS`: "digits", "breast_cancer", "iris", "wine", "diabetes".
        key: a `jax.random.key` that seeds the train/test permutation.
        test_size: fraction of the examples held out for testing, in `(0, 1)`.
        standardize: scale features with statistics of the training part only (see
            `standardize`). Targets are never scaled: diabetes keeps its original units, and its
            features are the raw ones (`load_diabetes(scaled=False)`).
        dtype: floating dtype of `X` and `Y`.

    Returns:
        A `Dataset`.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown data set {name!r}; valid names are {', '.join(DATASETS)}")
    _key(key, "load")
    dt = _dtype(dtype)
    _fraction(test_size)
    try:
        from sklearn import datasets
    except ImportError as err:
        raise ImportError(f'load({name!r}) needs scikit-learn: pip install "jaxnet[data]"') from err
    loader, task = _SOURCES[name]
    kwargs = {"scaled": False} if name == "diabetes" else {}
    bunch = getattr(datasets, loader)(**kwargs)
    # Cast on the host: JAX would otherwise have to truncate float64/int64 itself.
    X = np.asarray(bunch.data, dtype=dt).T
    target = np.asarray(bunch.target, dtype=dt if task == "regression" else np.int32)
    feature_names = tuple(str(f) for f in bunch.feature_names)

    X_train, t_train, X_test, t_test = train_test_split(
        jnp.asarray(X), jnp.asarray(target[None, :]), key=key, test_size=test_size
    )
    mean = std = None
    if standardize:
        X_train, X_test, mean, std = _standardize(X_train, X_test)

    if task == "regression":
        n_classes = labels_train = labels_test = None
        Y_train, Y_test = t_train.astype(dt), t_test.astype(dt)
    else:
        n_classes = int(target.max()) + 1
        labels_train, labels_test = t_train[0], t_test[0]
        if task == "binary":
            Y_train, Y_test = t_train.astype(dt), t_test.astype(dt)
        else:
            Y_train = one_hot(labels_train, n_classes, dt)
            Y_test = one_hot(labels_test, n_classes, dt)
    return Dataset(
        name, task, X_train, Y_train, X_test, Y_test, n_classes,
        labels_train, labels_test, feature_names, mean, std,
    )  # fmt: skip


_standardize = standardize  # `load` has a parameter of the same name


# Several processes: each one's own columns -> one global (X, Y) (see jaxnet.distributed).
from .distributed import global_batch as global_batch  # noqa: E402
