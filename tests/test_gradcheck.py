"""The three-way checker: correct gradients pass, planted bugs fail, kinks neither hide errors
nor fail correct gradients, the Taylor test never passes what it cannot see.

(The thresholds themselves are pinned, and tested right at their values, in
`test_gradcheck_thresholds.py`.)  Reference values in these tests come from `jax.grad` at points
just off a kink, or from formulas written out here, never from the checker itself.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn
from jaxnet import activations
from jaxnet.backprop import backprop
from jaxnet.network import cost

NAMES = [f"{w}[{l}]" for l in (1, 2, 3) for w in ("W", "b")]


def normal(seed, *shape):
    """Test data from numpy (jax.random would compile once per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def init(net, seed, bias=0.1):
    """He-scaled weights and biases of scale `bias`, layer by layer."""
    return [{"W": normal(10 * seed + l, n, p) * np.sqrt(2 / p),
             "b": bias * normal(10 * seed + 5 + l, n, 1)}
            for l, (p, n) in enumerate(zip(net.sizes[:-1], net.sizes[1:]))]


@pytest.fixture(scope="module")
def problem():
    X = normal(0, 3, 40)
    Y = (X[0:1] + 0.5 * X[1:2] > 0).astype(X.dtype)
    net = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")
    return net, init(net, 1), X, Y


@pytest.fixture(scope="module")
def kinked():
    """The issue's set-up: zero biases and six all-zero input columns put every entry of b[1]
    (and b[2]) exactly on a ReLU kink."""
    net = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")
    params = net.init(jax.random.key(0))  # zero biases
    X = normal(1, 3, 40).at[:, :6].set(0.0)
    Y = jnp.ones((1, 40), jnp.float32)
    return net, params, X, Y


def loss_of(net):
    return net._cost


def manual_of(net):
    return net._backprop


def with_relu_prime_at_zero(value, fn):
    """Run `fn` with ReLU's g'(0) replaced by `value` (a user's other convention)."""
    relu = activations.ACTIVATIONS["relu"]
    prime = lambda Z: jnp.where(Z > 0, 1.0, jnp.where(Z < 0, 0.0, value)).astype(Z.dtype)
    activations.ACTIVATIONS["relu"] = relu._replace(backward=lambda dA, Z, A: dA * prime(Z))
    try:
        return fn()
    finally:
        activations.ACTIVATIONS["relu"] = relu


def one_sided(loss, params, X, Y, layer, name, delta=1e-9):
    """Left and right partial derivatives of J in every entry of params[layer][name], from
    `jax.grad` at θ ∓ δ e_i: just off the kink, J is smooth and its gradient is one-sided."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        X64, Y64 = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        grad = jax.jit(jax.grad(loss))
        leaf = np.asarray(p64[layer][name])
        left, right = np.zeros(leaf.shape), np.zeros(leaf.shape)
        for i in np.ndindex(leaf.shape):
            for sign, out in ((-1, left), (1, right)):
                q = [dict(d) for d in p64]
                q[layer][name] = q[layer][name].at[i].add(sign * delta)
                out[i] = float(grad(q, X64, Y64)[layer][name][i])
    return left, right


# --- correct gradients pass -----------------------------------------------------------------------
def test_correct_backprop_passes_and_reports(problem):
    net, params, X, Y = problem
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    assert [leaf.name for leaf in report.leaves] == NAMES
    assert all(leaf.manual_vs_autodiff <= 1e-12 for leaf in report.leaves)
    assert all(leaf.autodiff_vs_fd <= 1e-7 for leaf in report.leaves)
    assert all(leaf.fd_entries == np.prod(leaf.shape) for leaf in report.leaves)
    assert report.taylor.ok and report.taylor.order == pytest.approx(2.0, abs=0.2)
    assert report.perturbed is None  # no kinks: no second point needed
    text = str(report)
    assert "W[1]" in text and ": OK" in text and "Taylor test (4 random directions)" in text


def test_leaves_global_x64_setting_alone(problem):
    net, params, X, Y = problem
    before = jax.config.jax_enable_x64
    jn.check_gradients(net, params, X, Y)
    assert jax.config.jax_enable_x64 == before
    assert jnp.zeros(1).dtype == (jnp.float64 if before else jnp.float32)


def test_a_hundred_parameter_check_is_fast_after_compiling(problem):
    _, _, X, Y = problem
    net = jn.MLP((3, 10, 5, 1), hidden="tanh", output="sigmoid")  # 40 + 55 + 6 parameters
    params = init(net, 2)
    assert net.n_params() == 101
    jn.check_gradients(net, params, X, Y)  # compiles
    start = time.perf_counter()
    report = jn.check_gradients(net, params, X, Y)
    assert time.perf_counter() - start < 0.5 and report.ok


# --- planted bugs fail and are named --------------------------------------------------------------
def drop_one_over_m(net):
    def grads(p, X, Y):
        g = backprop(net, p, X, Y)
        g[1] = {"W": g[1]["W"] * X.shape[1], "b": g[1]["b"]}
        return g
    return grads


def transposed_product(p, X, Y):
    # dA_prev computed with W instead of Wᵀ only type-checks when W is square: W^[2] is (4, 4).
    from jaxnet.backprop import activation_backward, linear_backward, output_dZ
    from jaxnet.network import forward_cache
    A_L, cache = forward_cache(SQUARE, p, X)
    dZ = output_dZ(SQUARE, cache[-1]["Z"], A_L, Y)
    out = [None] * 3
    for l in reversed(range(3)):
        W = p[l]["W"]
        dW, db, _ = linear_backward(dZ, cache[l]["A_prev"], W)
        out[l] = {"W": dW, "b": db}
        if l > 0:
            dA_prev = (W if l == 1 else W.T) @ dZ  # the bug: no transpose at layer 2
            dZ = activation_backward(dA_prev, cache[l - 1]["Z"], cache[l - 1]["A"], "tanh")
    return out


SQUARE = jn.MLP((3, 4, 4, 1), hidden="tanh", output="sigmoid")


def test_catches_missing_one_over_m(problem):
    net, params, X, Y = problem
    report = jn.check_grad(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert not report.ok and report.failing == ["[1]['W']"]
    assert report.taylor.failed and report.taylor.order == pytest.approx(1.0, abs=0.2)
    assert "FAILED: [1]['W']" in str(report) and "gradient WRONG" in str(report)


def test_catches_transposed_product():
    X = normal(3, 3, 30)
    Y = (X[0:1] > 0).astype(X.dtype)
    params = init(SQUARE, 4)
    report = jn.check_grad(loss_of(SQUARE), transposed_product, params, X, Y)
    assert not report.ok
    assert set(report.failing) == {"[0]['W']", "[0]['b']"}


def test_catches_wrong_derivative(problem):
    net, params, X, Y = problem
    sigmoid_prime = lambda Z: jax.nn.sigmoid(Z) * (1 - jax.nn.sigmoid(Z))
    relu = activations.ACTIVATIONS["relu"]

    def grads(p, X, Y):  # σ' where ReLU' belongs
        activations.ACTIVATIONS["relu"] = relu._replace(
            backward=lambda dA, Z, A: dA * sigmoid_prime(Z))
        try:
            return backprop(net, p, X, Y)
        finally:
            activations.ACTIVATIONS["relu"] = relu
    report = jn.check_grad(loss_of(net), grads, params, X, Y)
    assert not report.ok
    assert {"[0]['W']", "[1]['W']"} <= set(report.failing)


# --- kinks ----------------------------------------------------------------------------------------
def test_zero_bias_dead_units_are_kinks_not_failures(kinked):
    """All-zero input columns with zero biases put pre-activations exactly at the ReLU kink.
    jaxnet's g'(0) = 0 makes its backprop the left one-sided slope there, equal to jax.grad
    at every entry; the check is repeated at a perturbed point with no kinks."""
    net, params, X, Y = kinked
    report = jn.check_gradients(net, params, X, Y)
    assert report.ok, str(report)
    b1 = report["b[1]"]
    assert b1.kink_entries == 5 and b1.kinks >= 30 and b1.kink_violations == 0
    assert b1.autodiff_sides == (5, 0, 0) and b1.manual_sides == (5, 0, 0) and b1.excused == 0
    assert all(leaf.manual_vs_autodiff <= 1e-12 for leaf in report.leaves)
    assert all(leaf.perturbed_manual_vs_autodiff <= 1e-12 for leaf in report.leaves)
    assert all(leaf.perturbed_autodiff_vs_fd <= 1e-7 for leaf in report.leaves)
    assert "also checked at a perturbed point (seed 0): OK" in str(report)
    assert report.taylor.ok and "at the perturbed point (seed 0)" in str(report.taylor)
    # ... and a wrong formula at the same point still fails.
    bad = jn.check_grad(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert not bad.ok and "[1]['W']" in bad.failing


KINKED = jn.MLP((3, 5, 4, 1), hidden="relu", output="sigmoid")


def kinked_cost(p, X, Y, b1):
    return cost(KINKED, p, X, Y)


def b1_replaced(p, X, Y, b1):
    """jaxnet's backprop with the gradient of b[1] replaced by `b1` (one compilation for
    every replacement: `b1` is an argument)."""
    g = backprop(KINKED, p, X, Y)
    g[0] = {"W": g[0]["W"], "b": b1}
    return g


def bias_bug(p, X, Y, b1):
    """db[1] + 0.1·b[1]: exact wherever b[1] = 0, as at jaxnet's zero-bias initialization."""
    g = backprop(KINKED, p, X, Y)
    g[0] = {"W": g[0]["W"], "b": g[0]["b"] + 0.1 * p[0]["b"]}
    return g


