"""Section I's plumbing: what results.json keeps, the RESULTS.md section, the README's headline
line generated from results.json, and the section splice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.anthropic_cost import HEADING, RequestCost, results_i, section_i, splice, summary
from benchmarks.headline import headline

ROOT = Path(__file__).resolve().parents[2]


def _row(budget: int, past: float | None, worst: float = 1.0) -> dict[str, Any]:
    return {"budget": budget, "requests": 60, "requests_before_budget": 11, "requests_past_budget": 49, "cost_before_budget": 1.0,
            "worst_request_before_budget": worst, "cost_past_budget": past, "cost_all": 1.0, "cost_last_20_requests": 0.9,
            "modes": {"frame": 39, "rebased": 10}, "resend_units": 1000, "proxy_units": 900, "client_tokens_last": 21143}


def test_the_headline_line_comes_from_results_json() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    rows = [(30, _row(6000, 1.0486)), (30, _row(12000, 1.2836)), (60, _row(6000, 0.6712)), (60, _row(12000, 0.7931))]
    results["I"] = json.loads(json.dumps(results_i(rows, "python -m benchmarks.anthropic_cost", "abc123")))
    line = headline(results).splitlines()[-1]
    assert line.startswith("- Claude Code under Anthropic's cache rule")
    assert "at budgets 6,000 / 12,000" in line and "30 turns 1.05× / 1.28×; 60 turns 0.67× / 0.79×" in line
    assert "met in 2 of 4 runs" in line
    results["I"]["rows"] = [r for r in results["I"]["rows"] if r["turns"] == 60]
    assert headline(results).splitlines()[-1].endswith("budget: met.")
    results["I"] = None
    assert headline(results).splitlines()[-1] == "- Claude Code under Anthropic's cache rule: not measured in that run."


def test_the_section_and_its_splice() -> None:
    lines = section_i([(30, _row(6000, 0.9)), (60, _row(6000, 0.7))], "cmd", "abc123")
    assert lines[0] == HEADING and "- 30 turns at 6,000: before met, past **not met** (0.90×)" in lines
    assert "- 60 turns at 6,000: before met, past met (0.70×)" in lines
    assert not any(line.startswith("| turns | budget | resend: writes") for line in lines)  # older rows carry no split
    where = {"resend": {"input": 0.0, "write": 0.2, "read": 0.8}, "proxy": {"input": 0.11, "write": 0.26, "read": 0.35}}
    split = section_i([(30, {**_row(12000, 0.72), "where_past_budget": where})], "cmd", "abc123")
    assert "| 30 | 12,000 | 0.20 / 0.80 | 0.11 / 0.26 / 0.35 |" in split
    real = {**_row(12000, 0.85), "size": "claude-code", "fixed_tokens": 22665, "where_past_budget": where}
    both = section_i([(30, _row(12000, 0.72))], "cmd", "abc123", [(30, real)])
    assert any("fifteen tools of 22,665 tokens" in line for line in both)
    assert "- 30 turns at 12,000 (Claude Code size): before met, past **not met** (0.85×)" in both
    assert "| 30 (Claude Code size) | 12,000 | 0.20 / 0.80 | 0.11 / 0.26 / 0.35 |" in both
    text = "# R\n\n## H. other\n\nx\n"
    once = splice(text, lines)
    assert once.startswith(text.rstrip("\n")) and HEADING in once
    assert splice(once, lines) == once and splice(once + "\n## J. after\n", lines).endswith("## J. after\n")


def test_past_the_budget_means_past_the_budget_the_proxy_lays_the_prompt_out_in() -> None:
    costs = [RequestCost(1, tokens, "frame", 1.0, 0.5) for tokens in (5000, 7000, 20_000, 24_000)]
    assert summary(costs, 6000)["requests_before_budget"] == 1
    assert summary(costs, 6000, fixed=20_000)["requests_before_budget"] == 3  # 20,000 beyond 3,000 go on top: 23,000
