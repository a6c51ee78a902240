"""The document's worked formulas (`jaxnet.formulas`) against independent values, in float64.

Oracles: numbers worked by hand (literals, with the arithmetic in the comments), the chain rule
written again in numpy here, numpy central differences of a numpy forward, and jax.grad of
losses written out in this file.  Nothing is compared only with another jaxnet function.
"""

import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import formulas as F

NAMES = ["w11", "w21", "w12", "w22", "b1", "b2", "w1", "w2", "b"]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def floats(values):
    return [float(v) for v in values]


# --- regression with a perceptron: ŷ = w1 x1 + w2 x2 + b, L = ½ (y − ŷ)² ---------------------
# w = (0.3, −1.2), b = 0.1, x = (0.7, −0.4), y = 1:
#   ŷ = 0.21 + 0.48 + 0.1 = 0.79,  L = ½ · 0.21² = 0.02205,  dL/dŷ = −(1 − 0.79) = −0.21,
#   dL/dw1 = −0.21 · 0.7 = −0.147,  dL/dw2 = −0.21 · (−0.4) = 0.084,  dL/db = −0.21;
#   α = 0.5: w1 = 0.3 + 0.0735 = 0.3735, w2 = −1.2 − 0.042 = −1.242, b = 0.1 + 0.105 = 0.205.
REG = dict(w1=0.3, w2=-1.2, b=0.1, x1=0.7, x2=-0.4, y=1.0)


def test_regression_hand_worked():
    w1, w2, b, x1, x2, y = REG.values()
    assert float(F.regression_predict(w1, w2, b, x1, x2)) == pytest.approx(0.79, rel=1e-15)
    assert float(F.squared_error(0.79, y)) == pytest.approx(0.02205, rel=1e-13)
    np.testing.assert_allclose(floats(F.regression_gradients(w1, w2, b, x1, x2, y)),
                               [-0.147, 0.084, -0.21], rtol=1e-13)
    np.testing.assert_allclose(floats(F.regression_update(w1, w2, b, x1, x2, y, 0.5)),
                               [0.3735, -1.242, 0.205], rtol=1e-14)


@pytest.mark.parametrize("w1,w2,b,x1,x2,y", [(-0.8, 0.5, -0.3, -1.1, 2.0, 0.0),
                                            (1.5, 0.2, 0.4, 0.9, 0.6, 1.0)])
def test_regression_against_jax_grad_of_the_written_out_loss(w1, w2, b, x1, x2, y):
    loss = lambda w1, w2, b: 0.5 * (y - (w1 * x1 + w2 * x2 + b)) ** 2
    auto = jax.grad(loss, argnums=(0, 1, 2))(w1, w2, b)
    np.testing.assert_allclose(floats(F.regression_gradients(w1, w2, b, x1, x2, y)),
                               floats(auto), rtol=1e-13)
    alpha = 0.05
    np.testing.assert_allclose(floats(F.regression_update(w1, w2, b, x1, x2, y, alpha)),
                               [p - alpha * float(g) for p, g in zip((w1, w2, b), auto)],
                               rtol=1e-13)


# --- classification with a perceptron: ŷ = σ(w1 x1 + w2 x2 + b), L = BCE ---------------------
def test_classification_hand_worked():
    # z = 0.5 − 0.5 + 0 = 0: ŷ = ½, y = 1: L = log 2; dL/dw = −(1 − ½)(x1, x2, 1) = −½ each;
    # α = 0.1: (0.55, −0.45, 0.05).  Both the chain form and the simplified form.
    args = (0.5, -0.5, 0.0, 1.0, 1.0, 1.0)
    assert float(F.classification_predict(*args[:5])) == 0.5
    assert float(F.binary_cross_entropy(0.5, 1.0)) == pytest.approx(math.log(2), rel=1e-15)
    for grads in (F.classification_gradients(*args), F.classification_gradients_chain(*args)):
        np.testing.assert_allclose(floats(grads), [-0.5, -0.5, -0.5], rtol=1e-15)
    np.testing.assert_allclose(floats(F.classification_update(*args, 0.1)), [0.55, -0.45, 0.05],
                               rtol=1e-14)
    # z = ln 3 · 1 + 0 · 2 + 0: ŷ = 3/4, y = 0: L = −log ¼ = log 4; dL/dw = ¾ (x1, x2, 1)
    args = (math.log(3.0), 0.0, 0.0, 1.0, 2.0, 0.0)
    assert float(F.classification_predict(*args[:5])) == pytest.approx(0.75, rel=1e-15)
    assert float(F.binary_cross_entropy(0.75, 0.0)) == pytest.approx(math.log(4), rel=1e-15)
    for grads in (F.classification_gradients(*args), F.classification_gradients_chain(*args)):
        np.testing.assert_allclose(floats(grads), [0.75, 1.5, 0.75], rtol=1e-14)


