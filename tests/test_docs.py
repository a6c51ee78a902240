"""docs/experiments.md shows the latest results of every experiment (regenerated, not typed)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_experiments_page_is_up_to_date(tmp_path):
    before = (ROOT / "docs" / "experiments.md").read_text()
    template = (ROOT / "docs" / "experiments" / "template.md").read_text()
    names = re.findall(r"<!-- results: (\w+) -->", template)
    scripts = sorted(p.stem for p in (ROOT / "experiments").glob("[0-9]*.py"))
    assert sorted(names) == scripts, "every experiment script has a section"
    for name in names:
        table = (ROOT / "experiments" / "results" / name / "results.md").read_text()
        assert table.splitlines()[2] in before, f"{name}: docs/experiments.md is stale"
    for image in re.findall(r"\]\((\.\./experiments/results/[^)]+\.png)\)", before):
        assert (ROOT / "docs" / image).resolve().exists(), image


def test_make_docs_runs(tmp_path):
    result = subprocess.run([sys.executable, "experiments/make_docs.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
