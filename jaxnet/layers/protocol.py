"""The layer protocol's rules, checked where `Sequential` meets a layer (see `base` and
docs/layers.md, "Write your own layer").

A layer breaking a rule is a `ProtocolError` (a `ValueError`) that names the layer (its index in
the network and its repr) and the rule, instead of a message about shapes, or an
`AttributeError` from deep inside `jit`.  The checks of `init` run at construction (under
`jax.eval_shape`: nothing is computed); those of `forward` and `backward` run when the network
is traced, where every shape is static, so a compiled step pays nothing for them.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

INIT = "init(key, in_shape, dtype) -> (params, out_shape)"
FORWARD = "forward(params, x) -> (y, cache)"
BACKWARD = "backward(params, cache, dy) -> (dx, grads)"
FROM_DZ = "backward_from_dZ(params, cache, dZ) -> (dx, grads)"


class ProtocolError(ValueError):
    """A layer that breaks a rule of the layer protocol."""


def fail(index: int, layer, rule: str, got: str):
    """Raise the ProtocolError for layer `index` breaking `rule` (what it did: `got`)."""
    raise ProtocolError(f"layer {index} ({layer!r}) breaks the layer protocol: {rule}; {got} "
                        "(see docs/layers.md, 'Write your own layer')")


def _describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_layer_object(index: int, layer) -> None:
    """Rules a layer obeys before it is called: hashable, and `init` takes `dtype`."""
    try:
        hash(layer)
    except TypeError:
        fail(index, layer, "a layer must be hashable (a @dataclass(frozen=True) holding no "
             "arrays): networks are static arguments of jit", "it is unhashable")
    try:
        sig = inspect.signature(layer.init)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to inspect
        return
    kinds = {p.kind for p in sig.parameters.values()}
    takes_dtype = "dtype" in sig.parameters and sig.parameters["dtype"].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if not takes_dtype and inspect.Parameter.VAR_KEYWORD not in kinds:
        fail(index, layer, f"{INIT} must take a dtype keyword (Sequential calls "
             "init(key, in_shape, dtype=...) and the parameters must be made in that dtype)",
             f"its init{sig} has none")


def check_init(index: int, layer, result, dtype) -> None:
    """`init` returned `(params, out_shape)`: params a dict of `dtype` arrays, out_shape a tuple
    of positive ints (called under `jax.eval_shape`, so the arrays are shape structs)."""
    if not isinstance(result, tuple) or len(result) != 2:
        fail(index, layer, f"{INIT} must return a pair", f"it returned {_describe(result)}")
    params, out_shape = result
    if not isinstance(params, dict):
        fail(index, layer, "init's params must be a dict of arrays ({} for none)",
             f"they are {_describe(params)}")
    for name, leaf in params.items():
        if not isinstance(name, str) or not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            fail(index, layer, "init's params must map names (str) to arrays",
                 f"entry {name!r} is {_describe(leaf)}")
        want = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 without x64
        if jnp.dtype(leaf.dtype) != want:
            fail(index, layer, "init(key, in_shape, dtype) must make its parameters in that dtype",
                 f"params[{name!r}] has dtype {leaf.dtype}, asked for {want}")
    if not isinstance(out_shape, (tuple, list)) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
            for s in out_shape):
        fail(index, layer, "init's out_shape must be a tuple of positive ints (one example's "
             "output, m left out)", f"it is {out_shape!r}")


def check_forward(index: int, layer, result, out_shape: tuple, m: int) -> None:
    """`forward` returned `(y, cache)` with `y` of shape `(*out_shape, m)`."""
    if not isinstance(result, tuple) or len(result) != 2:
        fail(index, layer, f"{FORWARD} must return a pair", f"it returned {_describe(result)}")
    y = result[0]
    want = (*out_shape, m)
    if not hasattr(y, "shape") or tuple(y.shape) != want:
        fail(index, layer, f"forward's y must have init's out_shape {tuple(out_shape)} plus the "
             f"examples: shape {want}", f"it is {_describe(y)}")


def check_backward(index: int, layer, result, params: dict, x_shape: tuple | None,
                   *, from_dZ: bool = False) -> None:
    """`backward` (or `backward_from_dZ`) returned `(dx, grads)`: `dx` of the input's shape
    (`x_shape`; None allowed for the first layer, whose input may be integer ids) and `grads`
    a dict with exactly the keys of `params`, each of its parameter's shape."""
    what = FROM_DZ if from_dZ else BACKWARD
    if not isinstance(result, tuple) or len(result) != 2:
        fail(index, layer, f"{what} must return a pair", f"it returned {_describe(result)}")
    dx, grads = result
    if dx is None:
        if x_shape is not None:
            fail(index, layer, f"{what}: dx must be the gradient of the input, shape "
                 f"{x_shape} (None only for integer inputs, in the first layer)", "it is None")
    elif x_shape is not None and (not hasattr(dx, "shape") or tuple(dx.shape) != x_shape):
        fail(index, layer, f"{what}: dx must have the input's shape {x_shape}",
             f"it is {_describe(dx)}")
    if not isinstance(grads, dict):
        fail(index, layer, f"{what}: grads must be a dict like params (keys {sorted(params)})",
             f"it is {_describe(grads)}")
    missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
    if missing or extra:
        fail(index, layer, f"{what}: grads must have exactly the keys of params "
             f"{sorted(params)}", f"missing {missing}, extra {extra}")
    for name, p in params.items():
        g = grads[name]
        if not hasattr(g, "shape") or tuple(g.shape) != tuple(jnp.shape(p)):
            fail(index, layer, f"{what}: grads[{name!r}] must have the shape of params[{name!r}] "
                 f"{tuple(jnp.shape(p))}", f"it is {_describe(g)}")


def eval_init(index: int, layer, key, in_shape: tuple, dtype):
    """`(param shapes {name: (shape, dtype)}, out_shape)` of `layer.init` by `jax.eval_shape`,
    with its result checked against the protocol."""
    box = {}

    def init(k):
        result = layer.init(k, in_shape, dtype=dtype)
        check_init(index, layer, result, dtype)
        box["out"] = tuple(int(s) for s in result[1])
        return result[0]

    shapes = jax.eval_shape(init, key)
    return {name: (tuple(s.shape), s.dtype) for name, s in shapes.items()}, box["out"]
