"""A layer of the user's own is first-class: it registers, saves, loads (in a fresh process and
through `jaxnet evaluate`), breaks the protocol with an error naming the layer and the rule, and
as an output layer without `backward_from_dZ` backpropagates like autodiff says."""

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, assert_tree_close

import jaxnet as jn
from jaxnet import cli


@pytest.fixture
def registry():
    """The layer registry, restored after the test."""
    saved = dict(jn.layers.LAYER_TYPES)
    yield jn.layers.LAYER_TYPES
    jn.layers.LAYER_TYPES.clear()
    jn.layers.LAYER_TYPES.update(saved)


def user_module(tmp_path, monkeypatch, name="mylayers"):
    """Write `name`.py (a module of the user's own with a registered ResidualTanh), put its
    folder on sys.path, import it."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(RESIDUAL))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return __import__(name)


RESIDUAL = '''
from dataclasses import dataclass

import jax
import jax.numpy as jnp

import jaxnet as jn


@jn.layers.register
@dataclass(frozen=True)
class ResidualTanh:
    """y = x + tanh(W x + b): W (n, n), b (n, 1)."""

    scale: float = 0.5

    def init(self, key, in_shape, dtype=jnp.float32):
        n = in_shape[0]
        W = self.scale * jax.random.normal(key, (n, n), dtype)
        return {"W": W, "b": jnp.zeros((n, 1), dtype)}, (n,)

    def forward(self, params, x):
        T = jnp.tanh(params["W"] @ x + params["b"])
        return x + T, (x, T)

    def backward(self, params, cache, dy):
        x, T = cache
        dZ = dy * (1 - T ** 2)
        return dy + params["W"].T @ dZ, {"W": dZ @ x.T, "b": dZ.sum(axis=1, keepdims=True)}
'''


# --- register --------------------------------------------------------------------------------
def test_register_as_decorator_and_its_errors(registry):
    @jn.layers.register
    @dataclass(frozen=True)
    class Ident:
        def init(self, key, in_shape, dtype=jnp.float32):
            return {}, in_shape

        def forward(self, params, x):
            return x, None

        def backward(self, params, cache, dy):
            return dy, {}

    assert isinstance(Ident, type) and registry["Ident"] is Ident
    assert jn.layers.register(Ident) is Ident  # the same class again: fine
    assert jn.layers.register(name="Ident2")(Ident) is Ident and registry["Ident2"] is Ident
    with pytest.raises(TypeError, match="pass the class, not an instance"):
        jn.layers.register(Ident())
    with pytest.raises(TypeError, match="missing backward"):
        jn.layers.register(type("NoBackward", (), {"init": lambda s: 0, "forward": lambda s: 0}))
    Dense = type("Dense", (Ident,), {})  # a user class that shares a built-in's name
    with pytest.raises(ValueError, match=r"'Dense' is already registered to "
                                         r"jaxnet.layers.dense.Dense.*name=\.\.\."):
        jn.layers.register(Dense)
    assert registry["Dense"] is jn.Dense
    with pytest.raises(ValueError, match="must be a Python identifier"):
        jn.layers.register(Ident, name="my layer")


# --- save and load ---------------------------------------------------------------------------
def test_registered_layer_round_trips_and_loads_in_a_fresh_process(tmp_path, monkeypatch,
                                                                   registry):
    mod = user_module(tmp_path, monkeypatch)
    net = jn.Sequential([mod.ResidualTanh(0.3), jn.Dense(3, "softmax")], input_shape=(4,))
    params = net.init(jax.random.key(0))
    path = jn.save(tmp_path / "model.npz", net, params, history={"dataset": "iris", "seed": 0})
    layer_meta = jn.load_checkpoint(path).metadata["architecture"]["layers"][0]
    assert layer_meta == {"type": "ResidualTanh", "module": "mylayers",
                          "qualname": "ResidualTanh", "options": {"scale": 0.3}}
    # As a fresh process: neither registered nor imported; load imports the recorded module.
    del registry["ResidualTanh"], sys.modules["mylayers"]
    net2, params2 = jn.load(path)
    assert net2.layers[0] == sys.modules["mylayers"].ResidualTanh(0.3) and net2.layers[1] == net.layers[1]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(a, b)
    # jaxnet evaluate in a fresh process finds mylayers.py in the current directory
    proc = subprocess.run([sys.executable, "-m", "jaxnet", "evaluate", "model.npz"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "ResidualTanh" in proc.stdout and "accuracy" in proc.stdout


def test_load_says_why_a_layer_type_is_unknown(tmp_path, monkeypatch, registry):
    mod = user_module(tmp_path, monkeypatch, name="gone")
    net = jn.Sequential([mod.ResidualTanh()], input_shape=(2,))
    path = jn.save(tmp_path / "m.npz", net, net.init(jax.random.key(0)))
    del registry["ResidualTanh"], sys.modules["gone"]
    (tmp_path / "gone.py").unlink()
    with pytest.raises(jn.CheckpointError, match=r"unknown layer type 'ResidualTanh'.*"
                       r"gone.ResidualTanh: importing it failed \(ModuleNotFoundError"):
        jn.load(path)


def test_cli_import_flag_registers_a_layer_defined_in_a_script(tmp_path, monkeypatch, registry,
                                                              capsys):
    # The class as a script defines it: its module is __main__, which cannot be imported again.
    script = {"__name__": "__main__"}
    exec(RESIDUAL, script)
    net = jn.Sequential([script["ResidualTanh"](), jn.Dense(3, "softmax")], input_shape=(4,))
    jn.save(tmp_path / "m.npz", net, net.init(jax.random.key(0)), history={"dataset": "iris"})
    del registry["ResidualTanh"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # restores sys.path after cli appends the cwd
    assert cli.main(["evaluate", "m.npz"]) == 2
    assert "defined in the script that saved the checkpoint (__main__)" in capsys.readouterr().err
    assert cli.main(["evaluate", "m.npz", "--import", "nosuchmodule"]) == 2
    assert "--import nosuchmodule: cannot import it (ModuleNotFoundError" in \
        capsys.readouterr().err
    # --import MODULE (from the current directory) registers it; then the checkpoint loads
    (tmp_path / "scriptlayers.py").write_text(RESIDUAL)
    monkeypatch.delitem(sys.modules, "scriptlayers", raising=False)
    cli.import_layers(["scriptlayers"])
    assert jn.load(tmp_path / "m.npz")[0].layers[0] == sys.modules["scriptlayers"].ResidualTanh()


class NotADataclass:
    def init(self, key, in_shape, dtype=jnp.float32):
        return {}, in_shape

    def forward(self, params, x):
        return x, None

    def backward(self, params, cache, dy):
        return dy, {}

    def __repr__(self):
        return "NotADataclass()"


@dataclass(frozen=True)
class Options(NotADataclass):
    value: object = 1.0
    doubled: bool = False

    def __post_init__(self):
        if self.doubled:  # changes a field: rebuilt from what is stored, it is another layer
            object.__setattr__(self, "value", 2 * self.value)


@pytest.mark.parametrize("layer,register,error", [
    (Options(), False, r"layer 1 \(.*Options.*\) cannot be saved: its class .*Options is not "
                r"registered.*@jn.layers.register"),
    (NotADataclass(), True, r"layer 1 \(NotADataclass\(\)\) cannot be saved: .*not a dataclass; "
                      r"make the class a @dataclass\(frozen=True\)"),
    (Options(value=np.float32(1)), True, r"field 'value' = .* is not JSON-serialisable"),
    (Options(value=frozenset({1, 2})), True, r"field 'value' = frozenset\(\{1, 2\}\) is not JSON-serialisable"),
    (Options(value=1.5, doubled=True), True, r"rebuilt from its fields .* is .*value=6.0.*not the "
                                        r"same layer"),
])
def test_save_refuses_a_layer_it_could_not_rebuild_and_writes_nothing(tmp_path, registry,
                                                                     layer, register, error):
    if register:
        jn.layers.register(type(layer))
    net = jn.Sequential([jn.Dense(2), layer], input_shape=(3,))
    with pytest.raises(ValueError, match=error):
        jn.save(tmp_path / "out" / "m.npz", net, net.init(jax.random.key(0)))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- protocol violations ---------------------------------------------------------------------
@dataclass(frozen=True)
class Affine:
    """`y = W x + b` with a planted protocol violation named by `bug`."""

    n: int
    bug: str = ""

    def init(self, key, in_shape, dtype=jnp.float32):
        params = {"W": jax.random.normal(key, (self.n, in_shape[0]), dtype),
                  "b": jnp.zeros((self.n, 1), dtype)}
        if self.bug == "init arity":
            return params
        if self.bug == "init dtype":
            return {k: v.astype(jnp.float16) for k, v in params.items()}, (self.n,)
        return params, (self.n,)

    def forward(self, params, x):
        y = params["W"] @ x + params["b"]
        if self.bug == "forward arity":
            return y
        if self.bug == "forward shape":
            return y[:, None], x
        return y, x

    def backward(self, params, x, dy):
        grads = {"W": dy @ x.T, "b": dy.sum(axis=1, keepdims=True)}
        dx = params["W"].T @ dy
        if self.bug == "backward arity":
            return dx, grads, None
        if self.bug == "dx shape":
            return dx[:, :1], grads
        if self.bug == "dx None":
            return None, grads
        if self.bug == "leaf missing":
            return dx, {"W": grads["W"]}
        if self.bug == "leaf extra":
            return dx, {**grads, "c": grads["b"]}
        if self.bug == "leaf shape":
            return dx, {"W": grads["W"].T, "b": grads["b"]}
        if self.bug == "grads not a dict":
            return dx, [grads["W"], grads["b"]]
        return dx, grads


@dataclass(frozen=True)
class NoDtype(Affine):
    def init(self, key, in_shape):  # written from an old docstring: no dtype keyword
        return super().init(key, in_shape)


BW = r"backward\(params, cache, dy\) -> \(dx, grads\): "
BUGS = {  # the bug -> what the error says (after "layer 1 (<repr>) breaks the layer protocol: ")
    "init arity": r"init\(key, in_shape, dtype\) -> \(params, out_shape\) must return a pair; "
                  r"it returned a dict",
    "init dtype": r"init\(key, in_shape, dtype\) must make its parameters in that dtype; params\['W'\] has dtype float16",
    "forward arity": r"forward\(params, x\) -> \(y, cache\) must return a pair; it returned an "
                     r"array of shape \(2, 5\)",
    "forward shape": r"forward's y must have init's out_shape \(2,\) plus the examples: shape \(2, 5\); "
                     r"it is an array of shape \(2, 1, 5\)",
    "backward arity": r"backward\(params, cache, dy\) -> \(dx, grads\) must return a pair; it "
                      r"returned a tuple of 3",
    "dx shape": BW + r"dx must have the input's shape \(3, 5\); it is an array of shape \(3, 1\)",
    "dx None": BW + r"dx must be the gradient of the input, shape \(3, 5\) .*; it is None",
    "leaf missing": BW + r"grads must have exactly the keys of params \['W', 'b'\]; missing \['b'\], "
                    r"extra \[\]",
    "leaf extra": BW + r"grads must have exactly the keys .*; missing \[\], extra \['c'\]",
    "leaf shape": BW + r"grads\['W'\] must have the shape of params\['W'\] \(2, 3\); it is an array "
                  r"of shape \(3, 2\)",
    "grads not a dict": BW + r"grads must be a dict like params",
}


@pytest.mark.parametrize("bug", BUGS)
def test_protocol_violations_name_the_layer_and_the_rule(bug):
    layer = Affine(2, bug=bug)
    name = rf"layer 1 \(Affine\(n=2, bug='{bug}'\)\) breaks the layer protocol: "
    X, Y = jnp.ones((4, 5)), jnp.zeros((2, 5))
    with pytest.raises(ValueError, match=name + BUGS[bug]):
        net = jn.Sequential([jn.Dense(3, "tanh"), layer], input_shape=(4,))
        params = net.init(jax.random.key(0))
        net.cost(params, X, Y)  # forward, traced
        net.backprop(params, X, Y)  # backward, traced


def test_init_without_dtype_is_named_at_construction():
    with pytest.raises(ValueError, match=r"layer 0 \(NoDtype\(n=2, bug=''\)\) breaks the layer "
                                         r"protocol: init\(key, in_shape, dtype\) .* must take a "
                                         r"dtype keyword .*its init\(key, in_shape\) has none"):
        jn.Sequential([NoDtype(2)], input_shape=(4,))


def test_unhashable_layer_is_named():
    Mutable = type("Mutable", (NotADataclass,), {"__hash__": None})  # as a non-frozen dataclass
    with pytest.raises(ValueError, match=r"layer 0 \(NotADataclass\(\)\) breaks the layer "
                                         r"protocol: a layer must be hashable"):
        jn.Sequential([Mutable()], input_shape=(4,))


# --- an output layer without backward_from_dZ ------------------------------------------------
@dataclass(frozen=True)
class SigmoidOut:
    """`A = σ(W x + b)` as a user writes it: an activation field, no backward_from_dZ."""

    n: int
    activation: str = "sigmoid"

    def init(self, key, in_shape, dtype=jnp.float32):
        return {"W": jax.random.normal(key, (self.n, in_shape[0]), dtype),
                "b": jnp.full((self.n, 1), 0.1, dtype)}, (self.n,)

    def forward(self, params, x):
        Z = params["W"] @ x + params["b"]
        A = 1 / (1 + jnp.exp(-Z))
        return A, {"x": x, "Z": Z, "A": A}

    def backward(self, params, cache, dA):
        dZ = dA * cache["A"] * (1 - cache["A"])
        return params["W"].T @ dZ, {"W": dZ @ cache["x"].T, "b": dZ.sum(axis=1, keepdims=True)}


def test_sigmoid_output_without_backward_from_dZ_backpropagates_like_autodiff():
    net = jn.Sequential([jn.Dense(4, "tanh"), SigmoidOut(2)], input_shape=(3,))
    assert net.loss == "binary_cross_entropy"

    def cost(params, X, Y):  # the network's cost written independently: BCE of a sigmoid MLP
        A1 = jnp.tanh(params[0]["W"] @ X + params[0]["b"])
        A2 = jax.nn.sigmoid(params[1]["W"] @ A1 + params[1]["b"])
        return -jnp.mean(jnp.sum(Y * jnp.log(A2) + (1 - Y) * jnp.log(1 - A2), axis=0))

    rng = np.random.default_rng(0)
    draw = lambda *shape: rng.standard_normal(shape)
    params = [{"W": draw(4, 3), "b": draw(4, 1)}, {"W": draw(2, 4), "b": draw(2, 1)}]
    X, Y = draw(3, 7), (draw(2, 7) > 0).astype(np.float64)
    with jax.enable_x64(True):  # compiled: eager float64 ops compile one by one
        assert float(jax.jit(net.cost)(params, X, Y)) == \
            pytest.approx(float(cost(params, X, Y)), rel=1e-12)
        assert_tree_close(jax.jit(net.backprop)(params, X, Y), jax.jit(jax.grad(cost))(params, X, Y),
                          1e-10)
    # training with the hand-written gradients: three SGD steps, as autodiff of `cost` takes them
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    X32, Y32 = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
    trained, _ = jn.fit(net, p32, X32, Y32, steps=3, learning_rate=0.5, gradients="manual",
                        progress=False)
    step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - 0.5 * g, p, jax.grad(cost)(p, X32, Y32)))
    want = step(step(step(p32)))
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_starting_from_the_logits_needs_backward_from_dZ():
    D = jn.Sequential([jn.Dense(4, "tanh"), SigmoidOut(1)], input_shape=(3,))
    with pytest.raises(ValueError, match=r"starts the discriminator's backward pass from its "
                                         r"logits' gradient .*SigmoidOut\(n=1.*has no "
                                         r"backward_from_dZ\(params, cache, dZ\); add it"):
        jn.GAN(jn.Sequential([jn.Dense(3)], input_shape=(2,)), D)
    params = D.init(jax.random.key(0))
    _, caches = D.forward_cache(params, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="needs the output layer's backward_from_dZ"):
        D.backward_chain(params, caches, jnp.ones((1, 2)), from_logits=True)
