"""Experiment 11 (convolutional networks) runs end to end with --quick: exit 0, its three figures,
a table with the CNN and MLP rows, and claims that hold (quick-aware forms)."""

import json

from conftest import run_experiment_quick

NAME = "11_convolution"


def test_convolution_experiment_quick(tmp_path):
    proc = run_experiment_quick(NAME, tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["confusion_matrix.png", "filters_feature_maps.png",
                     "kernels_saliency.png"], names
    assert (tmp_path / "results.md").read_text().startswith(f"### {NAME}")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == NAME and results["quick"] is True
    models = {(r["model"].split()[0], r["input"]) for r in results["rows"]}
    assert models == {(m, i) for m in ("CNN", "MLP")
                      for i in ("pixels / 16", "per-pixel standardized")}, models
    assert all(0 <= r["test acc"] <= 1 and r["parameters"] > 0 for r in results["rows"])
    claims = {c["claim"]: c["holds"] for c in results["claims"]}
    assert len(claims) == 5 and all(claims.values()), results["claims"]
    assert results["saliency_rel_error"] <= 1e-5
    assert "| CNN (digits_cnn) |" in proc.stdout
