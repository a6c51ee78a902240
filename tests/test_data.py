import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import data

M = 40  # one m for most generator calls: each new shape costs a compilation
GENERATORS = {
    # name: (function, kwargs, X shape, Y shape)
    "linear_regression": (data.linear_regression, {}, (2, M), (1, M)),
    "linear_regression_3w": (data.linear_regression, {"w": (1.0, 2.0, 3.0)}, (3, M), (1, M)),
    "blobs": (data.blobs, {}, (2, M), (1, M)),
    "blobs_5d": (data.blobs, {"n_x": 5}, (5, M), (1, M)),
    "xor_noisy": (data.xor, {"noise": 0.1}, (2, M), (1, M)),
    "two_moons": (data.two_moons, {}, (2, M), (1, M)),
    "spirals": (data.spirals, {}, (2, M), (1, M)),
    "spirals_4": (data.spirals, {"n_classes": 4}, (2, M), (4, M)),
}
# Expected (n_x, m, n_y, task, n_classes) of each bundled data set.
DATASETS = {
    "digits": (64, 1797, 10, "multiclass", 10),
    "breast_cancer": (30, 569, 1, "binary", 2),
    "iris": (4, 150, 3, "multiclass", 3),
    "wine": (13, 178, 3, "multiclass", 3),
    "diabetes": (10, 442, 1, "regression", None),
}


def _is_separable(X, Y):
    """True when some (w, b) has (2y-1)(w·x + b) >= 1 for every column: a linear program."""
    from scipy.optimize import linprog

    X, s = np.asarray(X, np.float64), 2 * np.asarray(Y, np.float64)[0] - 1
    A = -s[:, None] * np.vstack([X, np.ones(X.shape[1])]).T
    res = linprog(np.zeros(X.shape[0] + 1), A_ub=A, b_ub=-np.ones(X.shape[1]), bounds=(None, None))
    return res.status == 0


# ---------------------------------------------------------------- generators


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_shapes_dtypes_and_reproducibility(name, getkey):
    fn, kwargs, x_shape, y_shape = GENERATORS[name]
    key = getkey()
    X, Y = fn(key=key, m=M, **kwargs)
    assert X.shape == x_shape and Y.shape == y_shape
    assert X.dtype == jnp.float32 and Y.dtype == jnp.float32
    assert np.isfinite(X).all() and np.isfinite(Y).all()
    X2, Y2 = fn(key=key, m=M, **kwargs)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    X3, _ = fn(key=getkey(), m=M, **kwargs)
    assert not np.array_equal(X, X3)


@pytest.mark.parametrize("name", ["spirals_4"])
def test_generator_float64(name, getkey):
    fn, kwargs, x_shape, y_shape = GENERATORS[name]
    with jax.enable_x64(True):
        X, Y = fn(key=getkey(), m=M, dtype=jnp.float64, **kwargs)
    assert X.dtype == jnp.float64 and Y.dtype == jnp.float64
    assert X.shape == x_shape and Y.shape == y_shape


def test_linear_regression_uses_the_given_w_and_b(getkey):
    w, b = (1.5, -0.5, 2.0), -1.0
    X, Y = data.linear_regression(key=getkey(), m=M, w=w, b=b, noise=0.0)
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    np.testing.assert_allclose(Y, np.array([w]) @ X + b, rtol=1e-5, atol=1e-5)
    X, Y = data.linear_regression(key=getkey(), m=M, w=w, b=b, noise=0.01)
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    coef, *_ = np.linalg.lstsq(np.vstack([X, np.ones(M)]).T, Y[0], rcond=None)
    np.testing.assert_allclose(coef, [*w, b], atol=0.01)
    assert np.std(Y - (np.array([w]) @ X + b)) == pytest.approx(0.01, rel=0.35)


@pytest.mark.parametrize("n_x,m,separation", [(2, 1000, 3.0), (2, 1000, 0.2), (5, M, 1.0)])
def test_blobs_are_linearly_separable(n_x, m, separation, getkey):
    X, Y = data.blobs(key=getkey(), m=m, n_x=n_x, separation=separation)
    assert _is_separable(X, Y)
    # The documented margin: u·x >= separation/4 for class 1, <= -separation/4 for class 0.
    proj = np.asarray(X).sum(axis=0) / math.sqrt(n_x)
    y = np.asarray(Y)[0]
    assert proj[y == 1].min() >= separation / 4 - 1e-5
    assert proj[y == 0].max() <= -separation / 4 + 1e-5
    assert set(np.unique(y)) == {0.0, 1.0} and y.sum() == m // 2


