"""Conv2D, MaxPool2D, AvgPool2D and Flatten: forward against numpy loops written here, the
hand-written backward against `jax.vjp` (float64, <= 1e-10 relative per leaf) over a hypothesis
range of kernels, strides, paddings and image sizes, the three-way checker on small CNNs
(a ReLU kink, max-pool ties), planted bugs caught with the leaf named, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_close, rel
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

import jaxnet as jn
from jaxnet.layers.conv import AvgPool2D, Conv2D, Flatten, MaxPool2D
from jaxnet.layers.dense import Dense

TOL = 1e-10
# One program per shape is compiled below; the cheaper CPU back end settings cut compile time
# (the programs are tiny: their run time does not matter).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def normal(shape, seed=0):
    """Host-side random numbers: no compilation per shape (jax.random would compile each)."""
    return np.random.default_rng(seed).normal(size=shape)


def init_np(layer, in_shape, seed=0, bias=0.1):
    """`(params, out_shape)`: the shapes `layer.init` gives (traced only), filled with numpy
    normals (`W` scaled by 1/√fan_in, biases by `bias`)."""
    box = {}

    def shapes(key):
        params, box["out"] = layer.init(key, in_shape, jnp.float64)
        return params

    with jax.enable_x64(True):
        spec = jax.eval_shape(shapes, jax.random.key(0))
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=v.shape) * (1 / math.sqrt(math.prod(v.shape[1:])) if k == "W"
                                             else bias) for k, v in spec.items()}
    return params, tuple(box["out"])


# --- numpy references: direct loops over output pixels and examples ----------------------
def np_tf_same(size, k, s):
    """TensorFlow's SAME padding, written from its definition: output ceil(size/s)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def np_conv(X, W, b, stride, pads):
    """`Z[f, y, x, n] = Σ W[f, c, i, j] Xp[c, s·y + i, s·x + j, n] + b[f]`, pixel by pixel."""
    X, W, b = np.asarray(X), np.asarray(W), np.asarray(b).reshape(-1)
    (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
    C, H, Wd, m = X.shape
    F, _, kh, kw = W.shape
    Xp = np.zeros((C, H + pt + pb, Wd + pl + pr, m))
    Xp[:, pt:pt + H, pl:pl + Wd] = X
    Ho, Wo = (Xp.shape[1] - kh) // sh + 1, (Xp.shape[2] - kw) // sw + 1
    Z = np.zeros((F, Ho, Wo, m))
    for n in range(m):
        for f in range(F):
            for y in range(Ho):
                for x in range(Wo):
                    patch = Xp[:, y * sh:y * sh + kh, x * sw:x * sw + kw, n]
                    Z[f, y, x, n] = np.sum(W[f] * patch) + b[f]
    return Z


def _pairs(k, s):
    """`(kh, kw), (sh, sw)` from an int or a pair each."""
    return (k, k) if np.isscalar(k) else tuple(k), (s, s) if np.isscalar(s) else tuple(s)


def np_pool(X, k, s, reduce):
    X = np.asarray(X)
    C, H, W, m = X.shape
    (kh, kw), (sh, sw) = _pairs(k, s)
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((C, Ho, Wo, m))
    for c in range(C):
        for y in range(Ho):
            for x in range(Wo):
                for n in range(m):
                    out[c, y, x, n] = reduce(X[c, y * sh:y * sh + kh, x * sw:x * sw + kw, n])
    return out


def np_maxpool_backward(X, k, s, dY):
    """Each `dY` to the first maximum of its window in row-major order; overlaps add up."""
    X, dY = np.asarray(X), np.asarray(dY)
    dX = np.zeros_like(X)
    C, Ho, Wo, m = dY.shape
    (kh, kw), (sh, sw) = _pairs(k, s)
    for c in range(C):
        for y in range(Ho):
            for x in range(Wo):
                for n in range(m):
                    win = X[c, y * sh:y * sh + kh, x * sw:x * sw + kw, n]
                    i, j = np.unravel_index(np.argmax(win), win.shape)  # argmax: first maximum
                    dX[c, y * sh + i, x * sw + j, n] += dY[c, y, x, n]
    return dX


# --- forward against numpy ---------------------------------------------------------------
@pytest.mark.parametrize("kernel, stride, padding, hw", [
    (3, 1, 1, (6, 7)),
    (2, 2, 0, (7, 6)),
    ((2, 3), (1, 2), "same", (5, 8)),
    (4, 3, "same", (8, 7)),
    (3, 2, "valid", (7, 7)),
    (2, 1, (2, 0), (4, 5)),
], ids=["k3-s1-p1", "k2-s2-p0", "k2x3-s1x2-same", "k4-s3-same", "k3-s2-valid", "k2-p2x0"])
def test_conv_forward_matches_numpy_loops(kernel, stride, padding, hw):
    layer = Conv2D(3, kernel, stride, padding, activation="relu")
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 2, kh, kw)), "b": rng.normal(size=(3, 1, 1, 1))}
    X = rng.normal(size=(2, *hw, 3))
    with jax.enable_x64(True):
        A, cache = run_compiled(layer.forward, params, X)
    if padding == "same":
        pads = (np_tf_same(hw[0], kh, sh), np_tf_same(hw[1], kw, sw))
        assert A.shape[1:3] == (math.ceil(hw[0] / sh), math.ceil(hw[1] / sw))
    else:
        p = 0 if padding == "valid" else padding
        ph, pw = (p, p) if isinstance(p, int) else p
        pads = ((ph, ph), (pw, pw))
    Z = np_conv(X, params["W"], params["b"], (sh, sw), pads)
    assert A.shape == (*init_np(layer, (2, *hw))[1], 3)
    assert rel(cache["Z"], Z) <= 1e-13
    assert rel(A, np.maximum(Z, 0)) <= 1e-13