@pytest.mark.parametrize("w1,w2,b,x1,x2,y", [(0.3, -1.2, 0.1, 0.7, -0.4, 1.0),
                                            (-0.8, 0.5, -0.3, -1.1, 2.0, 0.0)])
def test_classification_against_jax_grad_of_the_written_out_loss(w1, w2, b, x1, x2, y):
    def loss(w1, w2, b):
        y_hat = 1 / (1 + jnp.exp(-(w1 * x1 + w2 * x2 + b)))
        return -y * jnp.log(y_hat) - (1 - y) * jnp.log(1 - y_hat)

    auto = floats(jax.grad(loss, argnums=(0, 1, 2))(w1, w2, b))
    np.testing.assert_allclose(floats(F.classification_gradients_chain(w1, w2, b, x1, x2, y)),
                               auto, rtol=1e-12)
    np.testing.assert_allclose(floats(F.classification_gradients(w1, w2, b, x1, x2, y)), auto,
                               rtol=1e-12)
    new = floats(F.classification_update(w1, w2, b, x1, x2, y, 0.1))
    np.testing.assert_allclose(new, [p - 0.1 * g for p, g in zip((w1, w2, b), auto)], rtol=1e-12)


# --- the two-layer network ------------------------------------------------------------------
def test_relu_and_its_derivative_at_hand_picked_points():
    assert float(F.relu_prime(0.0)) == 0.0  # g'(0) = 0, as jaxnet's ReLU
    assert float(F.relu_prime(-0.0)) == 0.0
    assert float(F.relu_prime(1e-300)) == 1.0 and float(F.relu_prime(-2.0)) == 0.0
    assert float(F.relu(-3.0)) == 0.0 and float(F.relu(2.5)) == 2.5
    assert float(F.sigmoid(0.0)) == 0.5
    assert float(jax.grad(F.relu)(0.0)) == 0.0  # autodiff makes the same choice at the kink


def np_two_layer(p, x1, x2, y, g=lambda z: max(z, 0.0), g_prime=lambda z: float(z > 0)):
    """(ŷ, L, gradients) by the chain rule, in plain Python floats."""
    z1 = p["w11"] * x1 + p["w21"] * x2 + p["b1"]  # w_ij: input i -> hidden node j
    z2 = p["w12"] * x1 + p["w22"] * x2 + p["b2"]
    a1, a2 = g(z1), g(z2)
    y_hat = sig(p["w1"] * a1 + p["w2"] * a2 + p["b"])
    L = -y * math.log(y_hat) - (1 - y) * math.log(1 - y_hat)
    dz = y_hat - y  # dL/dŷ · dŷ/dz = −(y − ŷ)/(ŷ(1 − ŷ)) · ŷ(1 − ŷ)
    dz1, dz2 = dz * p["w1"] * g_prime(z1), dz * p["w2"] * g_prime(z2)
    grads = {"w11": dz1 * x1, "w21": dz1 * x2, "b1": dz1, "w12": dz2 * x1, "w22": dz2 * x2,
             "b2": dz2, "w1": dz * a1, "w2": dz * a2, "b": dz}
    return y_hat, L, grads


