"""The three figures of RESULTS.md (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from .overhead import OverheadResult  # noqa: E402
from .recall import METHODS, RecallResult  # noqa: E402
from .scale import ScaleResult  # noqa: E402
from .session50 import SessionResult  # noqa: E402

__all__ = ["plot_tokens_per_turn", "plot_recall", "plot_scale", "plot_overhead"]

DPI = 110


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str, legend_loc: str = "best") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend_loc)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_tokens_per_turn(result: SessionResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    turns = range(1, result.turns + 1)
    ax.plot(turns, result.naive_per_turn, label="naive (whole history + every snippet)", color="black", linewidth=2)
    for budget, values in sorted(result.compiled_per_turn.items()):
        line = ax.plot(turns, values, label=f"compiled, budget {budget:,}")[0]
        ax.axhline(budget, color=line.get_color(), linestyle=":", linewidth=1)
    _finish(fig, ax, path, "turn", "prompt tokens (tiktoken, gpt-4o-mini)", f"{result.turns}-turn session: prompt size per turn")


def plot_recall(result: RecallResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    budgets = sorted({s.budget for s in result.scores})
    split = result.headline_split
    for method in METHODS:
        values = [result.score(method, b, split).strict for b in budgets]
        ax.plot(budgets, values, marker="o", label=method, linewidth=2.5 if method == METHODS[0] else 1.5)
    ax.plot(budgets, [result.targets.get(b, float("nan")) for b in budgets], "k--", marker="x", label="target")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.set_ylim(0, 1.02)
    _finish(fig, ax, path, "budget (tokens)", "strict evidence recall",
            f"LoCoMo, {split}: all evidence turns in the prompt", legend_loc="lower right")


def plot_scale(result: ScaleResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sizes = [r.events for r in result.rows]
    ax.plot(sizes, [r.compile.p50 for r in result.rows], marker="o", label="compile p50")
    ax.plot(sizes, [r.compile.p95 for r in result.rows], marker="o", linestyle="--", label="compile p95")
    ax.plot(sizes, [r.compile_excl_embed.p50 for r in result.rows], marker="s", label="compile p50, query embedding excluded")
    ax.plot(sizes, [r.cold_compile_ms for r in result.rows], marker="^", label="first compile after reopening")
    ax.plot(sizes, [1e6 / r.searchable_events_per_s for r in result.rows], marker="d", label="ingest until searchable, per 1,000 events")
    ax.plot(sizes, [1e6 / r.store_only_events_per_s for r in result.rows], marker="d", linestyle=":", label="store only (embeddings off), per 1,000 events")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _finish(fig, ax, path, "session size (events)", "milliseconds", "Cost vs session size (log-log)")


def plot_overhead(result: OverheadResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for target in dict.fromkeys(r.target for r in result.rows):
        for mode, style in (("non-stream", "-"), ("stream TTFT", "--")):
            rows = [r for r in result.rows if r.target == target and r.mode == mode]
            if rows:
                ax.plot([r.turns for r in rows], [r.added.p50 for r in rows], marker="o", linestyle=style, label=f"{target}: {mode} added p50")
    ax.set_xscale("log")
    _finish(fig, ax, path, "session size (turns resent per request)", "added milliseconds (paired, vs direct)",
            "Proxy overhead against a zero-latency fake upstream")