def test_same_padding_puts_the_odd_row_at_the_bottom_right():
    # A 2x2 kernel that reads only its top-left tap: with the extra zero row/column at the
    # bottom/right, the output is the input itself (TensorFlow/XLA SAME).
    with jax.enable_x64(True):
        layer = Conv2D(1, 2, padding="same")
        W = jnp.zeros((1, 1, 2, 2), jnp.float64).at[0, 0, 0, 0].set(1.0)
        X = jnp.arange(20.0, dtype=jnp.float64).reshape(1, 4, 5, 1)
        A, _ = layer.forward({"W": W, "b": jnp.zeros((1, 1, 1, 1), jnp.float64)}, X)
        np.testing.assert_array_equal(A, X)
        assert layer.pads(4, 5) == ((0, 1), (0, 1))


@pytest.mark.parametrize("k, s, hw", [(2, 2, (6, 7)), (3, 1, (5, 5)), (3, 2, (7, 6)),
                                      (2, 3, (8, 7))])
def test_pools_forward_match_numpy_loops(k, s, hw):
    X = np.random.default_rng(3).normal(size=(2, *hw, 3))
    with jax.enable_x64(True):
        A_max, A_avg = run_compiled(lambda X: (MaxPool2D(k, s).forward({}, X)[0],
                                               AvgPool2D(k, s).forward({}, X)[0]), X)
    assert rel(A_max, np_pool(X, k, s, np.max)) == 0.0
    assert rel(A_avg, np_pool(X, k, s, np.mean)) <= 1e-14
    assert MaxPool2D(k, s).init(None, (2, *hw))[1] == A_max.shape[:3]


def test_pool_stride_defaults_to_size_and_drops_what_does_not_fit():
    X = jnp.arange(2 * 7 * 5 * 1, dtype=jnp.float32).reshape(2, 7, 5, 1)
    A, _ = MaxPool2D(3).forward({}, X)
    assert A.shape == (2, 2, 1, 1)
    np.testing.assert_array_equal(A[..., 0], np_pool(X, 3, 3, np.max)[..., 0])


def test_flatten_is_c_order_per_example_like_torch():
    X = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype(np.float32)
    A, cache = Flatten().forward({}, jnp.asarray(X))
    # PyTorch's flatten(1) of the (m, C, H, W) batch, example by example.
    torch_like = X.transpose(3, 0, 1, 2).reshape(2, -1).T
    np.testing.assert_array_equal(A, torch_like)
    assert A[1 * 20 + 2 * 5 + 3, 1] == X[1, 2, 3, 1]
    dX, grads = Flatten().backward({}, cache, A)
    np.testing.assert_array_equal(dX, X)
    assert grads == {} and Flatten().init(None, (3, 4, 5)) == ({}, (60,))


