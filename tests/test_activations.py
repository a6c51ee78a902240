"""Every activation g and its derivative g' against independent oracles.

The oracles are written here with `math` (one scalar at a time) and numbers worked by hand as
literals; nothing is compared with jaxnet's own functions.  A forward bug that the three-way
gradient check cannot see (it would be shared by the hand-written gradient, autodiff and
finite differences: a leaky slope of 0.2 instead of 0.01, say) fails here.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnet import activations as acts

# Chosen points: the kink 0, both sides of it, moderate values and saturation.
POINTS = [-1000.0, -30.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 30.0, 1000.0]


def _sigmoid(z):  # stable in both tails
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


# name -> (g, g') as scalar oracles, written from the definitions.
ORACLES = {
    "identity": (lambda z: z, lambda z: 1.0),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "relu": (lambda z: max(z, 0.0), lambda z: 1.0 if z > 0 else 0.0),           # g'(0) = 0
    "leaky_relu": (lambda z: z if z >= 0 else 0.01 * z,
                   lambda z: 1.0 if z >= 0 else 0.01),                             # g'(0) = 1
}
ELEMENTWISE = list(ORACLES)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def row(values, dtype=jnp.float64):
    return jnp.asarray([values], dtype)  # one unit, len(values) examples: shape (1, m)


def test_the_table_holds_exactly_the_documented_names():
    names = set(acts.ACTIVATIONS)
    assert {*ELEMENTWISE, "softmax"} <= names
    assert names <= {*ELEMENTWISE, "softmax", "gelu"}
    assert acts.canonical_name("linear") == "identity"
    assert acts.get("linear") is acts.get("identity")
    assert {n for n in names if acts.ACTIVATIONS[n].kinked} == {"relu", "leaky_relu"}
    assert acts.ACTIVATIONS["softmax"].derivative is None  # not element-wise: a Jacobian


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*'leaky_relu'.*'linear'"):
        acts.get("swish")
    with pytest.raises(TypeError, match="must be a str"):
        acts.get(None)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_forward_and_derivative_against_math(name):
    g, g_prime = ORACLES[name]
    act = acts.get(name)
    Z = row(POINTS)
    A, dA_dZ = np.asarray(act.forward(Z))[0], np.asarray(act.derivative(Z))[0]
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(dA_dZ)), "saturation gives no NaN/inf"
    np.testing.assert_allclose(A, [g(z) for z in POINTS], rtol=1e-15, atol=1e-300)
    # atol: 1 − tanh² and σ(1 − σ) lose their relative precision to cancellation in the tails
    np.testing.assert_allclose(dA_dZ, [g_prime(z) for z in POINTS], rtol=1e-14, atol=1e-15)
    # backward of an element-wise activation is dA ⊙ g'(Z)
    dA = row(np.linspace(-2.0, 3.0, len(POINTS)))
    dZ = np.asarray(act.backward(dA, Z, act.forward(Z)))[0]
    np.testing.assert_allclose(dZ, np.asarray(dA)[0] * [g_prime(z) for z in POINTS],
                               rtol=1e-14, atol=1e-300)


def test_hand_worked_values():
    get = lambda name, z: float(acts.get(name).forward(row([z]))[0, 0])
    der = lambda name, z: float(acts.get(name).derivative(row([z]))[0, 0])
    assert get("identity", -3.5) == -3.5 and der("identity", -3.5) == 1.0
    assert get("sigmoid", 0.0) == 0.5 and der("sigmoid", 0.0) == 0.25
    assert get("sigmoid", 1.0) == pytest.approx(0.7310585786300049, rel=1e-15)
    assert get("tanh", 0.0) == 0.0 and der("tanh", 0.0) == 1.0
    assert get("tanh", 1.0) == pytest.approx(0.7615941559557649, rel=1e-15)
    assert der("tanh", 1.0) == pytest.approx(0.41997434161402614, rel=1e-14)
    assert get("relu", -2.0) == 0.0 and get("relu", 2.0) == 2.0


def test_relu_derivative_at_the_kink_is_zero():
    relu = acts.get("relu")
    assert float(relu.derivative(row([0.0]))[0, 0]) == 0.0
    assert float(relu.derivative(row([-0.0]))[0, 0]) == 0.0
    assert float(relu.derivative(row([1e-300]))[0, 0]) == 1.0
    # autodiff makes the same choice (the checker compares manual and autodiff at the kink)
    assert float(jax.grad(lambda z: relu.forward(z[None, None])[0, 0])(0.0)) == 0.0


def test_leaky_relu_slope_is_one_hundredth_and_derivative_at_the_kink_is_one():
    leaky = acts.get("leaky_relu")
    assert float(leaky.forward(row([-2.0]))[0, 0]) == pytest.approx(-0.02, rel=1e-15)
    assert float(leaky.forward(row([-100.0]))[0, 0]) == pytest.approx(-1.0, rel=1e-15)
    assert float(leaky.forward(row([3.0]))[0, 0]) == 3.0
    assert float(leaky.derivative(row([-1.0]))[0, 0]) == pytest.approx(0.01, rel=1e-15)
    assert float(leaky.derivative(row([0.0]))[0, 0]) == 1.0
    assert float(leaky.derivative(row([2.0]))[0, 0]) == 1.0
    assert float(jax.grad(lambda z: leaky.forward(z[None, None])[0, 0])(0.0)) == 1.0
    assert acts.LEAKY_SLOPE == 0.01


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_float32_keeps_its_dtype_and_saturates_without_nan(name):
    act = acts.get(name)
    Z = row([-1e4, -100.0, 0.0, 100.0, 1e4], jnp.float32)
    A, d = act.forward(Z), act.derivative(Z)
    assert A.dtype == d.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(A))) and bool(jnp.all(jnp.isfinite(d)))
    g, g_prime = ORACLES[name]
    np.testing.assert_allclose(np.asarray(A, np.float64)[0], [g(float(z)) for z in Z[0]],
                               rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(np.asarray(d, np.float64)[0], [g_prime(float(z)) for z in Z[0]],
                               rtol=1e-6, atol=1e-30)


@settings(max_examples=20, deadline=None)
# (no subnormals: XLA on CPU flushes them to zero, so relu'(1e-308) is 0 there, by design)
@given(st.lists(st.floats(-40.0, 40.0, allow_subnormal=False), min_size=6, max_size=6))
def test_property_elementwise_against_math(values):
    Z = row(values)
    for name, (g, g_prime) in ORACLES.items():
        act = acts.get(name)
        np.testing.assert_allclose(np.asarray(act.forward(Z))[0], [g(z) for z in values],
                                   rtol=1e-14, atol=1e-300, err_msg=name)
        np.testing.assert_allclose(np.asarray(act.derivative(Z))[0],
                                   [g_prime(z) for z in values], rtol=1e-13, atol=1e-14,
                                   err_msg=name)


# --- softmax: over the rows of each column --------------------------------------------------
def softmax_oracle(Z):
    """Column by column, with explicit loops: a_k = e^(z_k − max) / Σ_j e^(z_j − max)."""
    Z = np.asarray(Z, np.float64)
    A = np.empty_like(Z)
    for i in range(Z.shape[1]):
        top = max(Z[:, i])
        e = [math.exp(z - top) for z in Z[:, i]]
        A[:, i] = [x / sum(e) for x in e]
    return A


def test_softmax_hand_worked_column():
    # z = (0, ln 2, ln 3): e^z = (1, 2, 3), so a = (1/6, 2/6, 3/6); adding 1000 changes nothing.
    z = [0.0, math.log(2.0), math.log(3.0)]
    Z = jnp.asarray([z, [c + 1000.0 for c in z]]).T  # (3, 2)
    A = np.asarray(acts.get("softmax").forward(Z))
    np.testing.assert_allclose(A, [[1 / 6, 1 / 6], [2 / 6, 2 / 6], [3 / 6, 3 / 6]], rtol=1e-13)


def test_softmax_forward_against_loops_including_saturation():
    Z = jnp.asarray([[1000.0, -3.0, 0.0, 0.2], [0.0, 2.0, 0.0, -0.7], [-1000.0, 0.5, 0.0, 1.9]])
    A = np.asarray(acts.get("softmax").forward(Z))
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, softmax_oracle(Z), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=1e-15)
    np.testing.assert_allclose(A[:, 0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(A[:, 2], [1 / 3] * 3, rtol=1e-15)


def test_softmax_backward_is_the_explicit_jacobian_transposed_times_dA():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(4, 3)) * 2.0
    dA = rng.normal(size=(4, 3))
    A = softmax_oracle(Z)
    want = np.empty_like(Z)
    for i in range(Z.shape[1]):  # J[k, j] = ∂a_k/∂z_j = a_k (δ_kj − a_j);  dz = Jᵀ da
        a = A[:, i]
        J = np.array([[a[k] * ((k == j) - a[j]) for j in range(4)] for k in range(4)])
        want[:, i] = J.T @ dA[:, i]
    soft = acts.get("softmax")
    Zj = jnp.asarray(Z)
    got = np.asarray(soft.backward(jnp.asarray(dA), Zj, soft.forward(Zj)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # a constant dA (the same in every row) changes no probability: dZ = 0
    np.testing.assert_allclose(np.asarray(soft.backward(jnp.ones((4, 3)), Zj, soft.forward(Zj))),
                               0.0, atol=1e-15)


# --- GELU, if the table has it (the transformer block's activation) -------------------------
def _gelu_erf(z):
    return 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))


def _gelu_erf_prime(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) + z * math.exp(-z * z / 2) / math.sqrt(
        2 * math.pi)


_C = math.sqrt(2.0 / math.pi)


def _gelu_tanh(z):
    return 0.5 * z * (1.0 + math.tanh(_C * (z + 0.044715 * z**3)))


def _gelu_tanh_prime(z):
    t = math.tanh(_C * (z + 0.044715 * z**3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * z * z)


@pytest.mark.skipif("gelu" not in acts.ACTIVATIONS, reason="no gelu in jaxnet.activations")
def test_gelu_against_math():
    """Either the exact GELU z·Φ(z) or the tanh approximation, and g' of that same form."""
    gelu = acts.get("gelu")
    pts = [-30.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 30.0]
    A = np.asarray(gelu.forward(row(pts)))[0]
    d = np.asarray(gelu.derivative(row(pts)))[0]
    forms = {"erf": (_gelu_erf, _gelu_erf_prime), "tanh": (_gelu_tanh, _gelu_tanh_prime)}
    matches = [k for k, (g, _) in forms.items()
               if np.allclose(A, [g(z) for z in pts], rtol=1e-13, atol=1e-300)]
    assert matches, f"gelu(z) is neither the exact nor the tanh form: {A}"
    g_prime = forms[matches[0]][1]
    np.testing.assert_allclose(d, [g_prime(z) for z in pts], rtol=1e-12, atol=1e-300)
    assert A[4] == 0.0 and d[4] == 0.5  # gelu(0) = 0, gelu'(0) = ½ in both forms
