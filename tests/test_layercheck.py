"""Checks that name the wrong layer: `check_layer`, the per-layer reports of `check_gradients`,
and `fit(..., check_every=N)`.

Every verdict here is held to an outside fact: the planted bugs are written out below (a
dropped skip term, a scaled weight gradient, a derivative zeroed past |Z| > 3), and what the
checker compares against is `jax.vjp` of each layer's forward and finite differences.
"""

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet.layercheck import layer_name


# --- a user's layer: y = x + tanh(W x + b), with optional planted bugs ------------------------
@dataclass(frozen=True)
class ResidualTanh:
    bug: str = ""  # "" correct; "dx": drops the skip term from dx; "W": dW scaled by 1.5

    def init(self, key, in_shape, dtype=jnp.float32):
        n = in_shape[0]
        W = jax.random.normal(key, (n, n), dtype) / np.sqrt(n)
        return {"W": W, "b": jnp.zeros((n, 1), dtype)}, tuple(in_shape)

    def forward(self, params, x):
        H = jnp.tanh(params["W"] @ x + params["b"])
        return x + H, {"x": x, "H": H}

    def backward(self, params, cache, dy):
        dZ = dy * (1 - cache["H"] ** 2)
        dx = params["W"].T @ dZ + (0.0 if self.bug == "dx" else dy)
        dW = (dZ @ cache["x"].T) * (1.5 if self.bug == "W" else 1.0)
        return dx, {"W": dW, "b": jnp.sum(dZ, axis=1, keepdims=True)}


def issue_example(bug):
    net = jn.Sequential([jn.Dense(32, "relu"), ResidualTanh(bug), jn.Dense(10, "softmax")],
                        input_shape=(8,))
    params = net.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (8, 12))
    return net, params, X, jnp.arange(12) % 10


@pytest.mark.parametrize("bug,leaf,network_leaves", [("dx", "dx", "W[1], b[1]"),
                                                     ("W", "W", "W[2]")])
def test_a_wrong_user_layer_is_named_not_the_dense_below_it(bug, leaf, network_leaves):
    net, params, X, Y = issue_example(bug)
    report = jn.check_gradients(net, params, X, Y)
    assert not report.ok and report.first_wrong_layer == 1
    assert report.layers[1].failing == [leaf]
    assert report.layers[0].ok and report.layers[2].ok, str(report)  # the Dense layers are right
    head = str(report).splitlines()[0]
    assert f"FAILED: layer 2 ResidualTanh(bug='{bug}'): {leaf} (whole network: " \
           f"{network_leaves})" in head, head
    assert [r.title for r in report.layers] == [
        "layer 1 Dense(32, activation='relu')", f"layer 2 ResidualTanh(bug='{bug}')",
        "layer 3 Dense(10, activation='softmax')"]
    assert [leaf.name for leaf in report.layers[1].leaves] == ["dx", "W", "b"]
    # the output layer takes the A − Y shortcut: backward_from_dZ is checked as well
    assert [leaf.name for leaf in report.layers[2].leaves] == [
        "dx", "W", "b", "dx (from dZ)", "W (from dZ)", "b (from dZ)"]
    assert [leaf.layer for leaf in report.leaves] == ["Dense", "Dense", "ResidualTanh",
                                                      "ResidualTanh", "Dense", "Dense"]
    assert "W[2]  ResidualTanh" in str(report)
    again = jn.check_gradients(net, params, X, Y, per_layer="on_failure")  # the network fails
    assert again.first_wrong_layer == 1 and again.layers[1].failing == [leaf]


def test_mlp_reports_its_dense_layers():
    net = jn.MLP((3, 4, 2), hidden="tanh", output="sigmoid")
    params = net.init(jax.random.key(0), bias="normal")
    X = jax.random.normal(jax.random.key(1), (3, 5))
    report = jn.check_gradients(net, params, X, (X[:2] > 0).astype(jnp.float32))
    assert report.ok and [r.title for r in report.layers] == [
        "layer 1 Dense(4, activation='tanh')", "layer 2 Dense(2, activation='sigmoid')"]
    assert [leaf.name for leaf in report.leaves] == ["W[1]", "b[1]", "W[2]", "b[2]"]
    for per_layer in (False, "on_failure"):  # a passing network: no per-layer checks
        assert not jn.check_gradients(net, params, X, (X[:2] > 0).astype(jnp.float32),
                                      per_layer=per_layer).layers


