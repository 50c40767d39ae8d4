"""The README's inspector load figures are the ones `benchmarks.inspector_load` wrote."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quotes_the_measured_inspector_load() -> None:
    measured = json.loads((ROOT / "benchmarks" / "inspector_load.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    load = measured["page_load_ms"]
    assert f"A session of {measured['events']:,} events opens in {load['median']:.0f} ms" in readme
    assert f"{load['first']:.0f} ms for the\nfirst, cold load" in readme or f"{load['first']:.0f} ms for the first, cold load" in readme
    assert measured["met"] and load["max"] < measured["target_ms"] and load["first"] < measured["target_ms"]
