"""Convolution, pooling and flattening layers, each forward beside its hand-written backward.

Images are `(C, H, W, m)`: channels first, examples last (the document's columns).  With
`Ap` the input padded by `(p_top, p_bottom)` rows and `(p_left, p_right)` columns, stride `s`:

    Z[f, y, x, n] = Σ_{c,i,j} W[f, c, i, j] Ap[c, s·y + i, s·x + j, n] + b[f],   A = g(Z)

    dZ      = dA ⊙ g'(Z)                                                  (F, H', W', m)
    dW[f, c, i, j] = Σ_{y,x,n} dZ[f, y, x, n] Ap[c, s·y + i, s·x + j, n]   correlation of Ap
                                                                          with dZ dilated by s
    db[f]   = Σ_{y,x,n} dZ[f, y, x, n]
    dA_prev = (dZ dilated by s, padded by k − 1) ⋆ (W flipped in i and j), with the padding's
              rows and columns cropped off: the full convolution of dZ with W

Max-pooling routes `dY` to the first maximum of each window in row-major order (PyTorch's
rule, and what `jax.grad` of `lax.reduce_window` max does on CPU); average-pooling spreads
`dY / (kh·kw)` over its window; overlapping windows add up.  Flatten is a reshape.
The derivations are in `docs/layers/conv.md`.

Speed.  XLA on CPU runs a convolution fast (one Eigen call) only in the canonical layouts:
input `(batch, H, W, features)`, kernel `(kh, kw, in, out)`, output `(batch, H, W, features)`.
Other dimension numbers (such as `(C, H, W, m)` used as is, or the ones `jax.grad` derives for
the weight gradient) fall back to a loop nest about ten times slower.  So each convolution here
is written in the canonical layouts: the forward and `dA_prev` transpose to `(m, H, W, C)`;
`dW` takes the input as it comes, `(C, H, W, m)` read as "batch C, features m", and `dZ` as a
`(H', W', m, F)` kernel.  The transposes are cheap next to the convolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from .. import activations, initializers
from .base import activation_backward, activation_forward, check_positive_int, check_rank

CANONICAL = ("NHWC", "HWIO", "NHWC")  # the layouts XLA:CPU runs as one Eigen convolution
IMAGE = "(C, H, W, m)"


def _pair(owner: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of ints >= 1 as `(vertical, horizontal)`, or a ValueError."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        return tuple(check_positive_int(owner, name, v) for v in value)
    v = check_positive_int(owner, name, value)
    return v, v


def _as_option(value):
    """Lists (from a JSON config) as tuples, so the layer stays hashable."""
    return tuple(value) if isinstance(value, list) else value


def _padding_pair(padding) -> tuple[int, int] | None:
    """`(ph, pw)` for an int or a pair of ints >= 0, None for "same"; a ValueError otherwise."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return None
    pair = padding if isinstance(padding, tuple) else (padding, padding)
    if len(pair) != 2 or any(isinstance(p, bool) or not isinstance(p, int) or p < 0
                             for p in pair):
        raise ValueError(f"Conv2D: padding must be an int >= 0, a pair of them, 'same' or "
                         f"'valid', got {padding!r}")
    return pair


def _check_image(layer, x, channels: int | None = None):
    check_rank(layer, x, 4, IMAGE)
    if channels is not None and x.shape[0] != channels:
        raise ValueError(f"{layer} expects input of shape ({channels}, H, W, m) to match its W, "
                         f"got shape {jnp.shape(x)} ({x.shape[0]} channels)")


def _check_window(layer, kernel, padded, what):
    if padded[0] < kernel[0] or padded[1] < kernel[1]:
        raise ValueError(f"{layer}: the {kernel[0]}x{kernel[1]} window is larger than the "
                         f"{what} {padded[0]}x{padded[1]} input")


# --- convolution ---------------------------------------------------------------------------
def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow/XLA "SAME": output `ceil(size / s)`, total padding split with the odd row or
    column at the bottom/right."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_forward(W, b, A_prev, stride, pads):
    """`Z = W ⋆ A_prev + b`: `W (F, C, kh, kw)`, `b (F, 1, 1, 1)`, `A_prev (C, H, W, m)`,
    `pads = ((top, bottom), (left, right))` -> `Z (F, H', W', m)` with
    `H' = (H + top + bottom − kh) // s + 1`."""
    Zn = lax.conv_general_dilated(A_prev.transpose(3, 1, 2, 0), W.transpose(2, 3, 1, 0),
                                  stride, pads, dimension_numbers=CANONICAL)  # (m, H', W', F)
    return Zn.transpose(3, 1, 2, 0) + b