def test_a_bug_hidden_at_the_given_point_is_caught_at_the_perturbed_point(kinked):
    net, params, X, Y = kinked
    report = jn.check_grad(kinked_cost, bias_bug, params, X, Y, 0.0, names=NAMES)
    assert report.failing == ["b[1]"] and not report.ok, str(report)
    b1 = report["b[1]"]
    assert b1.ok_manual and b1.ok_fd and not b1.ok_perturbed  # only the second point sees it
    assert b1.manual_vs_autodiff < 1e-15 and b1.perturbed_manual_vs_autodiff > 1e-5
    assert "also checked at a perturbed point (seed 0): FAILED: b[1]" in str(report)


def test_midpoint_of_the_one_sided_slopes_fails(kinked):
    """The issue's case: b[1] replaced by the midpoint of its two one-sided slopes at every
    (kink) entry.  The old excuse ("between the slopes") passed it; it is no derivative."""
    net, params, X, Y = kinked
    left, right = one_sided(loss_of(net), params, X, Y, 0, "b")
    assert np.all(np.abs(right - left) > 1e-3)  # every entry of b[1] is at a kink
    midpoint = (left + right) / 2
    assert np.linalg.norm(midpoint - left) / np.linalg.norm(left) > 0.1
    assert not jn.check_grad(kinked_cost, b1_replaced, params, X, Y, midpoint).ok
    # at the given point alone (no perturbed point, where a constant b[1] is wrong anyway):
    report = jn.check_grad(kinked_cost, b1_replaced, params, X, Y, midpoint, names=NAMES,
                           perturb=False)
    assert not report.ok and report.failing == ["b[1]"], str(report)
    assert report["b[1]"].manual_vs_autodiff > 0.05
    assert report["b[1]"].manual_sides == (0, 0, 5) and report["b[1]"].excused == 0
    assert report["b[1]"].kink_violations == 5


