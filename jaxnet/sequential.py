"""`Sequential`: any stack of layers as one network with `MLP`'s contract.

    A^[0] = X,   A^[l], cache^[l] = layer_l.forward(params[l], A^[l-1]),   Ŷ = A^[L]
    J = mean over every position of every example of L(ŷ, y)

    dZ^[L] = (A^[L] − Y) / count            (sigmoid + BCE, softmax + CCE: the document's shortcut)
    dA^[L] = dL/dA^[L] / count              (any other pairing)
    dA^[l-1], grads[l] = layer_l.backward(params[l], cache^[l], dA^[l])     for l = L … 1

`count` is the number of loss terms the mean runs over: `m` for vectors `(n_y, m)`, `T·m` for
sequences `(n_y, T, m)`.  The network knows nothing of the layers it holds beyond the protocol of
`jaxnet.layers.base`; the output activation is the last layer's ``activation`` field (identity
for a layer without one), and the loss follows from it as for `MLP`.

Targets of a softmax + categorical cross-entropy output may be one-hot `(n_y, ..., m)` or integer
class ids `(..., m)` (the output's shape without its first axis): no one-hot array is needed for
a large vocabulary.  Likewise a single sigmoid (binary cross-entropy) unit takes 0/1 labels of
shape `(m,)` as well as `(1, m)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import activations, losses
from .layers import protocol, registry
from .validation import binary_row, concrete


@dataclass(frozen=True)
class Sequential:
    """A network made of `layers`, applied in order (hashable: static under `jit`).

    Arguments:
        layers: the layers (`jaxnet.layers`), e.g.
            ``(Conv2D(16, 3, padding="same", activation="relu"), MaxPool2D(2), Flatten(),
            Dense(10, activation="softmax"))``.
        input_shape: the shape of one example, `m` left out: `(n_x,)` for vectors,
            `(C, H, W)` for images, `(n_x, T)` for sequences, `(T,)` for token ids.
        loss: the per-example loss; by default the document's pairing for the last layer's
            activation (identity -> ½ squared error, sigmoid -> BCE, softmax -> CCE).

    Methods `init`, `forward`, `cost`, `backprop` as `MLP`; `backprop` chains the layers'
    hand-written `backward` from `dŶ`, and `jax.grad(net.cost)` agrees with it leaf by leaf.
    """

    layers: tuple
    input_shape: tuple
    loss: str | None = None

    def __post_init__(self):
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else None
        if not layers:
            raise ValueError(f"Sequential needs a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(layers):
            missing = [m for m in ("init", "forward", "backward") if not hasattr(layer, m)]
            if missing or isinstance(layer, type):
                raise TypeError(f"layer {i} ({layer!r}) is not a layer instance: it needs "
                                f"init, forward and backward methods (missing {missing})")
            protocol.check_layer_object(i, layer)
        try:
            shape = tuple(self.input_shape)
        except TypeError:
            raise TypeError(f"input_shape must be a tuple of ints (one example, m left out), "
                            f"got {self.input_shape!r}") from None
        if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                            or s < 1 for s in shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints (one "
                             f"example, m left out), got {self.input_shape!r}")
        shape = tuple(int(s) for s in shape)
        output = activations.canonical_name(getattr(layers[-1], "activation", "identity"))
        loss = self.loss if self.loss is not None else losses.DEFAULT_LOSS.get(output)
        if loss is None:
            raise ValueError(f"no default loss for output activation {output!r}; pass loss=...")
        pair = losses.get(loss).output
        if pair is not None and pair != output:
            raise ValueError(f"loss {loss!r} needs a {pair!r} output layer (its values must be "
                             f"probabilities), got a last layer with activation {output!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "loss", loss)
        self._spec()  # every layer accepts its input shape, or a clear error now

    # --- shapes ------------------------------------------------------------------------------
    def _spec(self, dtype=jnp.float32):
        """`[(param shapes, in_shape, out_shape), ...]`, one per layer (cached per dtype)."""
        cache = self.__dict__.setdefault("_specs", {})
        name = jnp.dtype(dtype).name
        if name not in cache:
            spec, shape = [], self.input_shape
            for i, layer in enumerate(self.layers):
                try:
                    params, out = protocol.eval_init(i, layer, jax.random.key(0), shape,
                                                     jnp.dtype(dtype))
                except protocol.ProtocolError:
                    raise
                except (ValueError, TypeError) as err:
                    raise ValueError(f"layer {i} ({layer!r}) does not accept input of shape "
                                     f"{shape} (m left out): {err}") from None
                spec.append((params, shape, out))
                shape = out
            cache[name] = spec
        return cache[name]

    @property
    def L(self) -> int:
        """Number of layers."""
        return len(self.layers)

    @property
    def output(self) -> str:
        """The activation of the output layer (identity when it has none)."""
        return activations.canonical_name(getattr(self.layers[-1], "activation", "identity"))

    @property
    def output_shape(self) -> tuple:
        """Shape of one example of `Ŷ`, `m` left out."""
        return self._spec()[-1][2]

    @property
    def shapes(self) -> list[tuple]:
        """The shape of one example after each layer (input first), `m` left out."""
        return [self.input_shape] + [out for _, _, out in self._spec()]

    # --- parameters --------------------------------------------------------------------------
    def init(self, key, *, dtype=jnp.float32) -> list[dict]:
        """One params dict per layer (`{}` for layers without parameters).

        Arguments:
            key: a `jax.random.key`; layer l gets `jax.random.split(key, L)[l]`.
            dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs x64 enabled).
        """
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError("dtype float64 needs JAX's x64 mode: run inside "
                             "`with jax.enable_x64(True):`")
        keys = jax.random.split(key, self.L)
        return [layer.init(k, in_shape, dtype=dtype)[0]
                for layer, k, (_, in_shape, _) in zip(self.layers, keys, self._spec())]

    # --- the public methods (validated) ------------------------------------------------------
    def forward(self, params, X):
        """`Ŷ` of shape `(*output_shape, m)` for `X` of shape `(*input_shape, m)`."""
        self._check_params(params)
        return self._forward(params, self._check_X(X))[1]

    def forward_cache(self, params, X):
        """`(Ŷ, caches)`: one cache per layer, what its `backward` needs."""
        self._check_params(params)
        _, A, caches = self._forward(params, self._check_X(X))
        return A, caches

    def cost(self, params, X, Y):
        """J: the mean loss over every position of every example (a scalar)."""
        X, Y = self._check(params, X, Y)
        return self._cost(params, X, Y)

    def backprop(self, params, X, Y, *, shortcut: bool = True):
        """The hand-written backward pass: gradients of `cost`, the same tree as `params`.

        With ``shortcut=False`` the output layer takes the general chain from `dL/dA^[L]`
        even where `A^[L] − Y` would do (same result)."""
        X, Y = self._check(params, X, Y)
        return self._backprop(params, X, Y, shortcut=shortcut)

    # --- pure functions (no checks: for compiled loops) --------------------------------------
    def _forward(self, params, X):
        """`(Z^[L], A^[L], caches)`; `Z^[L]` is the output layer's pre-activation (or `A^[L]`)."""
        A, caches = X, []
        for l, (layer, p, (_, _, out)) in enumerate(zip(self.layers, params, self._spec())):
            result = layer.forward(p, A)
            protocol.check_forward(l, layer, result, out, X.shape[-1])  # at trace time: free
            A, cache = result
            caches.append(cache)
        last = caches[-1]
        Z = last["Z"] if isinstance(last, dict) and "Z" in last else A
        return Z, A, caches

    def _per_position_loss(self, Z, A, Y):
        """The loss at each position of each example: shape of `Ŷ` without its first axis."""
        loss = losses.get(self.loss)
        Y = binary_row(Y, A.shape[:-1], self.loss)
        if _is_ids(Y, A):
            if loss.name != "categorical_cross_entropy":
                raise ValueError("integer class ids as targets need categorical cross-entropy")
            log_p = jax.nn.log_softmax(Z, axis=0) if self.output == "softmax" else jnp.log(A)
            return -jnp.take_along_axis(log_p, Y[None].astype(jnp.int32), axis=0)[0]
        if loss.from_logits is not None and loss.output == self.output:
            return loss.from_logits(Z, Y)
        return loss.forward(A, Y)

    def _loss(self, Z, A, Y):
        """J from the output: the mean of the per-position loss."""
        return jnp.mean(self._per_position_loss(Z, A, Y))

    def _cost(self, params, X, Y):
        Z, A, _ = self._forward(params, X)
        return self._loss(Z, A, Y)

    def _output_grad(self, Z, A, Y, *, shortcut=True):
        """`("dZ", dZ^[L])` for a matching pair (the shortcut) or `("dA", dA^[L])`."""
        count = math.prod(A.shape[1:])
        loss = losses.get(self.loss)
        Y = binary_row(Y, A.shape[:-1], self.loss)
        if _is_ids(Y, A):
            Y = jax.nn.one_hot(Y, A.shape[0], axis=0, dtype=A.dtype)
        if shortcut and loss.output == self.output:
            return "dZ", (A - Y) / count
        return "dA", loss.derivative(A, Y) / count

    def _backward(self, params, caches, Z, A, Y, *, shortcut=True):
        """Chain the layers' `backward` from the output gradient; returns the grads list."""
        # The shortcut needs the output layer's backward_from_dZ; without it (a layer of your
        # own may leave it out) the general path goes through its activation's backward.
        shortcut = shortcut and hasattr(self.layers[-1], "backward_from_dZ")
        kind, d = self._output_grad(Z, A, Y, shortcut=shortcut)
        return self.backward_chain(params, caches, d, from_logits=kind == "dZ")[1]

    def backward_chain(self, params, caches, d, *, from_logits: bool = False):
        """`(dX, grads)`: the layers' `backward` chained from `dŶ` (or from `dZ^[L]` with
        ``from_logits=True``) down to the input.  `dX` is what a network feeding this one
        (a GAN's generator) continues from; None for integer inputs."""
        if from_logits and not hasattr(self.layers[-1], "backward_from_dZ"):
            raise ValueError(f"backward_chain(..., from_logits=True) starts from dZ^[L], which "
                             f"needs the output layer's backward_from_dZ; "
                             f"{self.layers[-1]!r} has none: pass dŶ with from_logits=False")
        grads = [None] * self.L
        m = d.shape[-1]
        for l in reversed(range(self.L)):
            layer = self.layers[l]
            from_dZ = l == self.L - 1 and from_logits
            if from_dZ:
                result = layer.backward_from_dZ(params[l], caches[l], d)
            else:
                result = layer.backward(params[l], caches[l], d)
            # dx of the first layer may be None (integer ids); every other dx must be there
            x_shape = None if l == 0 else (*self._spec()[l][1], m)
            protocol.check_backward(l, layer, result, params[l], x_shape, from_dZ=from_dZ)
            d, grads[l] = result
        if d is not None and tuple(d.shape) != (*self.input_shape, m):
            protocol.fail(0, self.layers[0], f"{protocol.BACKWARD}: dx must have the input's "
                          f"shape {(*self.input_shape, m)}", f"it has shape {tuple(d.shape)}")
        return d, grads

    def _backprop(self, params, X, Y, *, shortcut=True):
        Z, A, caches = self._forward(params, X)
        return self._backward(params, caches, Z, A, Y, shortcut=shortcut)

    def _cost_and_grads(self, params, X, Y):
        """`(J, Ŷ, grads)` from one forward pass: what a training step needs."""
        Z, A, caches = self._forward(params, X)
        return self._loss(Z, A, Y), A, self._backward(params, caches, Z, A, Y)

    # --- validation --------------------------------------------------------------------------
    def _check_params(self, params):
        if not isinstance(params, (list, tuple)):
            raise TypeError(f"params must be a list of dicts (one per layer), got "
                            f"{type(params).__name__}")
        if len(params) != self.L:
            raise ValueError(f"params has {len(params)} entries but the network has {self.L} "
                             "layers")
        for l, (p, (want, _, _)) in enumerate(zip(params, self._spec())):
            if not isinstance(p, dict) or set(p) != set(want):
                got = sorted(p) if isinstance(p, dict) else type(p).__name__
                raise ValueError(f"params[{l}] ({type(self.layers[l]).__name__}) must be a dict "
                                 f"with keys {sorted(want)}, got {got}")
            for name, (shape, _) in want.items():
                leaf = p[name]
                if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                    raise TypeError(f"params[{l}][{name!r}] must be an array, got "
                                    f"{type(leaf).__name__}")
                if not jnp.issubdtype(leaf.dtype, jnp.floating):
                    raise TypeError(f"params[{l}][{name!r}] must hold floating values, got "
                                    f"dtype {leaf.dtype}")
                if tuple(leaf.shape) != shape:
                    raise ValueError(f"params[{l}][{name!r}] "
                                     f"({type(self.layers[l]).__name__}) must have shape "
                                     f"{shape}, got {tuple(leaf.shape)}")
                values = concrete(leaf)
                if values is not None and not np.all(np.isfinite(values)):
                    raise ValueError(f"params[{l}][{name!r}] holds non-finite values")

    def _check_X(self, X):
        X = jnp.asarray(X)
        want = (*self.input_shape, "m")
        if X.ndim != len(want) or tuple(X.shape[:-1]) != self.input_shape:
            raise ValueError(f"X must have shape {want} (examples on the last axis), got "
                             f"{X.shape}")
        if X.shape[-1] == 0:
            raise ValueError(f"X has no examples (m = 0): shape {X.shape}")
        x = concrete(X)
        if x is not None and np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise ValueError(f"X holds {int(np.size(x) - np.isfinite(x).sum())} non-finite "
                             "values")
        return X

    def _check_Y(self, Y, m):
        # 0/1 labels (m,) of a single sigmoid unit are taken as its (1, m) output row
        Y = binary_row(jnp.asarray(Y), self.output_shape, self.loss, m)
        out = self.output_shape
        full, ids = (*out, m), (*out[1:], m)
        if jnp.issubdtype(Y.dtype, jnp.integer) and Y.shape == ids \
                and self.loss == "categorical_cross_entropy":
            y = concrete(Y)
            if y is not None and (y.min() < 0 or y.max() >= out[0]):
                raise ValueError(f"class ids in Y must lie in [0, {out[0]}), got values in "
                                 f"[{y.min()}, {y.max()}]")
            return Y
        if Y.shape != full:
            extra = f" or integer class ids of shape {ids}" \
                if self.loss == "categorical_cross_entropy" else f" or 0/1 labels of shape {ids}" \
                if self.loss == "binary_cross_entropy" and out == (1,) else ""
            raise ValueError(f"Y must have shape {full}{extra}, got {Y.shape} ({Y.dtype})")
        y = concrete(Y)
        if y is None:
            return Y
        if not np.all(np.isfinite(y)):
            raise ValueError(f"Y holds {int(np.size(y) - np.isfinite(y).sum())} non-finite values")
        if self.loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"binary cross-entropy needs labels in [0, 1], got values in "
                             f"[{y.min()}, {y.max()}]")
        if self.loss == "categorical_cross_entropy":
            sums = y.sum(axis=0)
            if y.min() < 0 or not np.allclose(sums, 1, atol=1e-4):
                raise ValueError("categorical cross-entropy needs each column of Y to be a "
                                 "distribution over axis 0 (e.g. one-hot), or integer class ids")
        return Y

    def _check(self, params, X, Y):
        self._check_params(params)
        X = self._check_X(X)
        return X, self._check_Y(Y, X.shape[-1])

    # --- description -------------------------------------------------------------------------
    def describe(self) -> str:
        """One line per layer: its type and options, output shape and parameter count."""
        lines = [f"input {self.input_shape}"]
        for layer, (params, _, out) in zip(self.layers, self._spec()):
            n = sum(math.prod(s) for s, _ in params.values())
            lines.append(f"{layer!r} -> {out}" + (f", {n:,} parameters" if n else ""))
        lines.append(f"loss {self.loss}")
        return "\n".join(lines)

    def n_params(self) -> int:
        """Number of parameters."""
        return sum(math.prod(s) for params, _, _ in self._spec() for s, _ in params.values())

    def to_config(self) -> dict:
        """A JSON-able description that `Sequential.from_config` rebuilds (checkpoints), or
        a ValueError naming the layer when one could not be rebuilt: its class is not
        registered (`jaxnet.layers.register`), it is not a dataclass, or its fields do not
        survive JSON."""
        return {"input_shape": list(self.input_shape), "loss": self.loss,
                "layers": [registry.layer_config(i, layer) for i, layer in enumerate(self.layers)]}

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        """The network `to_config` described; a layer type not registered yet is looked up by
        importing the module the config records (see `jaxnet.layers.registry`)."""
        layers = [registry.layer_from_config(entry) for entry in config["layers"]]
        return cls(tuple(layers), input_shape=tuple(config["input_shape"]), loss=config["loss"])

    # dataclass's eq/hash cover layers, input_shape and loss; the shape cache is not a field.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_specs"}


def as_sequential(net) -> Sequential:
    """The `Sequential` of `Dense` layers computing the same function as an `MLP` (same
    parameters), so code written for layers (a GAN, `backward_chain`) takes an `MLP` too."""
    if isinstance(net, Sequential):
        return net
    from .layers.dense import Dense

    return Sequential(tuple(Dense(n, g) for n, g in zip(net.sizes[1:], net.activations)),
                      input_shape=(net.sizes[0],), loss=net.loss)


def _is_ids(Y, A) -> bool:
    """True when `Y` holds integer class ids (one axis fewer than `A`)."""
    return jnp.issubdtype(Y.dtype, jnp.integer) and Y.ndim == A.ndim - 1