# p below, x = (2, 1), y = 1:  z1 = 2 − 1 + 0 = 1, z2 = 1 + 2 − 1 = 2, a = (1, 2),
# z = 1 − 4 + 0.5 = −2.5, ŷ = σ(−2.5);  with d = σ(2.5), dL/dz = ŷ − 1 = −d,
# dz1 = −d · 1 · 1 = −d, dz2 = −d · (−2) · 1 = 2d.
HAND = dict(w11=1.0, w21=-1.0, w12=0.5, w22=2.0, b1=0.0, b2=-1.0, w1=1.0, w2=-2.0, b=0.5)


def test_two_layer_hand_worked():
    d = sig(2.5)
    assert float(F.two_layer_predict(HAND, 2.0, 1.0)) == pytest.approx(sig(-2.5), rel=1e-14)
    assert float(F.two_layer_loss(HAND, 2.0, 1.0, 1.0)) == pytest.approx(-math.log(sig(-2.5)),
                                                                         rel=1e-14)
    want = {"w11": -2 * d, "w21": -d, "b1": -d, "w12": 4 * d, "w22": 2 * d, "b2": 2 * d,
            "w1": -d, "w2": -2 * d, "b": -d}
    got = F.two_layer_gradients(HAND, 2.0, 1.0, 1.0)
    assert set(got) == set(want)
    for name in want:
        assert float(got[name]) == pytest.approx(want[name], rel=1e-14), name
    new = F.two_layer_update(HAND, 2.0, 1.0, 1.0, 0.1)
    for name in want:
        assert float(new[name]) == pytest.approx(HAND[name] - 0.1 * want[name], rel=1e-14), name


def test_two_layer_at_a_relu_kink():
    # b1 = −1 puts z1 = 2 − 1 − 1 = 0 exactly: a1 = 0 and g'(0) = 0, so node 1 gets no gradient
    p = {**HAND, "b1": -1.0}
    got = F.two_layer_gradients(p, 2.0, 1.0, 1.0)
    for name in ("w11", "w21", "b1", "w1"):
        assert float(got[name]) == 0.0, name
    d = sig(3.5)  # z = 0 − 4 + 0.5 = −3.5
    assert float(got["w22"]) == pytest.approx(2 * d, rel=1e-14)
    # and jax.grad through the module's own loss makes the same choice there
    auto = jax.grad(F.two_layer_loss)(p, 2.0, 1.0, 1.0)
    for name in NAMES:
        assert float(auto[name]) == pytest.approx(float(got[name]), rel=1e-14, abs=0.0), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_layer_against_numpy_chain_rule_and_differences(seed):
    rng = np.random.default_rng(seed)
    p = dict(zip(NAMES, rng.normal(size=9).tolist()))
    x1, x2 = rng.normal(size=2).tolist()
    y = float(seed % 2)
    y_hat, L, want = np_two_layer(p, x1, x2, y)
    assert float(F.two_layer_predict(p, x1, x2)) == pytest.approx(y_hat, rel=1e-14)
    assert float(F.two_layer_loss(p, x1, x2, y)) == pytest.approx(L, rel=1e-13)
    got = F.two_layer_gradients(p, x1, x2, y)
    for name in NAMES:
        assert float(got[name]) == pytest.approx(want[name], rel=1e-12, abs=1e-15), name
        up, down = dict(p), dict(p)
        up[name] += 1e-6
        down[name] -= 1e-6
        fd = (np_two_layer(up, x1, x2, y)[1] - np_two_layer(down, x1, x2, y)[1]) / 2e-6
        assert float(got[name]) == pytest.approx(fd, rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("name,g,g_prime", [
    ("tanh", math.tanh, lambda z: 1 - math.tanh(z) ** 2),
    ("sigmoid", sig, lambda z: sig(z) * (1 - sig(z)))])
def test_two_layer_with_other_hidden_activations(name, g, g_prime):
    p = dict(zip(NAMES, np.random.default_rng(9).normal(size=9).tolist()))
    jg = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[name]
    jg_prime = {"tanh": lambda z: 1 - jnp.tanh(z) ** 2,
                "sigmoid": lambda z: jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z))}[name]
    _, _, want = np_two_layer(p, 0.4, -0.9, 1.0, g, g_prime)
    got = F.two_layer_gradients(p, 0.4, -0.9, 1.0, jg, jg_prime)
    for n in NAMES:
        assert float(got[n]) == pytest.approx(want[n], rel=1e-12, abs=1e-15), n


