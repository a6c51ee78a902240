"""Experiment 13 (transformers) runs end to end with --quick: exit 0, its three figures, a table
with the character, attention and copying rows, and claims that hold (quick-aware forms)."""

import json

from conftest import run_experiment_quick

NAME = "13_transformer"


def test_transformer_experiment_quick(tmp_path):
    run_experiment_quick(NAME, tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["attention_heads.png", "char_curves.png", "copy_task.png"], names
    md = (tmp_path / "results.md").read_text()
    assert md.startswith(f"### {NAME}") and "| part | measure | value |" in md
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == NAME and results["quick"] is True
    parts = {r["part"] for r in results["rows"]}
    assert parts == {"A characters", "B attention", "C copying"}, parts
    claims = {c["claim"]: c["holds"] for c in results["claims"]}
    assert len(claims) == 6 and all(claims.values()), results["claims"]
    assert results["gradient_check"].startswith("gradient check (float64")
    char = results["char"]
    for kind in ("LSTM", "transformer"):
        assert char[kind]["bits"] < char[kind]["bits0"]
        assert char[kind]["after"].startswith("The ") and char[kind]["before"].startswith("The ")
    assert results["attention"]["recompute_max_error"] <= 1e-5
    copy = results["copy"]["table"]
    assert {r["network"] for r in copy} == {"transformer", "LSTM"}
    assert all(0 <= r["copied-half accuracy"] <= 1 for r in copy)