# --- backward against jax.vjp ------------------------------------------------------------
def _vjp_check(layer, params, X, seed=0):
    """The layer's backward and jax.vjp of its forward, in one compiled call."""
    def both(params, X, dY):
        _, cache = layer.forward(params, X)
        manual = layer.backward(params, cache, dY)
        _, vjp = jax.vjp(lambda p, x: layer.forward(p, x)[0], params, X)
        dP, dX = vjp(dY)
        return manual, (dX, dP)
    A, _ = jax.eval_shape(layer.forward, params, X)
    dY = normal(A.shape, seed)
    manual, auto = run_compiled(both, params, X, dY)
    assert_tree_close(manual, auto)
    return manual


@settings(max_examples=15, deadline=None)
@given(kernel=st.integers(1, 5), stride=st.integers(1, 3),
       padding=st.sampled_from([0, 1, "same", "valid"]),
       H=st.integers(4, 9), W=st.integers(4, 9),
       activation=st.sampled_from(["identity", "tanh", "relu"]))
def test_conv_backward_matches_vjp(kernel, stride, padding, H, W, activation):
    layer = Conv2D(3, kernel, stride, padding, activation=activation)
    assume(padding == "same" or H + 2 * (padding == 1) >= kernel <= W + 2 * (padding == 1))
    with jax.enable_x64(True):
        params, _ = init_np(layer, (2, H, W))
        _vjp_check(layer, params, normal((2, H, W, 2), 1))


def test_conv_backward_rectangular_kernel_stride_and_padding_beyond_kernel():
    # (kh, kw) = (1, 3), stride (3, 2), padding 2 > kh - 1: the dA_prev padding is negative.
    with jax.enable_x64(True):
        layer = Conv2D(2, (1, 3), (3, 2), 2)
        params, _ = init_np(layer, (3, 7, 6))
        _vjp_check(layer, params, normal((3, 7, 6, 2), 1))


@settings(max_examples=15, deadline=None)
@given(size=st.integers(2, 3), stride=st.sampled_from([None, 1, 2, 3]),
       H=st.integers(3, 8), W=st.integers(3, 8), kind=st.sampled_from(["max", "avg"]))
def test_pool_backward_matches_vjp_and_numpy(size, stride, H, W, kind):
    assume(min(H, W) >= size)
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(size, stride)
    with jax.enable_x64(True):
        X = normal((2, H, W, 2), 2)  # no ties
        dX, grads = _vjp_check(layer, {}, X)
        assert grads == {}
        if kind == "max":
            dY = normal(dX.shape[:1] + layer.init(None, (2, H, W))[1][1:] + (2,))
            assert rel(dX, np_maxpool_backward(X, size, stride or size, dY)) <= 1e-15


@pytest.mark.parametrize("size, stride", [(2, None), (3, None), (3, 1), (3, 2), ((2, 3), None)])
def test_maxpool_ties_go_to_the_first_maximum(size, stride):
    # Small integers: many windows hold their maximum twice or more.
    with jax.enable_x64(True):
        X = jnp.asarray(np.random.default_rng(1).integers(0, 3, (2, 7, 6, 2)), jnp.float64)
        layer = MaxPool2D(size, stride)
        dY = normal((2, *layer.init(None, (2, 7, 6))[1][1:], 2))
        dX = run_compiled(lambda X, dY: layer.backward({}, layer.forward({}, X)[1], dY)[0],
                          X, dY)
        np.testing.assert_allclose(dX, np_maxpool_backward(X, size, stride or size, dY),
                                   rtol=0, atol=1e-15)
        # jax.vjp of the forward follows the same rule at ties
        vjp = jax.vjp(lambda X: layer.forward({}, X)[0], X)[1]
        np.testing.assert_allclose(vjp(dY)[0], dX, rtol=1e-15, atol=1e-15)  # sums' order
        # the cache also works across a jit boundary (what it keeps are arrays only)
        cache = jax.jit(lambda X: layer.forward({}, X)[1])(X)
        np.testing.assert_array_equal(
            jax.jit(lambda c, dY: layer.backward({}, c, dY)[0])(cache, dY), dX)
        windows_with_ties = np.sum(np_pool(X, size, stride or size,
                                           lambda w: np.sum(w == w.max()) > 1))
        assert windows_with_ties > 10


def test_flatten_backward_matches_vjp():
    with jax.enable_x64(True):
        _vjp_check(Flatten(), {}, normal((2, 3, 4, 2)))