def test_wrong_value_in_every_kink_entry_fails(kinked):
    net, params, X, Y = kinked
    left, right = one_sided(loss_of(net), params, X, Y, 0, "b")
    wrongs = {"beyond the right slope": right + (right - left),
              "right slope off by 1e-4 of the jump": right + 1e-4 * (right - left),
              "zero": np.zeros_like(left)}
    for what, value in wrongs.items():
        report = jn.check_grad(kinked_cost, b1_replaced, params, X, Y, value, names=NAMES,
                               taylor=False, perturb=False)
        assert report.failing == ["b[1]"] and report["b[1]"].kink_violations == 5, \
            (what, str(report))
    # The left slope is jaxnet's own (g'(0) = 0).  The right slope of each entry, moving that
    # entry alone, is one-sided entry by entry; but the kinks of layers 1 and 2 meet here, and
    # moving all of b[1] together is a different piece: jointly it is no derivative.
    assert jn.check_grad(kinked_cost, b1_replaced, params, X, Y, left, perturb=False).ok
    report = jn.check_grad(kinked_cost, b1_replaced, params, X, Y, right, perturb=False)
    assert report.failing == ["[0]['b']"] and "not one-sided together" in str(report)


def test_other_one_sided_derivative_is_excused_and_counted():
    """One hidden layer, zero biases, zero columns: a user's ReLU with g'(0) = 1 gives the
    right one-sided slope of every b[1] entry at the kink, jax.grad the left one: excused, and
    the report says which side each took.  With g'(0) = ½ (the midpoint) it fails."""
    net = jn.MLP((3, 5, 1), hidden="relu", output="sigmoid")
    params = init(net, 5, bias=0.0)
    X = normal(6, 3, 24).at[:, :4].set(0.0)
    Y = (X[0:1] > 0).astype(X.dtype)
    grads = lambda p, X, Y: with_relu_prime_at_zero(1.0, lambda: backprop(net, p, X, Y))
    report = jn.check_grad(loss_of(net), grads, params, X, Y, names=NAMES[:4])
    assert report.ok, str(report)
    b1 = report["b[1]"]
    assert b1.kink_entries == 5 and b1.excused == 5
    assert b1.manual_sides == (0, 5, 0) and b1.autodiff_sides == (5, 0, 0)
    assert "autodiff 5, 0, 0; manual 0, 5, 0" in str(report)
    half = lambda p, X, Y: with_relu_prime_at_zero(0.5, lambda: backprop(net, p, X, Y))
    midpoint = jn.check_grad(loss_of(net), half, params, X, Y, names=NAMES[:4])
    assert midpoint.failing == ["b[1]"] and midpoint["b[1]"].kink_violations == 5


