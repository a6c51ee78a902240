"""A single sigmoid unit takes 0/1 labels of shape `(m,)` (as a softmax takes integer ids
`(m,)`): MLP and Sequential, in the cost (vs binary cross-entropy by hand in numpy), the
hand-written backward (vs `jax.grad` with `(1, m)` labels), `fit` and `accuracy`;
every other shape stays an error that names both accepted shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet as jn

X = jax.random.normal(jax.random.key(0), (3, 12))
y = np.asarray(X[0] + 0.5 * X[1] > 0, np.int32)  # 0/1 labels, shape (12,)
NETS = [jn.MLP((3, 4, 1), output="sigmoid"),
        jn.Sequential([jn.Dense(4, "tanh"), jn.Dense(1, "sigmoid")], input_shape=(3,))]


@pytest.mark.parametrize("net", NETS, ids=["MLP", "Sequential"])
def test_labels_of_shape_m(net):
    params = net.init(jax.random.key(1))
    p = np.asarray(net.forward(params, X), np.float64)[0]
    by_hand = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert float(net.cost(params, X, y)) == pytest.approx(by_hand, rel=1e-5)
    row = jnp.asarray(y[None], jnp.float32)
    want = jax.grad(net.cost)(params, X, row)
    for a, b in zip(jax.tree.leaves(net.backprop(params, X, y)), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert jn.accuracy(net, params, X, y) == pytest.approx(np.mean((p > 0.5) == y))
    _, h = jn.fit(net, params, X, y, steps=2, learning_rate=0.1, gradients="manual",
                  progress=False, validation=(X, y))
    assert h["cost"][0] == pytest.approx(by_hand, rel=1e-5) and h["val_cost"][0] == h["cost"][0]
    with pytest.raises(ValueError, match=r"or 0/1 labels of shape \(12,\), got \(5,\)"):
        net.cost(params, X, y[:5])
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        net.cost(params, X, 2 * y)


def test_only_a_single_binary_unit_takes_them():
    two = jn.MLP((3, 2), output="sigmoid")  # two sigmoid units: (m,) would be ambiguous
    with pytest.raises(ValueError, match="Y must have shape"):
        two.cost(two.init(jax.random.key(0)), X, y)
    reg = jn.MLP((3, 1), output="identity")  # squared error: not labels, no reshape
    with pytest.raises(ValueError, match="Y must have shape"):
        reg.cost(reg.init(jax.random.key(0)), X, y * 1.0)