def test_a_saturated_sigmoid_output_is_not_a_false_failure():
    # sigmoid(±30·z) rounds to 0 or 1: ∂L/∂A is not finite there, J and ∂J/∂Z are; the
    # checkers benchmark found the per-layer checks failing every leaf on the NaN.
    net = jn.MLP((3, 4, 1), hidden="tanh", output="sigmoid")
    params = net.init(jax.random.key(0), bias="normal")
    params[1] = {"W": params[1]["W"] * 300.0, "b": params[1]["b"]}
    X = jax.random.normal(jax.random.key(1), (3, 6))
    Y = (X[:1] > 0).astype(jnp.float32)
    with jax.enable_x64(True):
        A = np.asarray(net.forward(jax.tree.map(lambda a: a.astype(jnp.float64), params),
                                   X.astype(jnp.float64)))
    assert np.any((A == 0) | (A == 1))  # the point really is saturated
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok and report.first_wrong_layer is None, str(report)
    assert len(report.layers) == 2 and all(r.ok for r in report.layers)
    assert any("random upstream gradient" in n for n in report.layers[-1].notes)


# --- check_layer on the built-in layers --------------------------------------------------------
def tied_images():
    """(2, 4, 4, 2) images whose 2x2 windows hold ties of their maximum."""
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2))
    x[0, 0:2, 0:2, 0] = 3.0  # a whole window tied
    x[1, 2, 2:4, 1] = 3.5  # two entries tied at the maximum
    return x


