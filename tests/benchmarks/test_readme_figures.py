"""The README's headline figures are the ones in `benchmarks/results.json`, as `benchmarks.headline`
renders them: a figure edited by hand, or a results file regenerated without the README, fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.headline import BEGIN, END, headline, render_readme

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))


def test_readme_agrees_with_results_json() -> None:
    assert render_readme(README, RESULTS) == README, "run: python -m benchmarks.headline"


def test_every_generated_figure_comes_from_the_file() -> None:
    block = README[README.index(BEGIN) + len(BEGIN) : README.index(END)]
    assert block.strip() == headline(RESULTS)
    first = RESULTS["A"]["session"]["rows"][0]
    assert f"{first['reduction']:.1%}" in block
    changed = json.loads(json.dumps(RESULTS))
    changed["A"]["session"]["rows"][0]["reduction"] = first["reduction"] - 0.1
    assert render_readme(README, changed) != README  # a different results file is a different README


def test_sections_missing_from_a_run_are_said_to_be_missing() -> None:
    text = headline({"run": RESULTS["run"], "A": RESULTS["A"], "B": None, "C": None, "D": None, "E": []})
    assert "- LoCoMo recall: not measured in that run." in text
    assert "- stress: not measured in that run." in text


def test_the_readme_keeps_exactly_one_generated_block() -> None:
    with pytest.raises(ValueError):
        render_readme(README.replace(END, ""), RESULTS)