def test_leaky_relu_at_zero_passes():
    """jaxnet's leaky ReLU has g'(0) = 1, as jax.grad: the right one-sided slope of b[2]; at
    b[1] the kinks of both layers meet (moving b[1] alone moves layer 2's pre-activations off 0
    on both sides), and g'(0) = 1 there lies outside both slopes: the checker does not count
    that against jax.grad (a convention at a kink), and passes."""
    net = jn.MLP((3, 5, 4, 1), hidden="leaky_relu", output="sigmoid")
    params = init(net, 0, bias=0.0)
    X = normal(1, 3, 40).at[:, :6].set(0.0)
    report = jn.check_gradients(net, params, X, jnp.ones((1, 40)))
    assert report.ok, str(report)
    assert report["b[1]"].kink_entries == 5 and report["b[2]"].autodiff_sides == (0, 4, 0)
    assert report["b[1]"].autodiff_sides[2] > 0  # g'(0) = 1 at both layers: neither slope
    assert report["b[1]"].manual_sides == report["b[1]"].autodiff_sides


def max_loss(p, x):
    return jnp.max(p["w"] * x) + 0.5 * jnp.sum(p["w"] ** 2)


def test_max_like_kinks():
    """max(w ⊙ x) with a tie: jax.grad splits it (½, ½), between the one-sided slopes; a user's
    arg-max one-hot (1, 0) takes the right slope of w₀ and the left of w₁: both correct.
    (1, 1) takes a right slope in each entry, but no derivative in any direction: it fails."""
    p = {"w": jnp.array([1.0, 1.0, 0.5])}
    x = jnp.ones(3)
    argmax = lambda p, x: {"w": jnp.array([1.0, 0.0, 0.0]) + p["w"]}
    both = lambda p, x: {"w": jnp.array([1.0, 1.0, 0.0]) + p["w"]}
    good = jn.check_grad(max_loss, argmax, p, x)
    assert good.ok, str(good)
    leaf = good["['w']"]
    assert leaf.kink_entries == 2 and leaf.excused == 2 and leaf.autodiff_sides == (0, 0, 2)
    assert leaf.manual_sides == (1, 1, 0)
    bad = jn.check_grad(max_loss, both, p, x)
    assert bad.failing == ["['w']"] and "not one-sided together" in str(bad)
    assert jn.check_grad(max_loss, lambda p, x: jax.grad(max_loss)(p, x), p, x).ok