CASES = {
    "Dense": (jn.Dense(3, "relu"), (4,), {}),
    "Conv2D": (jn.Conv2D(2, 3, padding="same", activation="tanh"), (2, 5, 5), {"m": 2}),
    "MaxPool2D ties": (jn.MaxPool2D(2), (2, 4, 4), {"x": tied_images()}),
    "LSTM": (jn.LSTM(3), (2, 4), {"m": 2}),
    "Embedding": (jn.Embedding(7, 3), (5,), {}),
    "LayerNorm": (jn.LayerNorm(), (4, 3), {}),
    "MultiHeadAttention": (jn.MultiHeadAttention(2, causal=True), (4, 3), {"m": 2}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_check_layer_passes_built_in_layers(name):
    layer, in_shape, kwargs = CASES[name]
    report = jn.check_layer(layer, in_shape, key=jax.random.key(3), **kwargs)
    assert report.ok, str(report)
    assert str(report).startswith(f"{layer_name(layer)}: gradient check")
    names = [leaf.name for leaf in report.leaves]
    assert names[0] == ("dx" if name != "Embedding" else "E")  # token ids have no dx
    if name == "MaxPool2D ties":
        assert report["dx"].kink_entries > 0  # the ties were found and judged


def test_layer_names():
    assert layer_name(jn.LSTM(64)) == "LSTM(64)"
    assert layer_name(ResidualTanh()) == "ResidualTanh()"
    assert layer_name(jn.Dense(3, "relu")) == "Dense(3, activation='relu')"


@dataclass(frozen=True)
class LayerNormNoMean(jn.LayerNorm):
    """LayerNorm whose dx forgets the mean term of the normalisation's Jacobian."""

    def backward(self, params, cache, dy):
        dx, grads = super().backward(params, cache, dy)
        g = params["gamma"].reshape(-1, *([1] * (dy.ndim - 1)))
        return dx + cache["rstd"] * jnp.mean(g * dy, axis=0, keepdims=True), grads


@dataclass(frozen=True)
class DenseOneEntry(jn.Dense):
    """Dense whose dW is off in one entry by a relative 1e-6."""

    def backward(self, params, cache, dA):
        dA_prev, g = super().backward(params, cache, dA)
        return dA_prev, {"W": g["W"].at[0, 1].multiply(1 + 1e-6), "b": g["b"]}


def test_planted_bugs_in_built_in_layers_fail_and_name_the_leaf():
    bad = jn.check_layer(LayerNormNoMean(), (4, 3), key=jax.random.key(3))
    assert bad.failing == ["dx"] and str(bad).startswith("LayerNormNoMean(): gradient check")
    bad = jn.check_layer(DenseOneEntry(3, "tanh"), (4,), key=jax.random.key(3))
    assert bad.failing == ["W"] and bad["W"].worst_index == (0, 1)


def test_check_layer_takes_given_params_x_and_dy():
    layer = ResidualTanh()
    W = jnp.eye(2) * 0.5
    x = jnp.array([[1.0, -2.0], [0.5, 0.0]])
    dy = jnp.ones((2, 2))
    report = jn.check_layer(layer, (2,), params={"W": W, "b": jnp.zeros((2, 1))}, x=x, dy=dy)
    assert report.ok and report["dx"].shape == (2, 2)


# --- clear errors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoDtype:
    def init(self, key, in_shape):
        return {}, in_shape

    def forward(self, params, x):
        return x, {}

    def backward(self, params, cache, dy):
        return dy, {}


@dataclass(frozen=True)
class WrongDx(NoDtype):
    def init(self, key, in_shape, dtype=jnp.float32):
        return {"w": jnp.ones((1,), dtype)}, in_shape

    def forward(self, params, x):
        return jnp.sum(params["w"]) * x, {}

    def backward(self, params, cache, dy):
        return dy[:1], {"w": jnp.zeros((1,))}


@dataclass(frozen=True)
class MissingLeaf(WrongDx):
    def backward(self, params, cache, dy):
        return dy, {}


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="layer instance"):
        jn.check_layer(jn.Dense, (3,))
    with pytest.raises(ValueError, match="in_shape"):
        jn.check_layer(jn.Dense(2), (3, -1))
    with pytest.raises(ValueError, match="m must be"):
        jn.check_layer(jn.Dense(2), (3,), m=0)
    with pytest.raises(ValueError, match=r"x must have shape \(3, 'm'\)"):
        jn.check_layer(jn.Dense(2), (3,), x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dy must have the shape"):
        jn.check_layer(jn.Dense(2), (3,), dy=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="unknown option"):
        jn.check_layer(jn.Dense(2), (3,), names=["a"])
    with pytest.raises(TypeError, match=r"NoDtype\(\): init must accept dtype"):
        jn.check_layer(NoDtype(), (3,))
    with pytest.raises(ValueError, match=r"WrongDx\(\): backward returned dx of shape \(1, 3\)"):
        jn.check_layer(WrongDx(), (2,))
    with pytest.raises(ValueError, match=r"keys of params \['w'\], got \[\]"):
        jn.check_layer(MissingLeaf(), (2,))


# --- along the training trajectory --------------------------------------------------------------
@dataclass(frozen=True)
class ClippedLinear:
    """y = W x + b whose backward zeroes dZ where |Z| > 3: right at small outputs only."""

    n: int

    def init(self, key, in_shape, dtype=jnp.float32):
        W = 0.1 * jax.random.normal(key, (self.n, in_shape[0]), dtype)
        return {"W": W, "b": jnp.zeros((self.n, 1), dtype)}, (self.n,)

    def forward(self, params, x):
        Z = params["W"] @ x + params["b"]
        return Z, {"x": x, "Z": Z}

    def backward(self, params, cache, dy):
        dZ = jnp.where(jnp.abs(cache["Z"]) > 3, 0.0, dy)
        return params["W"].T @ dZ, {"W": dZ @ cache["x"].T, "b": jnp.sum(dZ, 1, keepdims=True)}


def clipped_problem():
    X = jax.random.normal(jax.random.key(1), (3, 32))
    Y = 10 * X[:1]  # the fit needs outputs |Z| > 3
    net = jn.Sequential([jn.Dense(4, "tanh"), ClippedLinear(1)], input_shape=(3,))
    return net, net.init(jax.random.key(0)), X, Y


def test_check_every_catches_a_bug_that_shows_only_at_trained_parameters():
    net, params, X, Y = clipped_problem()
    assert jn.check_gradients(net, params, X[:, :8], Y[:, :8]).ok  # at init every |Z| < 3
    with pytest.warns(jn.GradientCheckWarning, match="failed its check after step"):
        out, history = jn.fit(net, params, X, Y, steps=300, learning_rate=0.05,
                              gradients="manual", check_every=4, progress=False)
    steps = history["steps_run"]
    assert history["stopped"] == "gradient_check_failed" and steps % 4 == 0 and 4 < steps < 300
    report = history["gradient_check"]
    assert report.first_wrong_layer == 1 and "layer 2 ClippedLinear(1)" in str(report)
    assert str(report).startswith(f"step {steps}: gradient check")
    # the returned parameters are where the bug shows: some |Z| > 3 on the checked columns
    Z = out[1]["W"] @ net.layers[0].forward(out[0], X[:, :8])[0] + out[1]["b"]
    assert float(jnp.max(jnp.abs(Z))) > 3


def test_check_every_passes_a_correct_run_and_needs_manual_gradients():
    net, params, X, Y = clipped_problem()
    Y = Y / 10  # outputs |Z| < 3 fit these targets: the bug never shows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, history = jn.fit(net, params, X, Y, steps=300, learning_rate=0.05,
                              gradients="manual", check_every=100, progress=False)
    assert history["stopped"] == "steps" and "gradient_check" not in history
    assert float(jnp.max(jnp.abs(net.forward(out, X[:, :8])))) < 3
    with pytest.raises(ValueError, match="gradients='manual'"):
        jn.fit(net, params, X, Y, steps=6, learning_rate=0.1, check_every=3)
    with pytest.raises(ValueError, match="check_every must be"):
        jn.fit(net, params, X, Y, steps=6, learning_rate=0.1, gradients="manual", check_every=0)


def test_cli_has_check_every():
    from jaxnet.cli import build_parser

    args = build_parser().parse_args(["train", "--check-every", "5", "--gradients", "manual"])
    assert args.check_every == 5
    assert "--check-every" in build_parser()._subparsers._group_actions[0].choices[
        "train"].format_help()