def test_backward_from_dZ_skips_the_activation():
    layer = Conv2D(2, 3, padding="same", activation="sigmoid")
    params, _ = init_np(layer, (1, 5, 5))

    def both(params, X, dZ):
        manual = layer.backward_from_dZ(params, layer.forward(params, X)[1], dZ)
        _, vjp = jax.vjp(lambda p, x: Conv2D(2, 3, padding="same").forward(p, x)[0], params, X)
        dP, dX = vjp(dZ)
        return manual, (dX, dP)

    with jax.enable_x64(True):
        manual, auto = run_compiled(both, params, normal((1, 5, 5, 2), 1), normal((2, 5, 5, 2), 2))
    assert_tree_close(manual, auto)


# --- the three-way checker on small CNNs -------------------------------------------------
def bce(A, Y):
    """Binary cross-entropy summed over the outputs, mean over the m examples."""
    return -jnp.sum(Y * jnp.log(A) + (1 - Y) * jnp.log(1 - A)) / Y.shape[-1]


def chain_forward(layers, params, X):
    A, caches = X, []
    for layer, p in zip(layers, params):
        A, cache = layer.forward(p, A)
        caches.append(cache)
    return A, caches


def chain_backward(layers, params, X, Y, backwards=None):
    """`(dX, grads)` for a sigmoid + BCE output: `dZ = (A − Y) / m` into the last layer, then
    each `backward` (or the replacement given in `backwards[l]`) down to the first layer."""
    A, caches = chain_forward(layers, params, X)
    d, g = layers[-1].backward_from_dZ(params[-1], caches[-1], (A - Y) / X.shape[-1])
    grads = [g]
    for l in range(len(layers) - 2, -1, -1):
        backward = (backwards or {}).get(l, layers[l].backward)
        d, g = backward(params[l], caches[l], d)
        grads.insert(0, g)
    return d, grads


def chain_grads(layers, params, X, Y, backwards=None):
    return chain_backward(layers, params, X, Y, backwards)[1]


def make_cnn(layers, in_shape, m, seed=0, bias=0.1):
    params, shape = [], in_shape
    for l, layer in enumerate(layers):
        p, shape = init_np(layer, shape, seed + l, bias)
        params.append(p)
    X = normal((*in_shape, m), seed + 100)
    Y = (normal((shape[0], m), seed + 101) > 0).astype(np.float64)
    return params, X, Y


def check(layers, params, X, Y, backwards=None):
    loss = lambda p, X, Y: bce(chain_forward(layers, p, X)[0], Y)
    grad = lambda p, X, Y: chain_grads(layers, p, X, Y, backwards)
    return jn.check_grad(loss, grad, params, X, Y)