@jax.custom_jvp
def odd_relu(z):
    return jnp.maximum(z, 0.0)


@odd_relu.defjvp
def _odd_relu_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    return odd_relu(z), jnp.where(z > 0, 1.0, jnp.where(z < 0, 0.0, 5.0)) * dz


def odd_relu_loss(p, x):
    z = p["b"][:, None] + p["w"][:, None] * x[None, :]  # x = 0 puts b + w x on the kink
    return jnp.mean(jnp.tanh(p["v"][:, None] * odd_relu(z)))


def test_autodiff_convention_at_a_kink_is_reported_not_judged():
    """At a kink J has no derivative: autodiff's value there is a convention, and at coupled
    kinks (two leaky-ReLU layers above) jax.grad legitimately lies outside both one-sided
    slopes.  So the checker reports the side autodiff took and judges the hand-written value
    against it; a ReLU with g'(0) = 5 is 'neither', and a formula that says 5 too passes, one
    that takes a one-sided slope passes, one that says 3 fails."""
    p = {"w": jnp.array([0.7, -0.4]), "b": jnp.zeros(2), "v": jnp.array([1.2, 0.8])}
    x = jnp.array([0.0, 0.0, 1.0, 2.0, -1.0])
    same = jn.check_grad(odd_relu_loss, jax.grad(odd_relu_loss), p, x)
    assert same.ok and same["['b']"].autodiff_sides == (0, 0, 2), str(same)
    assert "autodiff 0, 0, 2" in str(same)

    def with_prime_at_zero(value):
        def grad(p, x):
            z = p["b"][:, None] + p["w"][:, None] * x[None, :]
            prime = jnp.where(z > 0, 1.0, jnp.where(z < 0, 0.0, value))
            dz = (1 - jnp.tanh(p["v"][:, None] * jnp.maximum(z, 0)) ** 2) * prime / z.size
            return {"b": jnp.sum(p["v"][:, None] * dz, 1),
                    "v": jax.grad(odd_relu_loss)(p, x)["v"],
                    "w": jnp.sum(p["v"][:, None] * dz * x[None, :], 1)}
        return grad
    assert jn.check_grad(odd_relu_loss, with_prime_at_zero(5.0), p, x).ok
    one_sided = jn.check_grad(odd_relu_loss, with_prime_at_zero(0.0), p, x)
    assert one_sided.ok and one_sided["['b']"].excused == 2, str(one_sided)
    wrong = jn.check_grad(odd_relu_loss, with_prime_at_zero(3.0), p, x)
    assert wrong.failing == ["['b']"] and wrong["['b']"].kink_violations == 2


# --- non-finite values ----------------------------------------------------------------------------
def quadratic(p, x):
    return jnp.sum((p["a"] * x - 1.0) ** 2) + jnp.sum(p["c"] ** 2)


def quadratic_grad(p, x):
    return {"a": jnp.sum(2 * (p["a"] * x - 1.0) * x, keepdims=True).reshape(p["a"].shape),
            "c": 2 * p["c"]}


P = {"a": jnp.array([0.5]), "c": jnp.array([[0.3, -0.2], [0.1, 0.4]])}
XQ = jnp.linspace(-1.0, 1.0, 7)