def test_separability_check_can_fail():
    X, Y = data.xor()
    assert not _is_separable(X, Y)


def test_xor_corners():
    X, Y = data.xor()
    np.testing.assert_array_equal(X, [[0, 0, 1, 1], [0, 1, 0, 1]])
    np.testing.assert_array_equal(Y, [[0, 1, 1, 0]])
    assert X.dtype == jnp.float32 and Y.dtype == jnp.float32


def test_xor_sampled_around_corners(getkey):
    X, Y = data.xor(key=getkey(), m=M, noise=0.0)
    X, Y = np.asarray(X), np.asarray(Y)
    np.testing.assert_array_equal(Y[0], np.logical_xor(X[0], X[1]))
    corners, counts = np.unique(X.T, axis=0, return_counts=True)
    np.testing.assert_array_equal(corners, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(counts, [M // 4] * 4)
    X, Y = data.xor(key=getkey(), m=M, noise=0.1)
    np.testing.assert_array_equal(np.asarray(Y)[0], np.logical_xor(*(np.asarray(X) > 0.5)))


def test_two_moons_lie_on_their_circles(getkey):
    X, Y = data.two_moons(key=getkey(), m=M, noise=0.0)
    X, y = np.asarray(X), np.asarray(Y)[0]
    assert y.sum() == M // 2
    np.testing.assert_allclose(np.hypot(X[0], X[1])[y == 0], 1, atol=1e-5)
    np.testing.assert_allclose(np.hypot(X[0] - 1, X[1] - 0.5)[y == 1], 1, atol=1e-5)
    assert (X[1][y == 0] >= -1e-6).all() and (X[1][y == 1] <= 0.5 + 1e-6).all()


def test_spirals_labels(getkey):
    _, Y = data.spirals(key=getkey(), m=M)
    Y = np.asarray(Y)
    assert set(np.unique(Y)) == {0.0, 1.0} and Y.sum() == M // 2
    X, Y = data.spirals(key=getkey(), m=M, n_classes=4, noise=0.0)
    X, Y = np.asarray(X), np.asarray(Y)
    np.testing.assert_array_equal(Y.sum(axis=0), np.ones(M))
    np.testing.assert_array_equal(Y.sum(axis=1), [M // 4] * 4)
    r = np.hypot(X[0], X[1])
    assert r.max() <= 1 + 1e-6
    # Without noise, the angle is 3πr + 2πk/4 (mod 2π) exactly.
    angle = 3 * np.pi * r + 2 * np.pi * Y.argmax(axis=0) / 4
    np.testing.assert_allclose(np.cos(angle) * r, X[0], atol=1e-5)
    np.testing.assert_allclose(np.sin(angle) * r, X[1], atol=1e-5)


# ---------------------------------------------------------------- helpers


def test_one_hot():
    labels = jnp.array([2, 0, 1, 2])
    Y = data.one_hot(labels, 3)
    assert Y.shape == (3, 4) and Y.dtype == jnp.float32
    np.testing.assert_array_equal(Y.sum(axis=0), np.ones(4))
    np.testing.assert_array_equal(Y.argmax(axis=0), labels)
    np.testing.assert_array_equal(jax.jit(data.one_hot, static_argnums=1)(labels, 3), Y)


def test_train_test_split_partitions_the_columns(getkey):
    m = 50
    X = jnp.arange(3 * m, dtype=jnp.float32).reshape(3, m)
    Y = X[:1] * 2
    key = getkey()
    X_tr, Y_tr, X_te, Y_te = data.train_test_split(X, Y, key=key, test_size=0.25)
    assert X_tr.shape == (3, 37) and X_te.shape == (3, 13) and Y_tr.shape == (1, 37)
    ids = np.concatenate([np.asarray(X_tr[0]), np.asarray(X_te[0])])
    np.testing.assert_array_equal(np.sort(ids), np.arange(m))  # disjoint and complete
    np.testing.assert_array_equal(Y_tr, X_tr[:1] * 2)  # columns stay paired
    np.testing.assert_array_equal(Y_te, X_te[:1] * 2)
    again = data.train_test_split(X, Y, key=key, test_size=0.25)
    np.testing.assert_array_equal(again[0], X_tr)
    other = data.train_test_split(X, Y, key=getkey(), test_size=0.25)
    assert not np.array_equal(other[2], X_te)


def test_standardize_fits_on_train_only(getkey):
    rng = np.random.default_rng(0)
    X_train = rng.normal(7, 4, (3, 200)).astype(np.float32)
    X_test = rng.normal(7, 4, (3, 50)).astype(np.float32)
    X_train[1] = 5.0  # a constant feature
    Xs_tr, Xs_te, mean, std = data.standardize(X_train, X_test)
    assert mean.shape == (3, 1) and std.shape == (3, 1)
    np.testing.assert_allclose(Xs_tr.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(Xs_tr.std(axis=1), [1, 0, 1], atol=1e-5)
    assert float(std[1, 0]) == 1.0 and np.isfinite(Xs_te).all()
    np.testing.assert_allclose(Xs_te, (X_test - mean) / std, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(Xs_te).mean(axis=1)).max() > 1e-3


# ---------------------------------------------------------------- real data sets


@pytest.mark.parametrize("name", DATASETS)
def test_load_shapes_dtypes_and_targets(name, getkey):
    n_x, m, n_y, task, n_classes = DATASETS[name]
    ds = data.load(name, key=getkey())
    m_test = math.ceil(0.2 * m)
    assert ds.name == name and ds.task == task and ds.n_classes == n_classes
    assert ds.X_train.shape == (n_x, m - m_test) and ds.X_test.shape == (n_x, m_test)
    assert ds.Y_train.shape == (n_y, m - m_test) and ds.Y_test.shape == (n_y, m_test)
    assert ds.X_train.dtype == ds.Y_train.dtype == ds.X_test.dtype == jnp.float32
    assert len(ds.feature_names) == n_x and ds.mean.shape == ds.std.shape == (n_x, 1)
    X_train, X_test = np.asarray(ds.X_train), np.asarray(ds.X_test)
    assert np.isfinite(X_train).all() and np.isfinite(X_test).all()
    np.testing.assert_allclose(X_train.mean(axis=1), 0, atol=1e-5)
    assert np.abs(X_test.mean(axis=1)).max() > 1e-3  # fitted on the training part only
    np.testing.assert_allclose(X_train.std(axis=1)[np.asarray(ds.std)[:, 0] != 1], 1, rtol=1e-4)
    if task == "regression":
        assert ds.labels_train is None and ds.labels_test is None
        Y = np.concatenate([ds.Y_train[0], ds.Y_test[0]])
        assert Y.min() == 25 and Y.max() == 346  # original units, untouched
        return
    for Y, labels in ((ds.Y_train, ds.labels_train), (ds.Y_test, ds.labels_test)):
        Y, labels = np.asarray(Y), np.asarray(labels)
        assert labels.shape == (Y.shape[1],) and np.issubdtype(labels.dtype, np.integer)
        if task == "binary":
            np.testing.assert_array_equal(Y[0], labels)
        else:
            np.testing.assert_array_equal(Y.sum(axis=0), np.ones(Y.shape[1]))
            np.testing.assert_array_equal(Y.argmax(axis=0), labels)
    all_labels = np.concatenate([ds.labels_train, ds.labels_test])
    np.testing.assert_array_equal(np.unique(all_labels), np.arange(n_classes))


def test_load_split_is_seeded_by_key(getkey):
    key = getkey()
    a, b = data.load("iris", key=key), data.load("iris", key=key)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.labels_test, b.labels_test)
    c = data.load("iris", key=getkey())
    assert not np.array_equal(a.X_test, c.X_test)


def test_load_without_standardize_keeps_raw_features(getkey):
    from sklearn.datasets import load_wine

    ds = data.load("wine", key=getkey(), standardize=False, test_size=0.5)
    assert ds.mean is None and ds.std is None and ds.X_test.shape == (13, 89)
    raw = {tuple(row) for row in load_wine().data.astype(np.float32)}
    assert all(tuple(col) in raw for col in np.asarray(ds.X_train).T)


def test_digits_constant_pixels_do_not_give_nan(getkey):
    ds = data.load("digits", key=getkey())
    constant = np.asarray(ds.X_train).std(axis=1) == 0
    assert constant.any()  # digits' border pixels are blank
    np.testing.assert_array_equal(np.asarray(ds.std)[constant, 0], 1.0)
    assert np.isfinite(ds.X_test).all()


def test_load_float64(getkey):
    with jax.enable_x64(True):
        ds = data.load("breast_cancer", key=getkey(), dtype=jnp.float64)
    assert ds.X_train.dtype == ds.Y_test.dtype == ds.mean.dtype == jnp.float64


def test_load_without_sklearn_says_how_to_install(monkeypatch, getkey):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r'pip install "jaxnet\[data\]"'):
        data.load("iris", key=getkey())


def test_names():
    assert data.names() == data.DATASETS == tuple(DATASETS)


# ---------------------------------------------------------------- bad input

KEY = jax.random.key(0)
BAD = {
    "unknown_name": (lambda: data.load("mnist", key=KEY), r"mnist.*digits, breast_cancer"),
    "test_size_0": (lambda: data.load("iris", key=KEY, test_size=0), r"test_size.*\(0, 1\).*0"),
    "test_size_1": (lambda: data.load("iris", key=KEY, test_size=1.0), r"test_size.*1\.0"),
    "load_no_key": (lambda: data.load("iris", key=None), r"key=jax.random.key"),
    "load_int_dtype": (lambda: data.load("iris", key=KEY, dtype=jnp.int32), r"floating.*int32"),
    "float64_no_x64": (lambda: data.blobs(key=KEY, m=4, dtype=jnp.float64), r"enable_x64"),
    "m_0": (lambda: data.two_moons(key=KEY, m=0), r"m must be an integer >= 1.*m=0"),
    "m_float": (lambda: data.spirals(key=KEY, m=10.0), r"m must be an integer.*10\.0"),
    "m_negative": (lambda: data.linear_regression(key=KEY, m=-3), r"m=-3"),
    "blobs_m_1": (lambda: data.blobs(key=KEY, m=1), r"m must be an integer >= 2"),
    "blobs_n_x_0": (lambda: data.blobs(key=KEY, m=4, n_x=0), r"n_x.*n_x=0"),
    "blobs_separation": (lambda: data.blobs(key=KEY, m=4, separation=0), r"separation.*> 0"),
    "n_classes_1": (lambda: data.spirals(key=KEY, m=10, n_classes=1), r"n_classes.*>= 2.*1"),
    "noise_negative": (lambda: data.two_moons(key=KEY, m=10, noise=-1), r"noise.*>= 0.*-1"),
    "w_empty": (lambda: data.linear_regression(key=KEY, m=3, w=()), r"w must be.*non-empty"),
    "xor_needs_key": (lambda: data.xor(m=8), r"xor needs key"),
    "xor_m_3": (lambda: data.xor(m=3), r"m must be an integer >= 4"),
    "generator_no_key": (lambda: data.blobs(key=None, m=4), r"blobs needs key"),
    "one_hot_2d": (lambda: data.one_hot(jnp.zeros((2, 2), int), 3), r"shape \(m,\)"),
    "one_hot_float": (lambda: data.one_hot(jnp.zeros(2), 3), r"integers.*float32"),
    "one_hot_range": (lambda: data.one_hot(jnp.array([0, 3]), 3), r"0 … 2.*0 … 3"),
    "split_mismatch": (
        lambda: data.train_test_split(jnp.zeros((2, 5)), jnp.zeros((1, 4)), key=KEY),
        r"same m.*\(2, 5\).*\(1, 4\)",
    ),
    "split_too_small": (
        lambda: data.train_test_split(jnp.zeros((2, 1)), jnp.zeros((1, 1)), key=KEY),
        r"no training column.*m=1",
    ),
    "standardize_shapes": (
        lambda: data.standardize(jnp.zeros((2, 5)), jnp.zeros((3, 5))),
        r"\(2, 5\).*\(3, 5\)",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_a_helpful_value_error(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        fn()