CNN = (Conv2D(2, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(),
       Dense(1, activation="sigmoid"))


def test_check_grad_passes_on_a_small_cnn_with_a_relu_kink():
    with jax.enable_x64(True):
        params, X, Y = make_cnn(CNN, (1, 6, 6), 3, bias=0.0)
        X[:, :3, :3, 0] = 0.0  # zero biases: pre-activations exactly 0 (kinks)
        Z = run_compiled(lambda p, X: CNN[0].forward(p, X)[1]["Z"], params[0], X)
        assert int(jnp.sum(Z == 0)) > 0
        report = check(CNN, params, X, Y)
    assert report.ok, str(report)


def test_check_grad_passes_through_every_layer_kind_with_strides():
    layers = (Conv2D(2, 2, stride=2, padding=1, activation="tanh"), AvgPool2D(2, 1),
              Conv2D(3, (2, 3), padding="same", activation="leaky_relu"), MaxPool2D(2, 1),
              Flatten(), Dense(2, activation="sigmoid"))
    with jax.enable_x64(True):
        params, X, Y = make_cnn(layers, (2, 7, 6), 2)
        report = check(layers, params, X, Y)
    assert report.ok, str(report)
    assert [leaf.name for leaf in report.leaves][:2] == ["[0]['W']", "[0]['b']"]


def test_check_grad_with_maxpool_ties_on_the_input():
    # The pooled image is a parameter: its gradient shows where each dY went.  Windows hold
    # repeated values; the gradient lies between the one-sided slopes at each tie.
    layers = (MaxPool2D(2), Flatten(), Dense(1, activation="sigmoid"))
    with jax.enable_x64(True):
        dense, _ = init_np(layers[2], (8,))
        image = np.random.default_rng(3).integers(0, 2, (2, 4, 4, 2)).astype(np.float64)
        Y = np.asarray([[1.0, 0.0]])
        loss = lambda p, Y: bce(chain_forward(layers, [{}, {}, p[1]], p[0])[0], Y)

        def grad(p, Y):
            dX, grads = chain_backward(layers, [{}, {}, p[1]], p[0], Y)
            return [dX, grads[2]]

        report = jn.check_grad(loss, grad, [image, dense], Y)
    assert report.ok, str(report)
    assert report["[0]"].kink_entries > 0, str(report)


# --- planted bugs: each caught, with the failing leaf named ------------------------------
def conv_dA_prev_buggy(bug):
    """`Conv2D.backward` whose dA_prev has one planted bug; dW and db stay right."""
    def backward(self, params, cache, dA):
        dZ = jn.layers.activation_backward(self.activation, dA, cache["Z"], cache["A"])
        A_prev, W = cache["A_prev"], params["W"]
        grads = self.backward_from_dZ(params, cache, dZ)[1]
        kh, kw = W.shape[2:]
        H, Wd = A_prev.shape[1:3]
        Ho, Wo = dZ.shape[1:3]
        (pt, pb), (pl, pr) = self.pads(H, Wd)
        K = W[:, :, ::-1, ::-1]
        dilation = self.strides
        rh = H + pt + pb - kh - (Ho - 1) * dilation[0]  # rows past the last window
        rw = Wd + pl + pr - kw - (Wo - 1) * dilation[1]
        pads = ((kh - 1 - pt, kh - 1 - pb + rh), (kw - 1 - pl, kw - 1 - pr + rw))
        if bug == "not flipped":
            K = W
        elif bug == "stride ignored":  # dZ not dilated; the padding made up to fit the shape
            dilation = (1, 1)
            pads = ((kh - 1 - pt, H - Ho - (kh - 1 - pt) + kh - 1),
                    (kw - 1 - pl, Wd - Wo - (kw - 1 - pl) + kw - 1))
        elif bug == "crop wrong side":  # the padding taken off the bottom/right, not top/left
            pads = ((kh - 1 - pb, pads[0][1] + pb - pt), (kw - 1 - pr, pads[1][1] + pr - pl))
        dA_prev = lax.conv_general_dilated(dZ, K, (1, 1), pads, lhs_dilation=dilation,
                                           dimension_numbers=("CHWN", "IOHW", "CHWN"))
        assert dA_prev.shape == A_prev.shape
        return dA_prev, grads
    return backward


@pytest.mark.parametrize("bug, second", [
    ("not flipped", Conv2D(2, 3, padding=1, activation="relu")),
    ("stride ignored", Conv2D(2, 3, stride=2, padding=1, activation="relu")),
    ("crop wrong side", Conv2D(2, 2, padding="same", activation="relu")),
])
def test_check_grad_catches_planted_conv_dA_prev_bugs(bug, second):
    layers = (Conv2D(2, 3, padding="same", activation="tanh"), second, Flatten(),
              Dense(1, activation="sigmoid"))
    params, X, Y = make_cnn(layers, (1, 5, 5), 2)
    with jax.enable_x64(True):
        # The same code without the bug is the layer's own backward (proven above).
        right, own = run_compiled(lambda p, X, Y: (
            chain_grads(layers, p, X, Y, {1: conv_dA_prev_buggy(None).__get__(second)}),
            chain_grads(layers, p, X, Y)), params, X, Y)
        assert_tree_close(right, own, 1e-14)
        report = check(layers, params, X, Y, {1: conv_dA_prev_buggy(bug).__get__(second)})
    assert not report.ok
    assert "[0]['W']" in report.failing, str(report)
    assert not any(name.startswith(("[1]", "[3]")) for name in report.failing), str(report)


def test_check_grad_catches_maxpool_gradient_sent_to_the_whole_window():
    def to_every_entry(params, cache, dA):
        return jnp.repeat(jnp.repeat(dA, 2, axis=1), 2, axis=2), {}

    params, X, Y = make_cnn(CNN, (1, 6, 6), 3)
    with jax.enable_x64(True):
        report = check(CNN, params, X, Y, {1: to_every_entry})
    assert not report.ok
    assert report.failing == ["[0]['W']", "[0]['b']"], str(report)


# --- init --------------------------------------------------------------------------------
def test_init_shapes_and_fan_based_scales():
    params, out = Conv2D(64, 3, padding="same", activation="relu").init(
        jax.random.key(0), (32, 10, 10))
    assert params["W"].shape == (64, 32, 3, 3) and params["b"].shape == (64, 1, 1, 1)
    assert out == (64, 10, 10) and not np.any(params["b"])
    assert abs(float(jnp.std(params["W"])) / math.sqrt(2 / (32 * 9)) - 1) < 0.03  # He
    params, out = Conv2D(64, 3, stride=(2, 3), activation="tanh").init(
        jax.random.key(1), (32, 10, 10))
    assert abs(float(jnp.std(params["W"])) / math.sqrt(2 / (32 * 9 + 64 * 9)) - 1) < 0.03
    assert out == (64, 4, 3)
    assert params["W"].dtype == jnp.float32


def test_layers_are_hashable_and_lists_become_tuples():
    layer = Conv2D(4, [3, 2], stride=[1, 2], padding=[1, 0])
    assert layer.kernel == (3, 2) and hash(layer) == hash(Conv2D(4, (3, 2), (1, 2), (1, 0)))
    assert MaxPool2D([2, 2]) == MaxPool2D((2, 2)) and hash(Flatten()) == hash(Flatten())


def test_forward_works_under_jit():
    layer = Conv2D(2, 3, padding="same", activation="relu")
    params, _ = init_np(layer, (1, 6, 6))
    X = np.ones((1, 6, 6, 2), np.float32)
    A = jax.jit(lambda p, X: MaxPool2D(2).forward({}, layer.forward(p, X)[0])[0])(params, X)
    assert A.shape == (2, 3, 3, 2)


# --- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(0, 3), "out_channels"),
    (lambda: Conv2D(2, 0), "kernel"),
    (lambda: Conv2D(2, (3, 3, 3)), "kernel"),
    (lambda: Conv2D(2, 3, stride=0), "stride"),
    (lambda: Conv2D(2, 3, padding=-1), "padding"),
    (lambda: Conv2D(2, 3, padding="full"), "padding"),
    (lambda: Conv2D(2, 3, padding=True), "padding"),
    (lambda: Conv2D(2, 3, padding=(1, 2, 3)), "padding"),
    (lambda: Conv2D(2, 3, activation="relux"), "relux"),
    (lambda: Conv2D(2, 3, init_method="xavier"), "initializer"),
    (lambda: MaxPool2D(0), "size"),
    (lambda: AvgPool2D(2, stride=0), "stride"),
    (lambda: MaxPool2D(2.0), "size"),
], ids=["F0", "k0", "k3d", "s0", "p-1", "pfull", "pbool", "p3", "act", "init", "pool0",
        "poolstride0", "poolfloat"])