def test_non_finite_gradients_fail_and_name_the_leaf():
    nan_manual = lambda p, x: {**quadratic_grad(p, x), "c": quadratic_grad(p, x)["c"].at[0, 1]
                               .set(jnp.nan)}
    report = jn.check_grad(quadratic, nan_manual, P, XQ)
    assert report.failing == ["['c']"] and not report.ok
    assert "['c']: non-finite gradient entries: 1 hand-written, 0 autodiff" in str(report)
    assert report.taylor.failed and "not finite" in str(report.taylor)

    def sqrt_loss(p, x):  # d/dc √c = ∞ at c = 0: autodiff is not finite
        return quadratic(p, x) + jnp.sum(jnp.sqrt(jnp.abs(p["c"])))
    report = jn.check_grad(sqrt_loss, quadratic_grad, {**P, "c": P["c"].at[1, 1].set(0.0)}, XQ)
    assert "['c']" in report.failing and "0 hand-written, 1 autodiff" in str(report)


def test_non_finite_loss_fails():
    report = jn.check_grad(lambda p, x: quadratic(p, x) + jnp.log(p["a"][0] - 1.0),
                           quadratic_grad, P, XQ)
    assert not report.ok and "the loss is not finite" in str(report)


# --- the Taylor test ------------------------------------------------------------------------------
def test_taylor_test_orders(problem):
    net, params, X, Y = problem
    good = jn.taylor_test(loss_of(net), manual_of(net), params, X, Y)
    bad = jn.taylor_test(loss_of(net), drop_one_over_m(net), params, X, Y)
    assert good.ok and good.order == pytest.approx(2.0, abs=0.2)
    assert len(good.orders) == 4 and good.reasons == ("ok",) * 4
    assert bad.failed and bad.order == pytest.approx(1.0, abs=0.2)


def test_taylor_directions_come_from_the_key(problem):
    net, params, X, Y = problem
    args = (loss_of(net), manual_of(net), params, X, Y)
    default = jn.taylor_test(*args)
    assert default.residuals == jn.taylor_test(*args, key=jax.random.key(0)).residuals
    assert default.residuals != jn.taylor_test(*args, key=jax.random.key(7)).residuals


def test_taylor_never_passes_what_it_cannot_see():
    """Every direction masked out, or J linear (remainders at round-off): inconclusive, which
    is neither a pass nor a failure; a check then rests on its other comparisons."""
    masked = jn.taylor_test(quadratic, quadratic_grad, P, XQ, mask=np.zeros(5, bool))
    assert masked.inconclusive and not masked.ok and not masked.failed
    assert masked.reasons == ("masked",) * 4 and "INCONCLUSIVE" in str(masked)

    linear = lambda p, x: jnp.sum(p["a"] * x) + jnp.sum(p["c"])
    linear_grad = lambda p, x: {"a": jnp.sum(x, keepdims=True), "c": jnp.ones((2, 2))}
    report = jn.check_grad(linear, linear_grad, P, XQ)
    assert report.taylor.inconclusive and report.taylor.reasons == ("round-off",) * 4
    assert report.ok and "INCONCLUSIVE" in str(report)
    wrong = lambda p, x: {**linear_grad(p, x), "c": jnp.full((2, 2), 1.5)}
    assert jn.check_grad(linear, wrong, P, XQ).failing == ["['c']"]


def test_taylor_test_sees_kinks_and_says_so(kinked):
    net, params, X, Y = kinked
    result = jn.taylor_test(loss_of(net), manual_of(net), params, X, Y)
    assert result.inconclusive and "kink" in result.reasons, str(result)


# --- any pytree, any argument ---------------------------------------------------------------------
def test_user_formula_on_any_pytree():
    """The README example: check a hand-derived gradient of a user's own function."""
    def loss(p, x):
        return jnp.sum(jnp.sin(p["a"] * x) ** 2) + p["c"] ** 3

    def grad(p, x):
        s = jnp.sin(p["a"] * x)
        return {"a": jnp.sum(2 * s * jnp.cos(p["a"] * x) * x), "c": 3 * p["c"] ** 2}

    p = {"a": jnp.array(0.7), "c": jnp.array(-1.3)}
    x = jnp.linspace(-1, 1, 5)
    assert jn.check_grad(loss, grad, p, x).ok
    wrong = lambda p, x: {**grad(p, x), "c": 3 * p["c"]}
    report = jn.check_grad(loss, wrong, p, x)
    assert report.failing == ["['c']"]


