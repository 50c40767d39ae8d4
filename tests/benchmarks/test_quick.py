"""The benchmark suite's quick mode, run as a user would run it: structure and invariants of what it
writes (budgets never exceeded, determinism, the needle found without observe), never speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo10.json"
TRACES = ROOT.parent / "shared" / "data" / "agent-traces" / "mini-swe-agent-dev"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick", "--postgres", "--no-progress", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_writes_results_and_plots(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = quick_run
    text = (out / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## A.", "## B.", "## C.", "## D.", "## E.", "## F.", "## G.", "## H.", "Command: `python -m benchmarks.run_all --quick"):
        assert heading in text
    pngs = ["tokens_per_turn.png", "proxy_overhead.png", "latency_vs_size.png"]
    if results["B"] is not None:
        pngs.append("recall_vs_budget.png")
    for name in pngs:
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name
    assert results["run"]["machine"]["cores"] >= 1


def test_session_never_exceeds_budget_and_compares_with_the_recent_window(quick_run: tuple[Path, dict[str, Any]]) -> None:
    a = quick_run[1]["A"]
    session = a["session"]
    assert session["keyword_overlap"] == []  # the needle question shares no content word with its turn
    last_naive = session["naive_per_turn"][-1]
    for row in session["rows"]:
        budget = row["budget"]
        per_turn = session["compiled_per_turn"][str(budget)]
        recent = session["recent_per_turn"][str(budget)]
        assert len(per_turn) == len(recent) == session["turns"] == len(session["naive_per_turn"])
        assert max(per_turn) == row["max_compiled"] <= budget
        assert max(recent) <= budget and row["reported_tokens_exact"]
        assert row["recent_reduction"] == pytest.approx(1 - row["avg_recent"] / row["avg_naive"])
        # With room for everything twice over (whatever each layout's framing costs), both keep the
        # whole history, the needle included.
        if 2 * last_naive <= budget:
            assert row["needle_found"] and row["recent_needle_found"]
    naive = session["naive_per_turn"]
    assert all(later > earlier for earlier, later in zip(naive, naive[1:]))


def test_scenarios_hold_their_invariants(quick_run: tuple[Path, dict[str, Any]]) -> None:
    a = quick_run[1]["A"]
    determinism = a["determinism"]
    assert determinism["identical_twice"] and determinism["manifest_identical"] and determinism["identical_after_reopen"]
    assert a["pinning"]["pinned_present"] is True
    assert a["paraphrase"]["keyword_overlap"] == []
    diffs = a["diffs"]
    assert diffs["naive_diffs"] < diffs["naive_snippets"]
    for mode in ("snippets", "diffs"):
        for budget, tokens in diffs[f"compiled_{mode}"].items():
            assert tokens <= int(budget)


def test_locomo_recall_structure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    results = quick_run[1]
    if not LOCOMO.exists():
        assert "LoCoMo data not found" in results["skipped"]["B"]
        return
    b = results["B"]
    assert 4 <= b["questions"] <= 12 and b["over_budget_flags"] == 0
    methods = {s["method"] for s in b["scores"]}
    assert methods == {"memory-runtime", "recency window", "BM25 only", "embeddings only", "BM25+embeddings RRF",
                       "memory-runtime without neighbour propagation", "memory-runtime, BM25 list only",
                       "memory-runtime, dense list only", "memory-runtime on PostgreSQL"}
    # The smoke run takes its questions from conversation 1, so only the dev split is reported.
    assert [sp["name"] for sp in b["splits"]] == ["dev (conversations 1-5)"]
    assert b["splits"][0]["questions"] == b["questions"]
    for score in b["scores"]:
        assert score["split"] == "dev (conversations 1-5)"
        assert score["n"] == b["questions"]
        assert score["max_tokens"] <= score["budget"]
        assert 0.0 <= score["strict"] <= score["fraction"] <= 1.0
        assert sum(c["n"] for c in score["categories"]) == b["questions"]
        assert (score["latency"] is not None) == (score["method"] == "memory-runtime")


def test_overhead_and_scale_structure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    results = quick_run[1]
    rows = results["C"]["rows"]
    assert {(r["turns"], r["mode"]) for r in rows} == {(10, "non-stream"), (10, "stream TTFT")}
    for row in rows:
        assert row["direct"]["n"] == row["via"]["n"] == row["added"]["n"] == results["C"]["iterations"]
    d = results["D"]
    assert [r["events"] for r in d["rows"]] == [50, 200]
    for row in d["rows"]:
        assert row["compile"]["n"] == d["queries"]
        assert row["texts_embedded"] > 0 and row["rss_mb"] > row["rss_model_mb"] > 0
        assert row["searchable_events_per_s"] > 0 and row["store_only_events_per_s"] > 0
    assert d["history"]["turns"] > 0


def test_postgres_section_structure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """`--postgres`: the same measurements on the PostgreSQL store, next to SQLite's."""
    f = quick_run[1]["G"]
    assert f["server"].startswith("private pgserver (PostgreSQL 16")
    if quick_run[1]["B"] is not None:
        assert [p["budget"] for p in f["recall"]] == [800, 2000, 8000]
        assert all(0.0 <= p["postgres"] <= 1.0 for p in f["recall"])
    assert [r["events"] for r in f["scale"]] == [50] and [r["events"] for r in f["scale_sqlite"]] == [50, 200]
    for row in f["scale"]:
        assert row["compile"]["n"] > 0 and row["db_mb"] > 0 and row["store_only_events_per_s"] > 0
    assert [(r["store"], r["instances"]) for r in f["stress"]] == [("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]
    for run in f["stress"]:
        assert run["completed"] > 0 and run["errors"] == {} and run["lost"] == 0 and run["duplicated"] == 0
    (vectors,) = f["vectors"]
    assert vectors["chunks"] == 300 and [ef for ef, _, _ in vectors["hnsw"]] == [40, 200, 1000]
    assert all(0.0 <= recall <= 1.0 for _, _, recall in vectors["hnsw"])


def test_cost_under_caching_section(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = quick_run
    text = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "## F. Cost under prompt caching" in text
    if results["F"] is None:
        pytest.skip("LoCoMo data not available here")
    assert (out / "cost_per_turn.png").read_bytes().startswith(PNG_MAGIC)
    rows = {(r["group"], r["budget"]): r for r in results["F"]["rows"]}
    coding = rows[("coding", 4000)]
    locomo = rows[("locomo", 4000)]
    for row in (coding, locomo):
        assert 0.0 <= row["cached_share"] <= 1.0 and row["turns"] > 0
        assert row["raw_vs_resend"] < 1.0  # the proxy forwards fewer tokens than the client sends
        assert set(row["cost"]) == {"0.1", "0.25", "0.5"}
    assert locomo["questions"] > 0 and 0.0 <= locomo["recall_proxy"] <= 1.0
    # The questions asked one after another in the same chat are turns of the chat, priced with it.
    assert 0.0 <= locomo["recall_sequential"] <= 1.0 and set(locomo["cost_conversation"]) == {"0.1", "0.25", "0.5"}
    assert "recall alone / in sequence / fresh" in text


def test_agents_section(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """Section H's smoke form: real trajectories through the running proxy, every forwarded request
    accepted by the strict fake, recall and cost figures in range."""
    out, results = quick_run
    assert "## H. Agents: real tool loops through the proxy" in (out / "RESULTS.md").read_text(encoding="utf-8")
    if not TRACES.exists():
        assert "agent trajectories not found" in results["skipped"]["H"]
        return
    h = results["H"]
    rows = {(r["split"], r["budget"]): r for r in h["rows"]}
    assert set(rows) == {("held_out", 2000), ("tuning", 2000), ("all", 2000)}
    assert [t["split"] for t in h["trajectories"]] == ["tuning", "held_out"]
    for row in rows.values():
        assert row["steps"] == 10 * row["trajectories"] and row["added_ms"]["n"] == row["steps"]
        assert row["rejected"] == 0 and row["failed"] == 0
        assert row["needed"] > 0 and 0.0 <= row["recall"] <= 1.0 and 0.0 <= row["window"]["recall"] <= 1.0
        assert row["window"]["raw_vs_resend"] < 1.0  # budget 2,000: the clearing window clears something
        assert 0.0 <= row["cached_share"] <= 1.0 and set(row["cost"]) == {"0.1", "0.25", "0.5"}
