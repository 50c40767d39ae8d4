"""The stress benchmark, run briefly: concurrent clients, streaming and not, several per session,
through the real proxy process; every exchange a client completed is stored exactly once."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stress import run


def test_stress_smoke_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # Ends on the request count (40), not the clock: the time bound only guards against a hang.
    result = run(seconds=60, clients=8, sessions=3, max_requests=40, direct_seconds=0.5, folder=tmp_path, single_requests=30)
    assert result.completed > 10, result.markdown()
    assert result.errors == {}, result.markdown()
    assert (result.lost, result.duplicated) == (0, 0), result.markdown()
    assert "| lost turns | 0 |" in result.markdown()
    # Added latency is paired per request: every pair the probe and the lone client completed.
    assert result.added_under_load.pairs > 0, result.markdown()
    assert result.added_single.pairs == 30 - 20, result.markdown()  # 30 pairs, 20 dropped as warm-up
    # The harness's own ceiling and the proxy's CPU per request are measured, not left blank.
    assert result.direct_throughput > 0, result.markdown()
    assert 0 < result.cpu_ms < 10_000, result.markdown()
    assert "| proxy CPU per request under load (all its processes) |" in result.markdown()