def test_bad_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise_before_computing():
    layer = Conv2D(2, 3)
    params, _ = init_np(layer, (3, 5, 5))
    with pytest.raises(ValueError, match=r"\(C, H, W, m\).*\(3, 5, 5\)"):
        layer.forward(params, jnp.ones((3, 5, 5)))
    with pytest.raises(ValueError, match=r"\(3, H, W, m\).*4 channels"):
        layer.forward(params, jnp.ones((4, 5, 5, 2)))
    with pytest.raises(ValueError, match="3x3 window is larger than the padded 2x5"):
        layer.forward(params, jnp.ones((3, 2, 5, 2)))
    with pytest.raises(ValueError, match="larger than the padded"):
        Conv2D(2, 4, padding=1).init(None, (1, 1, 5))
    with pytest.raises(ValueError, match=r"W of shape \(2, C, 3, 3\)"):
        layer.forward({"W": jnp.ones((2, 3, 2, 2)), "b": params["b"]}, jnp.ones((3, 5, 5, 2)))
    with pytest.raises(ValueError, match=r"examples of shape \(C, H, W\)"):
        layer.init(None, (5, 5))
    with pytest.raises(ValueError, match="3x3 window is larger than the unpadded 2x4"):
        MaxPool2D(3).forward({}, jnp.ones((1, 2, 4, 1)))
    with pytest.raises(ValueError, match=r"\(C, H, W, m\)"):
        AvgPool2D(2).forward({}, jnp.ones((4, 4, 1)))
    with pytest.raises(ValueError, match="larger than the unpadded"):
        AvgPool2D(3, 1).init(None, (1, 2, 8))
    with pytest.raises(ValueError, match=r"Flatten expects input of shape"):
        Flatten().forward({}, jnp.ones((4,)))
