"""The stress benchmark, run briefly: concurrent clients, streaming and not, several per session,
through the real proxy process; every exchange a client completed is stored exactly once."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stress import run


def test_stress_smoke_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    result = run(seconds=5, clients=8, sessions=3, max_requests=400, direct_seconds=0.5, folder=tmp_path, single_requests=30)
    # Not a speed figure (the machine may be busy): enough exchanges that sessions had concurrent writers.
    assert result.completed >= result.clients, result.markdown()
    assert result.errors == {}, result.markdown()
    assert (result.lost, result.duplicated) == (0, 0), result.markdown()
    assert "| lost turns | 0 |" in result.markdown()
    # Added latency is paired per request: every pair the probe and the lone client completed.
    assert result.added_under_load.pairs > 0, result.markdown()
    assert result.added_single.pairs == 30 - 20, result.markdown()  # 30 pairs, 20 dropped as warm-up