def conv_embed_loss(p, images, ids, scale):
    """A convolution (F, C, kh, kw) weight and an embedding looked up by integer token ids."""
    assert jnp.issubdtype(ids.dtype, jnp.integer) and isinstance(scale, float)
    out = jax.lax.conv_general_dilated(images, p["K"], (1, 1), "VALID")  # (m, F, 2, 2)
    emb = p["E"][:, ids]  # (d, T)
    return scale * jnp.sum(jnp.tanh(out) ** 2) + jnp.sum(jnp.sin(emb))


def conv_embed_grad(p, images, ids, scale):
    out = jax.lax.conv_general_dilated(images, p["K"], (1, 1), "VALID")
    dout = scale * 2 * jnp.tanh(out) * (1 - jnp.tanh(out) ** 2)
    # dK[f, c, i, j] = Σ_{n, y, x} dout[n, f, y, x] · images[n, c, y + i, x + j]
    dK = jnp.stack([jnp.stack([jnp.einsum("nfyx,ncyx->fc", dout,
                                          images[:, :, i:i + 2, j:j + 2])
                               for j in range(2)], -1) for i in range(2)], -2)
    dE = jnp.zeros_like(p["E"]).at[:, ids].add(jnp.cos(p["E"][:, ids]))
    return {"E": dE, "K": dK}


def test_any_rank_parameters_and_integer_arguments():
    p = {"K": 0.5 * normal(9, 2, 3, 2, 2), "E": normal(10, 4, 6)}
    images = normal(11, 2, 3, 3, 3)
    ids = jnp.array([0, 3, 3, 5], jnp.int32)
    report = jn.check_grad(conv_embed_loss, conv_embed_grad, p, images, ids, 0.5)
    assert report.ok, str(report)
    assert [leaf.shape for leaf in report.leaves] == [(4, 6), (2, 3, 2, 2)]
    wrong = lambda *a: {**conv_embed_grad(*a), "E": conv_embed_grad(*a)["E"].at[:, 3].mul(0.5)}
    assert jn.check_grad(conv_embed_loss, wrong, p, images, ids, 0.5).failing == ["['E']"]


def test_integer_parameters_and_structure_mismatch_are_clear_errors(problem):
    with pytest.raises(ValueError, match=r"parameter \['n'\] has dtype int"):
        jn.check_grad(quadratic, quadratic_grad, {**P, "n": jnp.arange(3)}, XQ)
    net, params, X, Y = problem
    with pytest.raises(ValueError, match="tree structure"):
        jn.check_grad(loss_of(net), lambda p, X, Y: backprop(net, p, X, Y)[:2], params, X, Y)


def test_sampled_entries(problem):
    net, params, X, Y = problem
    report = jn.check_gradients(net, params, X, Y, entries=3, key=jax.random.key(5))
    assert report.ok
    assert report["W[2]"].fd_entries == 3 and report["b[3]"].fd_entries == 1
    # the entries where manual and autodiff disagree are always among those checked
    bad = jn.check_grad(loss_of(net), drop_one_over_m(net), params, X, Y, entries=3)
    assert bad["[1]['W']"].fd_entries > 10 and bad.failing == ["[1]['W']"]


def test_reports_are_immutable_values():
    """LeafReport, TaylorResult and GradientReport are frozen dataclasses (hashable values that
    no caller can edit after the verdict); the internal `_Spec` must be hashable (jit static)."""
    import dataclasses

    from jaxnet import gradcheck

    for cls in (gradcheck.LeafReport, gradcheck.TaylorResult, gradcheck.GradientReport,
                gradcheck._Spec):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls.__name__
