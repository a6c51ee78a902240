import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnet import checkpoint
from jaxnet.checkpoint import Checkpoint, CheckpointError, load, load_checkpoint, save
from jaxnet.network import MLP

NETS = {
    "4-8-3-tanh-softmax": MLP((4, 8, 3), hidden="tanh", output="softmax"),
    "3-5-4-1-relu-leaky-sigmoid": MLP((3, 5, 4, 1), hidden=("relu", "leaky_relu"),
                                      output="sigmoid"),
    "2-1-identity": MLP((2, 1), output="identity"),
}
NET = NETS["4-8-3-tanh-softmax"]


def make_params(net, dtype=np.float32, seed=0):
    """Random parameters as jnp arrays (numpy-made: faster than `net.init` op by op), with
    the values a lossy format would get wrong: -0.0, the smallest subnormal, the largest float."""
    rng = np.random.default_rng(seed)
    params = [{"W": rng.standard_normal((n_l, n_prev)).astype(dtype),
               "b": rng.standard_normal((n_l, 1)).astype(dtype)}
              for n_prev, n_l in zip(net.sizes[:-1], net.sizes[1:], strict=True)]
    info = np.finfo(dtype)
    params[0]["b"][0, 0] = -0.0
    params[-1]["b"][-1, 0] = info.smallest_subnormal
    params[-1]["W"][0, 0] = info.max
    return [{name: jnp.asarray(a) for name, a in layer.items()} for layer in params]


def assert_same_params(got, want):
    """Bit-exact: same structure, dtypes, shapes and every bit of every value."""
    assert isinstance(got, list) and len(got) == len(want)
    for layer_got, layer_want in zip(got, want, strict=True):
        assert set(layer_got) == {"W", "b"}
        for name in ("W", "b"):
            assert isinstance(layer_got[name], jax.Array)
            assert layer_got[name].dtype == layer_want[name].dtype
            np.testing.assert_array_equal(np.asarray(layer_got[name]),
                                          np.asarray(layer_want[name]))
            assert np.asarray(layer_got[name]).tobytes() == np.asarray(layer_want[name]).tobytes()


