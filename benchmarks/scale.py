"""Section D: how cost grows with session size, and the 300-turn ingest.

Each size runs in its own process (`benchmarks.scale_probe`) so the RSS it reports is the
library's with the model loaded, not this harness's (which also holds LoCoMo and baselines).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memory import create_runtime
from memory.recall.embeddings import Embedder

from .common import Percentiles, Stopwatch, percentiles
from .corpus import REPO_ROOT
from .workload import chat_turns

__all__ = ["ScaleRow", "HistoryIngest", "ScaleResult", "run_scale", "run_history_ingest", "probe_row"]


@dataclass(frozen=True)
class ScaleRow:
    events: int
    unique: int
    store_only_events_per_s: float  # embeddings off: storing and indexing alone
    ingest_s: float  # ingest calls, background embedding running meanwhile
    flush_s: float  # then waiting for the last chunks to be embedded
    embed_s: float  # time inside the embedder over ingest + flush
    texts_embedded: int
    searchable_events_per_s: float  # events / (ingest + flush): stored, indexed and embedded
    compile: Percentiles
    compile_excl_embed: Percentiles
    first_compile_ms: float
    cold_compile_ms: float
    rss_model_mb: float
    rss_mb: float
    peak_rss_mb: float
    db_mb: float


@dataclass(frozen=True)
class HistoryIngest:
    """Seconds until searchable (ingest + flush), one fresh file per run; repeated because a
    few-second figure on a shared 2-core machine swings with whatever else runs."""

    turns: int
    batch_s: tuple[float, ...]  # one ingest_many call, then flush
    single_s: tuple[float, ...]  # one ingest call per turn, then flush

    @property
    def batch_median_s(self) -> float:
        return statistics.median(self.batch_s)

    @property
    def single_median_s(self) -> float:
        return statistics.median(self.single_s)


@dataclass(frozen=True)
class ScaleResult:
    budget: int
    queries: int
    unique: int  # sessions larger than this repeat their first `unique` event texts
    rows: tuple[ScaleRow, ...]
    history: HistoryIngest


def probe_row(events: int, queries: int, budget: int, unique: int, show_progress: bool, pg_url: str | None = None) -> ScaleRow:
    """One size, measured in a fresh process; on PostgreSQL when `pg_url` names a server."""
    cmd = [sys.executable, "-m", "benchmarks.scale_probe", "--events", str(events), "--queries", str(queries),
           "--budget", str(budget), "--unique", str(unique)]
    if not show_progress:
        cmd.append("--no-progress")
    if pg_url:
        cmd += ["--pg-url", pg_url]
    done = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=True)
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return ScaleRow(
        events=raw["events"], unique=raw["unique"], store_only_events_per_s=raw["events"] / raw["store_only_s"],
        ingest_s=raw["ingest_s"], flush_s=raw["flush_s"], embed_s=raw["embed_s"], texts_embedded=raw["texts_embedded"],
        searchable_events_per_s=raw["events"] / (raw["ingest_s"] + raw["flush_s"]),
        compile=percentiles(raw["compile_ms"]), compile_excl_embed=percentiles(raw["compile_excl_embed_ms"]),
        first_compile_ms=raw["first_compile_ms"], cold_compile_ms=raw["cold_compile_ms"], rss_model_mb=raw["rss_model_mb"],
        rss_mb=raw["rss_mb"], peak_rss_mb=raw["peak_rss_mb"], db_mb=raw["db_mb"],
    )


async def run_history_ingest(embedder: Embedder | None, turns: int = 300, repeats: int = 3) -> HistoryIngest:
    """A plain chat history of `turns` messages, stored in one call and one call per message, each
    followed by the flush that embeds it (the whole cost of making it searchable). Every run uses a
    fresh file: a shared one would reuse earlier vectors through the content-hash cache."""
    history = chat_turns(turns)
    totals: dict[str, list[float]] = {"batch": [], "single": []}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        for run in range(repeats):
            for mode in ("batch", "single"):
                async with create_runtime(storage_path=str(Path(tmp) / f"{mode}-{run}.sqlite"), embedder=embedder) as runtime:
                    session = runtime.session("history")
                    with Stopwatch() as sw:
                        if mode == "batch":
                            await session.ingest_many(history)
                        else:
                            for event in history:
                                await session.ingest(event)
                        await session.flush()
                    totals[mode].append(sw.ms / 1000)
    return HistoryIngest(turns, tuple(totals["batch"]), tuple(totals["single"]))


async def run_scale(sizes: Sequence[int], queries: int, unique: int, embedder: Embedder | None, budget: int = 2000,
                    history_turns: int = 300, show_progress: bool = True) -> ScaleResult:
    rows = tuple(probe_row(n, queries, budget, unique, show_progress) for n in sizes)
    return ScaleResult(budget, queries, unique, rows, await run_history_ingest(embedder, history_turns))
