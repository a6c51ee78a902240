"""The L-layer network: architecture, parameters, forward propagation and the cost.

    Z^[l] = W^[l] A^[l-1] + b^[l],   A^[l] = g^[l](Z^[l]),   A^[0] = X,   Ŷ = A^[L]
    J = (1/m) Σ_i L(ŷ^(i), y^(i))

Examples are columns: `X` is `(n_x, m)`, `A^[l]` is `(n^[l], m)`.  The architecture (`MLP`)
holds no arrays; parameters are a plain list of `{"W", "b"}` dicts, one per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import activations, initializers, losses
from . import validation as v
from .layers.dense import linear_forward


@dataclass(frozen=True)
class MLP:
    """A fully connected feed-forward network (hashable, so it can be static under `jit`).

    Arguments:
        sizes: layer widths `(n_x, n^[1], ..., n^[L])`; depth `L = len(sizes) - 1`.
        hidden: activation of the hidden layers, one name or one name per hidden layer.
        output: activation of the output layer.
        loss: the per-example loss; by default the document's pairing for `output`
            (identity -> ``squared_error`` (½(y−ŷ)²), sigmoid -> ``binary_cross_entropy``,
            softmax -> ``categorical_cross_entropy``).

    Cross-entropy losses need their matching output (BCE: sigmoid, CCE: softmax); that is
    what makes the cost stable (computed from `Z^[L]`) and gives `dZ^[L] = A^[L] − Y`.
    """

    sizes: tuple[int, ...]
    hidden: str | tuple[str, ...] = "relu"
    output: str = "sigmoid"
    loss: str | None = None

    def __post_init__(self):
        sizes = v.check_sizes(self.sizes)
        L = len(sizes) - 1
        if isinstance(self.hidden, str):
            hidden = (activations.canonical_name(self.hidden),) * (L - 1)
        else:
            hidden = tuple(activations.canonical_name(h) for h in self.hidden)
            if len(hidden) != L - 1:
                raise ValueError(
                    f"hidden names one activation per hidden layer: sizes {sizes} has {L - 1}, "
                    f"got {len(hidden)}: {hidden}")
        output = activations.canonical_name(self.output)
        loss = self.loss if self.loss is not None else losses.DEFAULT_LOSS.get(output)
        if loss is None:
            raise ValueError(f"no default loss for output {output!r}; pass loss=...")
        pair = losses.get(loss).output
        if pair is not None and pair != output:
            raise ValueError(
                f"loss {loss!r} needs a {pair!r} output layer (its values must be "
                f"probabilities), got output={output!r}")
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError(
                "a softmax output needs at least 2 units (with 1 it is constantly 1); use "
                "output='sigmoid' for binary classification")
        for name, value in (("sizes", sizes), ("hidden", hidden), ("output", output),
                            ("loss", loss)):
            object.__setattr__(self, name, value)

    @property
    def L(self) -> int:
        """Number of layers with parameters."""
        return len(self.sizes) - 1

    @property
    def activations(self) -> tuple[str, ...]:
        """Activation names of layers 1..L."""
        return (*self.hidden, self.output)

    # --- parameters ----------------------------------------------------------------------
    def init(self, key, *, method: str | None = None, bias: str = "zeros",
             dtype=jnp.float32) -> list[dict]:
        """Initial parameters: `[{"W": (n^[l], n^[l-1]), "b": (n^[l], 1)}, ...]`.

        Arguments:
            key: a `jax.random.key`.
            method: weight initializer, ``he``, ``glorot``, ``normal`` (0.01·N(0,1)) or
                ``zeros``; default He for ReLU-family layers and Glorot otherwise.
            bias: ``zeros`` (default) or ``normal`` (0.01·N(0,1)).
            dtype: ``jnp.float32`` (default) or ``jnp.float64`` (needs x64 enabled, e.g.
                inside ``with jax.enable_x64(True):``).
        """
        dtype = jnp.dtype(dtype)
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype float64 needs JAX's x64 mode: run inside `with jax.enable_x64(True):` "
                "or set jax.config.update('jax_enable_x64', True) first")
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        if bias not in initializers.BIAS_INITS:
            raise ValueError(f"unknown bias init {bias!r}; valid are {list(initializers.BIAS_INITS)}")
        if method is not None:
            initializers.get(method)
        params = []
        for l, key_l in enumerate(jax.random.split(key, self.L), start=1):
            n_l, n_prev = self.sizes[l], self.sizes[l - 1]
            init_W = initializers.get(method or initializers.default_for(self.activations[l - 1]))
            key_W, key_b = jax.random.split(key_l)
            W = init_W(key_W, n_l, n_prev, dtype)
            if bias == "zeros":
                b = jnp.zeros((n_l, 1), dtype)
            else:
                b = initializers.small_normal(key_b, n_l, 1, dtype)
            params.append({"W": W, "b": b})
        return params

    # --- forward propagation -------------------------------------------------------------
    def forward(self, params, X):
        """Ŷ = A^[L] of shape `(n_y, m)` for `X` of shape `(n_x, m)`."""
        v.check_params(self, params)
        X = v.check_X(self, X)
        return forward_cache(self, params, X)[0]

    def forward_cache(self, params, X):
        """`(Ŷ, cache)`; `cache[l-1]` is ``{"A_prev", "Z", "A"}`` of layer l (what backprop needs)."""
        v.check_params(self, params)
        X = v.check_X(self, X)
        return forward_cache(self, params, X)

    def cost(self, params, X, Y):
        """J = mean over the m columns of the per-example loss (a scalar)."""
        X, Y = self._check(params, X, Y)
        return cost(self, params, X, Y)

    def backprop(self, params, X, Y, *, shortcut: bool = True):
        """The hand-written backward pass: gradients of `cost`, the same tree as `params`.

        With ``shortcut=False`` the output layer takes the general chain
        `dZ^[L] = dA^[L] ⊙ g'(Z^[L])` even where `A^[L] − Y` would do (same result).
        """
        from .backprop import backprop

        X, Y = self._check(params, X, Y)
        return backprop(self, params, X, Y, shortcut=shortcut)

    def _check(self, params, X, Y):
        v.check_params(self, params)
        X = v.check_X(self, X)
        return X, v.check_Y(self, Y, X.shape[1])

    # --- the network protocol shared with `Sequential` (what fit, the checker and checkpoints
    # call): pure functions without checks, for compiled loops --------------------------------
    @property
    def input_shape(self) -> tuple:
        return (self.sizes[0],)

    @property
    def output_shape(self) -> tuple:
        return (self.sizes[-1],)

    def _check_params(self, params):
        v.check_params(self, params)

    def _check_X(self, X):
        return v.check_X(self, X)

    def _check_Y(self, Y, m):
        return v.check_Y(self, Y, m)

    def _forward(self, params, X):
        """`(Z^[L], A^[L], cache)`."""
        A, cache = forward_cache(self, params, X)
        return cache[-1]["Z"], A, cache

    def _loss(self, Z, A, Y):
        return jnp.mean(per_example_loss(self, Z, A, Y))

    def _cost(self, params, X, Y):
        return cost(self, params, X, Y)

    def _backward(self, params, cache, Z, A, Y, *, shortcut=True):
        from .backprop import backward

        return backward(self, params, cache, Y, shortcut=shortcut)

    def _backprop(self, params, X, Y, *, shortcut=True):
        from .backprop import backprop

        return backprop(self, params, X, Y, shortcut=shortcut)

    def _cost_and_grads(self, params, X, Y):
        Z, A, cache = self._forward(params, X)
        return self._loss(Z, A, Y), A, self._backward(params, cache, Z, A, Y)

    def n_params(self) -> int:
        """Number of parameters."""
        return sum(n * (p + 1) for p, n in zip(self.sizes[:-1], self.sizes[1:]))


def Perceptron(n_x: int, task: str = "classification") -> MLP:
    """The document's perceptron: one layer, `ŷ = g(w·x + b)`.

    ``task="regression"``: identity output and ½ squared error;
    ``task="classification"``: sigmoid output and binary cross-entropy.
    """
    outputs = {"regression": "identity", "classification": "sigmoid"}
    if task not in outputs:
        raise ValueError(f"unknown task {task!r}; valid are {sorted(outputs)}")
    return MLP(sizes=(n_x, 1), output=outputs[task])


# --- the pure functions behind the methods (no checks: for use inside compiled loops) -------
def layer_forward(W, b, A_prev, activation: str):
    """`Z = W A_prev + b`, `A = g(Z)`; `A_prev` `(n_prev, m)` -> `Z`, `A` `(n_l, m)`."""
    Z = linear_forward(W, b, A_prev)
    return Z, activations.get(activation).forward(Z)


def forward_cache(net: MLP, params, X):
    """Forward propagation returning `(A^[L], cache)` without input checks."""
    A = X
    cache = []
    for layer, name in zip(params, net.activations):
        A_prev = A
        Z, A = layer_forward(layer["W"], layer["b"], A_prev, name)
        cache.append({"A_prev": A_prev, "Z": Z, "A": A})
    return A, cache


def per_example_loss(net: MLP, Z_L, A_L, Y):
    """Loss of each of the m columns, shape `(m,)`, from the logits where that is stable."""
    loss = losses.get(net.loss)
    Y = v.binary_row(Y, (net.sizes[-1],), net.loss)  # 0/1 labels (m,) of one sigmoid unit
    if loss.from_logits is not None and loss.output == net.output:
        return loss.from_logits(Z_L, Y)
    return loss.forward(A_L, Y)


def cost(net: MLP, params, X, Y):
    """J = (1/m) Σ_i L(ŷ^(i), y^(i)) without input checks."""
    A_L, cache = forward_cache(net, params, X)
    return jnp.mean(per_example_loss(net, cache[-1]["Z"], A_L, Y))
