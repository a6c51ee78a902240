"""Experiment 12 (recurrent networks) runs end to end with --quick: exit 0, its three figures,
its tables, a char-LSTM checkpoint that loads, and claims that hold (quick-aware forms)."""

import json

from conftest import run_experiment_quick

import jaxnet as jn


def test_recurrent_experiment_quick(tmp_path):
    run_experiment_quick("12_recurrent", tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["adding_curves.png", "char_lstm.png", "gradients_through_time.png"], names
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("### 12_recurrent") and "| T | network |" in md and "before training" in md
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == "12_recurrent" and results["quick"] is True
    assert {r["part"] for r in results["rows"]} == {"A gradients", "B adding", "C characters"}
    failed = [c["claim"] for c in results["claims"] if not c["holds"]]
    assert len(results["claims"]) >= 4 and not failed, failed
    assert results["gradient_check_worst_relative_error"] <= 1e-5

    char = results["char_lstm"]  # what the transformer experiment compares against
    for key in ("val_bits_per_char", "steps", "batch_size", "T", "hidden", "d", "learning_rate",
                "params", "bigram_bits", "unigram_bits"):
        assert key in char, key
    assert char["sample_after"].startswith(char["sample_prompt"])
    ckpt = jn.load_checkpoint(tmp_path / char["checkpoint"])
    assert ckpt.net.input_shape == (char["T"],)
    assert sum(a.size for layer in ckpt.params for a in layer.values()) == char["params"]
