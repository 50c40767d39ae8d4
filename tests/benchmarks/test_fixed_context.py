"""The fixed-context benchmark's loop, small: both placements run, every `diff` prompt conveys the
current file (the benchmark raises otherwise), and anchoring keeps the files inside the cached prefix."""

from __future__ import annotations

import asyncio

from benchmarks.fixed_context import run


def test_an_anchored_files_message_is_cached_where_a_whole_one_is_not() -> None:
    whole, diff = (asyncio.run(run(mode, turns=6, lines=400, budget=32000)) for mode in ("whole", "diff"))
    assert whole["forwarded"] > 0 and diff["forwarded"] > 0
    assert diff["cached"] > 2 * whole["cached"]
    assert diff["cost"]["0.1"] < whole["cost"]["0.1"]