def test_two_layer_to_params_puts_every_scalar_where_w_ij_says():
    """`W1[j-1, i-1] = w_ij` (node j, input i), `b1 = [b1, b2]`, `W2 = [w1, w2]`, `b2 = [b]`."""
    p = dict(zip(NAMES, [11.0, 21.0, 12.0, 22.0, 1.0, 2.0, 31.0, 32.0, 3.0]))
    (l1, l2) = F.two_layer_to_params(p)
    assert l1["W"].shape == (2, 2) and l1["b"].shape == (2, 1)
    assert l2["W"].shape == (1, 2) and l2["b"].shape == (1, 1)
    for i in (1, 2):
        for j in (1, 2):
            assert float(l1["W"][j - 1, i - 1]) == p[f"w{i}{j}"], (i, j)
    assert floats(l1["b"][:, 0]) == [1.0, 2.0]
    assert floats(l2["W"][0]) == [31.0, 32.0] and float(l2["b"][0, 0]) == 3.0


def test_two_layer_to_params_gives_the_mlp_the_scalar_network():
    """MLP((2, 2, 1)) with the nine scalars: ŷ of the scalar formula (written here) on several
    examples with both hidden nodes active, and every one of the nine gradients."""
    p = dict(zip(NAMES, [0.8, 0.3, 0.5, 1.1, 0.2, 0.4, 1.3, -0.7, 0.1]))
    xs = [(0.7, -0.3), (1.5, 0.9), (-0.2, 1.4), (2.0, 0.5)]
    net = jn.MLP((2, 2, 1), hidden="relu", output="sigmoid")
    params = F.two_layer_to_params(p)
    X = jnp.asarray(xs).T
    y_hat = np.asarray(net.forward(params, X))[0]
    for k, (x1, x2) in enumerate(xs):
        z1 = p["w11"] * x1 + p["w21"] * x2 + p["b1"]
        z2 = p["w12"] * x1 + p["w22"] * x2 + p["b2"]
        assert z1 > 0 and z2 > 0  # both rows of W^[1] and both biases matter
        assert y_hat[k] == pytest.approx(sig(p["w1"] * z1 + p["w2"] * z2 + p["b"]), rel=1e-14)
    # one example: the MLP's backprop, indexed the same way, is the scalar chain rule
    _, _, want = np_two_layer(p, 0.7, -0.3, 1.0)
    grads = net.backprop(params, X[:, :1], jnp.array([[1.0]]))
    got = {"w11": grads[0]["W"][0, 0], "w21": grads[0]["W"][0, 1],
           "w12": grads[0]["W"][1, 0], "w22": grads[0]["W"][1, 1],
           "b1": grads[0]["b"][0, 0], "b2": grads[0]["b"][1, 0],
           "w1": grads[1]["W"][0, 0], "w2": grads[1]["W"][0, 1], "b": grads[1]["b"][0, 0]}
    for name in NAMES:
        assert float(got[name]) == pytest.approx(want[name], rel=1e-13), name
    mapped = F.two_layer_to_params(F.two_layer_gradients(p, 0.7, -0.3, 1.0))
    for mine, theirs in zip(mapped, grads):
        for leaf in ("W", "b"):
            np.testing.assert_allclose(mine[leaf], theirs[leaf], rtol=1e-13)


def test_every_test_the_errata_cites_exists():
    """docs/errata.md names tests as `file.py::test_name` (then `::test_name` for the same file)."""
    root = Path(__file__).resolve().parent.parent
    cited = 0
    for row in (root / "docs" / "errata.md").read_text().splitlines():
        if not row.startswith("| ") or row.count("|") < 6:
            continue
        current = None
        for file, name in re.findall(r"`(test_\w+\.py)?::(test_\w+)", row.split("|")[-2]):
            current = file or current
            assert current, row
            assert f"def {name}(" in (root / "tests" / current).read_text(), (current, name)
            cited += 1
    assert cited >= 15
