"""docs/layers.md, "Write your own layer": its Python blocks run as written (in order, in one
namespace), so the worked example (a GRU by hand: checked, trained, saved and loaded) stays true."""

import re

import pytest
from conftest import ROOT

import jaxnet as jn

SECTION = "## Write your own layer"


def python_blocks() -> list[str]:
    text = (ROOT / "docs" / "layers.md").read_text()
    assert SECTION in text, f"docs/layers.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def registry():
    """The layer registry as it was before the test (the example registers MyGRU)."""
    saved = dict(jn.layers.LAYER_TYPES)
    yield jn.layers.LAYER_TYPES
    jn.layers.LAYER_TYPES.clear()
    jn.layers.LAYER_TYPES.update(saved)


def test_write_your_own_layer_example_runs(tmp_path, monkeypatch, registry, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 4 and any("jn.check_layer" in b for b in blocks)
    monkeypatch.chdir(tmp_path)  # the example writes gru.npz
    namespace = {"__name__": "docs_layers_example"}
    for block in blocks:
        exec(compile(block, "docs/layers.md", "exec"), namespace)
    assert registry["MyGRU"] is namespace["MyGRU"]
    assert (tmp_path / "gru.npz").exists()
    assert "cost" in capsys.readouterr().out
    # The example and the shipped jn.GRU were written apart: same parameters, same numbers.
    import jax
    import numpy as np

    mine, shipped = namespace["MyGRU"](5), jn.GRU(5)
    params, _ = shipped.init(jax.random.key(0), (3, 4))
    params = {k: v + 0.1 * jax.random.normal(jax.random.key(i), v.shape)
              for i, (k, v) in enumerate(sorted(params.items()))}  # non-zero biases
    x = jax.random.normal(jax.random.key(9), (3, 4, 2))
    y, cache = mine.forward(params, x)
    y_ref, cache_ref = shipped.forward(params, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    dy = jax.random.normal(jax.random.key(10), y.shape)
    (dx, grads), (dx_ref, grads_ref) = mine.backward(params, cache, dy), \
        shipped.backward(params, cache_ref, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    for k in grads_ref:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