def raw_arrays(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def rewrite(path, arrays, meta=None):
    """Write `arrays` (and `meta` as the metadata entry) as a plain .npz at `path`."""
    if meta is not None:
        blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        arrays = {**arrays, checkpoint.METADATA_KEY: blob}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def metadata(path):
    return json.loads(raw_arrays(path)[checkpoint.METADATA_KEY].tobytes().decode("utf-8"))


@pytest.fixture
def saved(tmp_path):
    """A good checkpoint of `NET` on disk: `(path, params)`."""
    params = make_params(NET, seed=1)
    return save(tmp_path / "good.ckpt", NET, params), params


# --- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("net", NETS.values(), ids=NETS.keys())
def test_round_trip_float32_is_bit_exact(tmp_path, net):
    params = make_params(net)
    path = save(tmp_path / "net.ckpt", net, params)
    net2, params2 = load(path)
    assert net2 == net and hash(net2) == hash(net)
    assert_same_params(params2, params)
    assert params2[0]["W"].dtype == jnp.float32


@pytest.mark.parametrize("net", NETS.values(), ids=NETS.keys())
def test_round_trip_float64_is_bit_exact(tmp_path, net):
    with jax.enable_x64(True):
        params = make_params(net, np.float64)
        path = save(tmp_path / "net64.ckpt", net, params)
        net2, params2 = load(path)
        assert net2 == net
        assert_same_params(params2, params)
        assert params2[0]["W"].dtype == jnp.float64


def test_round_trip_of_initialized_params(tmp_path, getkey):
    net = NETS["2-1-identity"]
    params = net.init(getkey(), bias="normal")
    assert_same_params(load(save(tmp_path / "init.ckpt", net, params))[1], params)


def test_metadata_describes_the_checkpoint(saved):
    import jaxnet

    path, _ = saved
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.history is None
    meta = ckpt.metadata
    assert meta["format"] == checkpoint.FORMAT
    assert meta["format_version"] == checkpoint.FORMAT_VERSION
    assert meta["jaxnet_version"] == jaxnet.__version__
    assert meta["architecture"] == {"sizes": [4, 8, 3], "hidden": ["tanh"],
                                    "output": "softmax", "loss": "categorical_cross_entropy"}
    assert meta["dtype"] == "float32"
    assert meta["shapes"] == {"W1": [8, 4], "b1": [8, 1], "W2": [3, 8], "b2": [3, 1]}
    assert "created" in meta


def test_history_round_trip(tmp_path):
    params = make_params(NET)
    cost = np.array([0.9, 0.5, 0.25], np.float32)
    history = {"cost": cost, "train_accuracy": [0.5, 0.75, 1.0], "steps": jnp.arange(3),
               "stopped": "converged", "steps_run": 120, "lr": 0.1, "best": None,
               "diverged": False}
    ckpt = load_checkpoint(save(tmp_path / "h.ckpt", NET, params, history=history))
    h = ckpt.history
    assert list(h) == list(history)  # order kept
    assert h["cost"].dtype == np.float32
    np.testing.assert_array_equal(h["cost"], cost)
    np.testing.assert_array_equal(h["train_accuracy"], [0.5, 0.75, 1.0])
    np.testing.assert_array_equal(h["steps"], [0, 1, 2])
    assert h["stopped"] == "converged" and h["steps_run"] == 120 and h["lr"] == 0.1
    assert h["best"] is None and h["diverged"] is False
    assert_same_params(ckpt.params, params)


def test_history_that_needs_pickle_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dtype object"):
        save(tmp_path / "h.ckpt", NET, make_params(NET), history={"x": [object()]})
    assert not (tmp_path / "h.ckpt").exists()


# --- the file on disk --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["model.ckpt", "model", "model.npz"])
def test_file_is_exactly_the_given_path(tmp_path, name):
    target = tmp_path / "new" / "dirs" / name
    path = save(str(target), NET, make_params(NET))
    assert path == target and target.is_file()
    assert os.listdir(target.parent) == [name]  # no ".npz" appended, no temp file left


def test_saving_over_a_checkpoint_replaces_it(saved):
    path, _ = saved
    params = make_params(NET, seed=2)
    save(path, NET, params)
    assert_same_params(load(path)[1], params)
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.parametrize("crash", ["savez", "replace", "interrupt"])
def test_crash_mid_save_leaves_the_old_checkpoint(saved, monkeypatch, crash):
    path, params = saved
    before = path.read_bytes()
    real_savez = np.savez

    def half_savez(f, **arrays):  # writes part of an archive, then the disk fills up
        real_savez(f, **dict(list(arrays.items())[:1]))
        raise OSError(28, "No space left on device")

    def fail(*args, **kwargs):
        raise OSError("rename failed")

    def interrupted_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    patch = {"savez": (np, "savez", half_savez), "replace": (os, "replace", fail),
             "interrupt": (np, "savez", interrupted_savez)}[crash]
    monkeypatch.setattr(*patch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save(path, NET, make_params(NET))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert_same_params(load(path)[1], params)
    assert os.listdir(path.parent) == [path.name]  # the temporary file is gone


# --- refusing to save --------------------------------------------------------------------------
def test_save_refuses_params_that_do_not_fit(tmp_path):
    params = make_params(MLP((4, 7, 3), output="softmax"))
    with pytest.raises(ValueError, match=r"W\^\[1\] must have shape \(8, 4\)"):
        save(tmp_path / "bad.ckpt", NET, params)
    with pytest.raises(ValueError, match="params has 1 layers"):
        save(tmp_path / "bad.ckpt", NET, params[:1])
    assert not (tmp_path / "bad.ckpt").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_save_refuses_non_finite_params(saved, value):
    path, params = saved
    before = path.read_bytes()
    broken = [dict(layer) for layer in params]
    broken[1]["b"] = broken[1]["b"].at[2, 0].set(value)
    with pytest.raises(ValueError, match=r"b\^\[2\] holds 1 non-finite"):
        save(path, NET, broken)
    assert path.read_bytes() == before


def test_save_refuses_mixed_dtypes(tmp_path):
    params = make_params(NET)
    params[0]["b"] = params[0]["b"].astype(jnp.float16)
    with pytest.raises(ValueError, match="mix dtypes"):
        save(tmp_path / "mixed.ckpt", NET, params)


# --- refusing to load --------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load(tmp_path / "nowhere.ckpt")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file(saved, keep):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data))])
    with pytest.raises(CheckpointError, match="truncated or corrupted|not an .npz"):
        load(path)


def corruption_site(data: bytes, params, where: str) -> int:
    """Offset of a meaningful place in the archive to overwrite."""
    sites = {
        "W1 values": lambda: data.find(np.asarray(params[0]["W"]).tobytes()) + 5,
        "b2 values": lambda: data.find(np.asarray(params[1]["b"]).tobytes()),
        "metadata JSON": lambda: data.find(b'"architecture"'),
        "npy header": lambda: data.find(b"'descr'") + 8,
        "2nd member's zip header": lambda: data.find(b"PK\x03\x04", 1),
        "zip directory": lambda: data.rfind(b"PK\x01\x02") + 16,  # its CRC field
    }
    at = sites[where]()
    assert at > 0, where
    return at


@pytest.mark.parametrize(("where", "member"), [
    ("W1 values", "W1"), ("b2 values", "b2"), ("metadata JSON", "__jaxnet__"),
    ("npy header", "W1"), ("2nd member's zip header", "b1"), ("zip directory", "__jaxnet__")])
def test_corrupted_bytes(saved, where, member):
    path, params = saved
    data = bytearray(path.read_bytes())
    at = corruption_site(bytes(data), params, where)
    data[at:at + 4] = bytes(255 - b for b in data[at:at + 4])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError,
                       match=f"{path.name} is corrupted: member '{member}.npy' fails its CRC"):
        load(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("W1 = [[1, 2], [3, 4]]\n")
    with pytest.raises(CheckpointError, match="not a jaxnet checkpoint: not an .npz"):
        load(path)


def test_npz_without_metadata(tmp_path):
    path = tmp_path / "plain.npz"
    rewrite(path, {"W1": np.zeros((1, 2), np.float32), "b1": np.zeros((1, 1), np.float32)})
    with pytest.raises(CheckpointError, match="no '__jaxnet__' metadata entry"):
        load(path)


def test_foreign_metadata(saved):
    path, _ = saved
    rewrite(path, raw_arrays(path) | {checkpoint.METADATA_KEY: np.frombuffer(b"{", np.uint8)})
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        load(path)
    rewrite(path, {"W1": np.zeros((1, 2))}, {"format": "something.else"})
    with pytest.raises(CheckpointError, match="metadata format is not 'jaxnet.checkpoint'"):
        load(path)


def test_newer_format_version(saved):
    path, _ = saved
    meta = metadata(path) | {"format_version": checkpoint.FORMAT_VERSION + 1}
    rewrite(path, raw_arrays(path), meta)
    with pytest.raises(CheckpointError, match="format version 2.*upgrade jaxnet"):
        load(path)


def test_arrays_that_do_not_fit_the_architecture(saved):
    path, _ = saved
    arrays = raw_arrays(path)
    arrays["W2"] = np.zeros((3, 7), np.float32)
    rewrite(path, arrays)
    with pytest.raises(CheckpointError, match=r"'W2' has shape \(3, 7\).*needs \(3, 8\)"):
        load(path)


def test_missing_array(saved):
    path, _ = saved
    arrays = raw_arrays(path)
    del arrays["b2"]
    rewrite(path, arrays)
    with pytest.raises(CheckpointError, match="missing array 'b2'"):
        load(path)


def test_invalid_architecture(saved):
    path, _ = saved
    meta = metadata(path)
    meta["architecture"]["output"] = "swish"
    rewrite(path, raw_arrays(path), meta)
    with pytest.raises(CheckpointError, match="invalid architecture.*swish"):
        load(path)


def test_float64_without_x64_is_refused(tmp_path):
    with jax.enable_x64(True):
        params = make_params(NET, np.float64)
        path = save(tmp_path / "f64.ckpt", NET, params)
    with pytest.raises(ValueError, match=r"float64.*with jax.enable_x64\(True\)"):
        load(path)