def conv_backward(dZ, A_prev, W, stride, pads):
    """`(dW, db, dA_prev)` of `conv_forward` for the upstream `dZ (F, H', W', m)` (no 1/m).

    `dW[f,c,i,j] = Σ_{y,x,n} dZ[f,y,x,n] Ap[c, s·y+i, s·x+j, n]`: a correlation of the padded
    input with `dZ` dilated by the stride (rows the windows never reached, `r`, cropped off).
    `db[f] = Σ_{y,x,n} dZ[f,y,x,n]`.
    `dA_prev = dZ` dilated by the stride (lhs_dilation), padded by `(kh−1−top, kh−1−bottom+r)`
    (negative padding crops), correlated with `W` flipped in both spatial axes, in and out
    channels swapped: the full convolution of `dZ` with `W`, the padding's rows cropped.
    """
    F, C, kh, kw = W.shape
    _, H, Wd, _ = A_prev.shape
    Ho, Wo = dZ.shape[1:3]
    (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
    rh = H + pt + pb - kh - (Ho - 1) * sh  # padded rows past the last window (< sh)
    rw = Wd + pl + pr - kw - (Wo - 1) * sw
    # dW: batch = C, features = m (the input's own layout); kernel = dZ as (H', W', m, F).
    dWk = lax.conv_general_dilated(A_prev, dZ.transpose(1, 2, 3, 0), (1, 1),
                                   ((pt, pb - rh), (pl, pr - rw)), rhs_dilation=stride,
                                   dimension_numbers=CANONICAL)  # (C, kh, kw, F)
    dW = dWk.transpose(3, 0, 1, 2)
    db = jnp.sum(dZ, axis=(1, 2, 3)).reshape(F, 1, 1, 1)
    flipped = W[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)  # (kh, kw, F, C)
    dAn = lax.conv_general_dilated(dZ.transpose(3, 1, 2, 0), flipped, (1, 1),
                                   ((kh - 1 - pt, kh - 1 - pb + rh), (kw - 1 - pl, kw - 1 - pr + rw)),
                                   lhs_dilation=stride, dimension_numbers=CANONICAL)
    dA_prev = dAn.transpose(3, 1, 2, 0)
    assert dW.shape == W.shape and dA_prev.shape == A_prev.shape, (dW.shape, dA_prev.shape)
    return dW, db, dA_prev


def conv_weights(method: str, key, shape, dtype):
    """`W` of `shape (F, C, kh, kw)` with fan_in `C·kh·kw` and fan_out `F·kh·kw`: He
    `std √(2/fan_in)`, Glorot `std √(2/(fan_in + fan_out))`, small normal or zeros."""
    F, C, kh, kw = shape
    fan_in, fan_out = C * kh * kw, F * kh * kw
    if method == "zeros":
        return jnp.zeros(shape, dtype)
    std = {"he": math.sqrt(2.0 / fan_in), "glorot": math.sqrt(2.0 / (fan_in + fan_out)),
           "normal": initializers.SMALL}[method]
    return (std * jax.random.normal(key, shape, dtype)).astype(dtype)


@dataclass(frozen=True)
class Conv2D:
    """`A = g(W ⋆ A_prev + b)`: a 2-D convolution (cross-correlation, as PyTorch) over `(H, W)`.

    Arguments:
        out_channels: `F`, the number of filters.
        kernel: `k` or `(kh, kw)`.
        stride: `s` or `(sh, sw)` (default 1).
        padding: an int `p` (or a pair `(ph, pw)`) of zero rows/columns on each side, "valid"
            (= 0) or "same" (TensorFlow's rule: output `ceil(H / s)`; the odd row or column of
            padding goes at the bottom/right, so with stride 1 `H' = H` for any kernel).
        activation: a name from `jaxnet.activations` (default ``identity``).
        init_method: ``he``, ``glorot``, ``normal`` or ``zeros``; default He for the ReLU
            family and Glorot otherwise, with fan_in `C·kh·kw` and fan_out `F·kh·kw`.

    Shapes: `A_prev (C, H, W, m)` -> `A (F, H', W', m)`.
    Parameters: `W (F, C, kh, kw)` (PyTorch's OIHW), `b (F, 1, 1, 1)`.
    """

    out_channels: int
    kernel: int | tuple
    stride: int | tuple = 1
    padding: int | tuple | str = 0
    activation: str = "identity"
    init_method: str | None = None

    def __post_init__(self):
        for name in ("kernel", "stride", "padding"):
            object.__setattr__(self, name, _as_option(getattr(self, name)))
        check_positive_int("Conv2D", "out_channels", self.out_channels)
        _pair("Conv2D", "kernel", self.kernel)
        _pair("Conv2D", "stride", self.stride)
        _padding_pair(self.padding)
        object.__setattr__(self, "activation", activations.canonical_name(self.activation))
        if self.init_method is not None:
            initializers.get(self.init_method)

    def __str__(self):
        return (f"Conv2D({self.out_channels}, kernel={self.kernel}, stride={self.stride}, "
                f"padding={self.padding!r})")

    @property
    def kernel_size(self) -> tuple[int, int]:
        return _pair("Conv2D", "kernel", self.kernel)

    @property
    def strides(self) -> tuple[int, int]:
        return _pair("Conv2D", "stride", self.stride)

    def pads(self, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """`((top, bottom), (left, right))` zero rows/columns for an `H x W` input."""
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":
            return same_padding(H, kh, sh), same_padding(W, kw, sw)
        ph, pw = _padding_pair(self.padding)
        return (ph, ph), (pw, pw)

    def _out_hw(self, H, W):
        (pt, pb), (pl, pr) = self.pads(H, W)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        _check_window(self, (kh, kw), (H + pt + pb, W + pl + pr), "padded")
        return (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({"W": (F, C, kh, kw), "b": (F, 1, 1, 1)}, (F, H', W'))` for `in_shape (C, H, W)`."""
        if len(in_shape) != 3:
            raise ValueError(f"{self} expects examples of shape (C, H, W), got {tuple(in_shape)}")
        C, H, W = in_shape
        Ho, Wo = self._out_hw(H, W)
        F, (kh, kw) = self.out_channels, self.kernel_size
        method = self.init_method or initializers.default_for(self.activation)
        params = {"W": conv_weights(method, key, (F, C, kh, kw), dtype),
                  "b": jnp.zeros((F, 1, 1, 1), dtype)}
        return params, (F, Ho, Wo)

    def _check(self, params, A_prev):
        W = params["W"]
        expected = (self.out_channels, *self.kernel_size)
        if jnp.ndim(W) != 4 or (W.shape[0], *W.shape[2:]) != expected:
            raise ValueError(f"{self} expects W of shape ({expected[0]}, C, {expected[1]}, "
                             f"{expected[2]}), got shape {jnp.shape(W)}")
        _check_image(self, A_prev, W.shape[1])
        self._out_hw(*A_prev.shape[1:3])

    def forward(self, params, A_prev):
        """`(A, cache)`; `A_prev (C, H, W, m)` -> `A (F, H', W', m)`; cache: `A_prev`, `Z`, `A`."""
        self._check(params, A_prev)
        Z = conv_forward(params["W"], params["b"], A_prev, self.strides,
                         self.pads(*A_prev.shape[1:3]))
        A = activation_forward(self.activation, Z)
        return A, {"A_prev": A_prev, "Z": Z, "A": A}

    def backward(self, params, cache, dA):
        """`(dA_prev, {"W": dW, "b": db})` from `dA (F, H', W', m)`: `dZ = dA ⊙ g'(Z)`, then
        `conv_backward`."""
        dZ = activation_backward(self.activation, dA, cache["Z"], cache["A"])
        return self.backward_from_dZ(params, cache, dZ)

    def backward_from_dZ(self, params, cache, dZ):
        """The same from `dZ (F, H', W', m)` directly."""
        A_prev = cache["A_prev"]
        dW, db, dA_prev = conv_backward(dZ, A_prev, params["W"], self.strides,
                                        self.pads(*A_prev.shape[1:3]))
        return dA_prev, {"W": dW, "b": db}


# --- pooling -------------------------------------------------------------------------------
def _window_slice(A_prev, i, j, stride, out_hw):
    """The entries at offset `(i, j)` of every window: `A_prev[:, i::sh, j::sw, :]`, `(C, H', W', m)`."""
    (sh, sw), (Ho, Wo) = stride, out_hw
    C, _, _, m = A_prev.shape
    return lax.slice(A_prev, (0, i, j, 0), (C, i + sh * (Ho - 1) + 1, j + sw * (Wo - 1) + 1, m),
                     (1, sh, sw, 1))


def _window_place(part, i, j, stride, in_hw):
    """The transpose of `_window_slice`: `part (C, H', W', m)` put back at offset `(i, j)` of
    every window of a zero `(C, H, W, m)` (interior padding by the stride)."""
    (sh, sw), (H, W), (Ho, Wo) = stride, in_hw, part.shape[1:3]
    zero = jnp.zeros((), part.dtype)
    return lax.pad(part, zero, ((0, 0, 0), (i, H - i - sh * (Ho - 1) - 1, sh - 1),
                                (j, W - j - sw * (Wo - 1) - 1, sw - 1), (0, 0, 0)))


def _tiles(A_prev, window, out_hw):
    """Non-overlapping windows (stride = size) as axes: `(C, H', kh, W', kw, m)`, the rows and
    columns that no window covers cropped off."""
    (kh, kw), (Ho, Wo) = window, out_hw
    C, _, _, m = A_prev.shape
    return A_prev[:, :Ho * kh, :Wo * kw].reshape(C, Ho, kh, Wo, kw, m)


def _untile(parts, in_hw):
    """The transpose of `_tiles`: `parts[i][j] (C, H', W', m)` (the entries at offset `(i, j)`
    of every window) interleaved back into `(C, H, W, m)`, zeros where no window reaches.
    Stacking is a copy XLA fuses; placing each offset by an interior-padded `lax.pad` (the
    general path below) ran about five times slower on CPU."""
    (H, W), (C, Ho, Wo, m) = in_hw, parts[0][0].shape
    kh, kw = len(parts), len(parts[0])
    tiles = jnp.stack([jnp.stack(row, axis=3) for row in parts], axis=2)  # (C, H', kh, W', kw, m)
    d = tiles.reshape(C, Ho * kh, Wo * kw, m)
    return jnp.pad(d, ((0, 0), (0, H - Ho * kh), (0, W - Wo * kw), (0, 0)))


@dataclass(frozen=True)
class _Pool2D:
    size: int | tuple = 2
    stride: int | tuple | None = None

    def __post_init__(self):
        for name in ("size", "stride"):
            object.__setattr__(self, name, _as_option(getattr(self, name)))
        _pair(type(self).__name__, "size", self.size)
        if self.stride is not None:
            _pair(type(self).__name__, "stride", self.stride)

    def __str__(self):
        return f"{type(self).__name__}(size={self.size}, stride={self.stride})"

    @property
    def window(self) -> tuple[int, int]:
        return _pair(type(self).__name__, "size", self.size)

    @property
    def strides(self) -> tuple[int, int]:
        return self.window if self.stride is None else _pair(type(self).__name__, "stride",
                                                             self.stride)

    def _out_hw(self, H, W):
        (kh, kw), (sh, sw) = self.window, self.strides
        _check_window(self, (kh, kw), (H, W), "unpadded")
        return (H - kh) // sh + 1, (W - kw) // sw + 1

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({}, (C, H', W'))`, `H' = (H − kh) // sh + 1` (windows that do not fit are dropped)."""
        del key, dtype
        if len(in_shape) != 3:
            raise ValueError(f"{self} expects examples of shape (C, H, W), got {tuple(in_shape)}")
        return {}, (in_shape[0], *self._out_hw(*in_shape[1:]))

    def _reduce(self, A_prev, init, op):
        _check_image(self, A_prev)
        self._out_hw(*A_prev.shape[1:3])
        return lax.reduce_window(A_prev, init, op,
                                 (1, *self.window, 1), (1, *self.strides, 1), "VALID")


@dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """`A[c, y, x, n] = max_{i,j} A_prev[c, s·y + i, s·x + j, n]` over `size x size` windows.

    Arguments:
        size: `k` or `(kh, kw)`; stride: `s` or `(sh, sw)`, default `size`.  No padding; windows
            that do not fit are dropped.

    Shapes: `(C, H, W, m)` -> `(C, H', W', m)`, `H' = (H − kh) // sh + 1`.  No parameters.
    """

    def forward(self, params, A_prev):
        """`(A, cache)`.  Non-overlapping windows (stride = size): cache `first (C, H', W', m)`,
        the row-major offset `i·kw + j` of each window's first maximum (int8 for windows up to
        127 entries), found here while the window is read for its max, so the backward reads
        no `A_prev`; overlapping windows: cache `A_prev`, `A`."""
        if self.strides != self.window or math.prod(self.window) > 127:
            A = self._reduce(A_prev, -jnp.inf, lax.max)
            return A, {"A_prev": A_prev, "A": A}
        _check_image(self, A_prev)
        (kh, kw), (Ho, Wo) = self.window, self._out_hw(*A_prev.shape[1:3])
        tiles = _tiles(A_prev, (kh, kw), (Ho, Wo))  # (C, H', kh, W', kw, m)
        windows = tiles.transpose(0, 1, 3, 5, 2, 4).reshape(*tiles.shape[:2], Wo, -1, kh * kw)
        first = jnp.argmax(windows, axis=-1).astype(jnp.int8)  # the first maximum, row-major
        # A as the entry at `first` (not jnp.max, whose autodiff splits dA among ties): so
        # jax.grad of this forward follows the same first-maximum rule as the backward below.
        # (A gather: about 7 % faster per CNN step than a one-hot `where` and a sum.)
        A = jnp.take_along_axis(windows, first[..., None].astype(jnp.int32), axis=-1)[..., 0]
        # `in_hw` carries (H, W) as a shape (0 bytes), so the cache may cross a `jit` boundary
        in_hw = jnp.zeros((0, *A_prev.shape[1:3]), jnp.int8)
        return A, {"first": first, "in_hw": in_hw}

    def backward(self, params, cache, dA):
        """`(dA_prev, {})`: each `dA[c, y, x, n]` goes to the first maximum of its window in
        row-major order; overlapping windows add up.  Mask-based (one strided slice per window
        offset), which XLA fuses; a scatter runs about 15 times slower on CPU.  Windows that do
        not overlap (stride = size, the usual pool) use the offsets the forward kept: each
        offset's share is `dA` where it was the first maximum, interleaved back (`_untile`).
        Comparing `A_prev` with `A` here instead made XLA recompute the convolution's
        transposed output: a digits-CNN step in `fit` was 1.09x slower (docs/layers/conv.md)."""
        (kh, kw), stride = self.window, self.strides
        if "first" in cache:
            first = cache["first"]
            parts = [[jnp.where(first == i * kw + j, dA, 0) for j in range(kw)]
                     for i in range(kh)]
            return _untile(parts, cache["in_hw"].shape[1:]), {}
        A_prev, A = cache["A_prev"], cache["A"]
        in_hw = A_prev.shape[1:3]
        taken = jnp.zeros(A.shape, bool)
        dA_prev = jnp.zeros_like(A_prev)
        for i in range(kh):
            for j in range(kw):
                hit = (_window_slice(A_prev, i, j, stride, A.shape[1:3]) == A) & ~taken
                taken = taken | hit
                dA_prev = dA_prev + _window_place(jnp.where(hit, dA, 0), i, j, stride, in_hw)
        return dA_prev, {}


@dataclass(frozen=True)
class AvgPool2D(_Pool2D):
    """`A[c, y, x, n] = (1 / (kh·kw)) Σ_{i,j} A_prev[c, s·y + i, s·x + j, n]`.

    Arguments, shapes: as `MaxPool2D`.  No parameters.
    """

    def forward(self, params, A_prev):
        """`(A, cache)` with cache `A_prev`."""
        kh, kw = self.window
        A = self._reduce(A_prev, 0.0, lax.add) / (kh * kw)
        return A, {"A_prev": A_prev}

    def backward(self, params, cache, dA):
        """`(dA_prev, {})`: every entry of a window receives `dA / (kh·kw)`; overlaps add up."""
        A_prev = cache["A_prev"]
        (kh, kw), stride, in_hw = self.window, self.strides, A_prev.shape[1:3]
        part = dA / (kh * kw)
        if stride == (kh, kw):  # non-overlapping windows
            return _untile([[part] * kw for _ in range(kh)], in_hw), {}
        dA_prev = jnp.zeros_like(A_prev)
        for i in range(kh):
            for j in range(kw):
                dA_prev = dA_prev + _window_place(part, i, j, stride, in_hw)
        return dA_prev, {}


# --- flatten -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flatten:
    """`(C, H, W, m)` -> `(C·H·W, m)`: each example's image as one column in C order (row
    `c·H·W + h·W + w`), as PyTorch's `flatten(1)` of `(m, C, H, W)`.  Any `(d_1, …, d_k, m)`
    flattens the same way.  No parameters."""

    def init(self, key, in_shape, dtype=jnp.float32):
        """`({}, (C·H·W,))` for `in_shape (C, H, W)`."""
        del key, dtype
        if len(in_shape) < 1:
            raise ValueError(f"Flatten expects examples of shape (C, H, W), got {tuple(in_shape)}")
        return {}, (math.prod(in_shape),)

    def forward(self, params, A_prev):
        """`(A, cache)`: `A_prev (C, H, W, m)` -> `A (C·H·W, m)`; cache `A_prev` (for its shape)."""
        if jnp.ndim(A_prev) < 2:
            raise ValueError(f"Flatten expects input of shape (C, H, W, m), got shape "
                             f"{jnp.shape(A_prev)}")
        return A_prev.reshape(-1, A_prev.shape[-1]), {"A_prev": A_prev}

    def backward(self, params, cache, dA):
        """`(dA_prev, {})`: `dA (C·H·W, m)` reshaped back to the input's shape `(C, H, W, m)`."""
        return dA.reshape(cache["A_prev"].shape), {}
