"""A large session reopened: the first compile after a restart, warm compiles, RSS and what the
process did (tokeniser calls, rows read), on a database built once and kept.

    python -m benchmarks.scale_restart build --db /tmp/s100k.sqlite --events 100000 --unique 10000
    python -m benchmarks.scale_restart measure --db /tmp/s100k.sqlite [--queries 30] [--tracemalloc] [--crash]

`build` ingests `benchmarks.workload.session_events` and flushes, as the scale probe does, so every
chunk (pair probes included) has a vector under the model's name: with `--vectors model` the
model's own (20k texts: 5 min on a quiet machine, an hour at load 25), with `--vectors random` (the
default) a unit vector seeded by the text's sha256. Restart time, RSS and counts do not depend on
the vectors' values; ranking quality does, and is measured on LoCoMo (`benchmarks.locomo`), never
here. Later `measure` runs embed only the questions, with the model. `measure` runs in a fresh process:
it loads the model, opens the store (running any new migration: run it twice after an upgrade and
report the second; the first also builds the view from the rows, and its close saves the view's
snapshot, which the next restart reads: `view_snapshot_at_start` says which case a run was), times the open and the first compile (wall and this process's CPU time: an
open may load what a first compile would otherwise load) and counts the tokeniser's calls in it,
then waits for the view's snapshot the runtime saves in the background once a load read many rows
(`save_wait_ms`, and the RSS peak over that wait: `save_peak_rss_mib`), then warm compiles, then
prints one JSON object on stdout's last line. With `--crash` it prints it right after that wait and
kills itself (SIGKILL, no close): the next run's first compile is the first after a crash. Issue 23's compile targets
are read on `compile_cpu_excl_embed_p50_ms`: each warm compile's CPU time less the process's CPU
time while the model embedded the question.
Wall times are load-sensitive on a shared machine; CPU time and the counts are less so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import hashlib
import os
import signal
import sqlite3
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from memory import create_runtime
from memory.recall import tokens as tokens_module
from memory.recall.embeddings import Embedder, load_embedder

from .common import MODEL, peak_rss_mb, reset_peak_rss, rss_mb
from .timed_embedder import TimedEmbedder
from .workload import queries, session_events

__all__ = ["build", "measure"]

BATCH = 1000
SESSION = "scale"


async def build(db: Path, events: int, unique: int | None, vectors: str) -> dict[str, Any]:
    """Ingest the generated session into a new file at `db`, then give every chunk a vector."""
    if db.exists():
        raise SystemExit(f"{db} exists; remove it first")
    inner = load_embedder(None)
    if inner is None:
        raise SystemExit("building needs the embedding model (its name keys the vectors)")
    stream = list(session_events(events, unique=unique))
    # The generator draws on this project's identifiers: keep the questions with the database, so
    # runs on later code ask the same ones.
    _questions_file(db).write_text(json.dumps({"first": queries(1, seed=5)[0], "warm": queries(100)}))
    started = time.perf_counter()
    embedder: Embedder = inner if vectors == "model" else SeededEmbedder(inner.name, inner.dim)
    async with create_runtime(storage_path=str(db), embedder=embedder) as runtime:
        session = runtime.session(SESSION)
        for start in range(0, len(stream), BATCH):
            await session.ingest_many(stream[start : start + BATCH])
        await session.flush()
    return {"db": str(db), "events": events, "unique": unique, "vectors": vectors, "build_s": time.perf_counter() - started}


class SeededEmbedder:
    """Stands in for the model while building: a unit vector seeded by each text's sha256, stored
    under the model's name and size."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([_seeded_unit(hashlib.sha256(t.encode("utf-8")).hexdigest(), self.dim) for t in texts])


def _seeded_unit(content_hash: str, dim: int) -> np.ndarray:
    row = np.random.default_rng(int(content_hash[:16], 16)).standard_normal(dim).astype(np.float32)
    unit: np.ndarray = row / np.linalg.norm(row)
    return unit


@contextmanager
def counted_tokeniser() -> Iterator[dict[str, int]]:
    """Count calls into tiktoken (every `TiktokenCounter.count` and `encode`) while inside."""
    calls = {"count": 0}
    original_count, original_encode = tokens_module.TiktokenCounter.count, tokens_module.TiktokenCounter.encode

    def count(self: Any, text: str) -> int:
        calls["count"] += 1
        return original_count(self, text)

    def encode(self: Any, text: str) -> list[int]:
        calls["count"] += 1
        return original_encode(self, text)

    setattr(tokens_module.TiktokenCounter, "count", count)
    setattr(tokens_module.TiktokenCounter, "encode", encode)
    try:
        yield calls
    finally:
        setattr(tokens_module.TiktokenCounter, "count", original_count)
        setattr(tokens_module.TiktokenCounter, "encode", original_encode)


async def measure(db: Path, n_queries: int, budget: int, trace: bool, crash: bool = False) -> dict[str, Any]:
    inner = load_embedder(None)
    if inner is None:
        raise SystemExit("measuring needs the embedding model")
    embedder = TimedEmbedder(inner)
    embedder.embed(["warm the model up"])
    rss_model = rss_mb()
    if trace:
        tracemalloc.start()
    asked = json.loads(_questions_file(db).read_text())
    out: dict[str, Any] = {"db": str(db), "db_mib": sum(f.stat().st_size for f in db.parent.glob(db.name + "*") if not f.name.endswith(".json")) / 2**20}
    out["view_snapshot_at_start"] = _has_snapshot(db)
    runtime = create_runtime(storage_path=str(db), embedder=embedder)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await runtime.open()  # migrations, and whatever the runtime loads before it serves
    out["open_ms"] = (time.perf_counter() - wall0) * 1000
    out["open_cpu_ms"] = (time.process_time() - cpu0) * 1000
    async with runtime:
        session = runtime.session(SESSION)
        cpu0, wall0, emb0, emb_cpu0 = time.process_time(), time.perf_counter(), embedder.seconds, embedder.cpu_seconds
        with counted_tokeniser() as calls:
            await session.compile(user_message=asked["first"], budget_tokens=budget, model=MODEL)
        out["first_compile_ms"] = (time.perf_counter() - wall0) * 1000
        out["first_compile_cpu_ms"] = (time.process_time() - cpu0) * 1000
        out["first_compile_embed_ms"] = (embedder.seconds - emb0) * 1000
        out["first_compile_embed_cpu_ms"] = (embedder.cpu_seconds - emb_cpu0) * 1000
        out["first_compile_tokeniser_calls"] = calls["count"]
        out["rss_after_first_mib"] = rss_mb()
        if trace:
            snapshot = tracemalloc.take_snapshot()
            out["tracemalloc_top"] = [f"{s.size / 2**20:.1f} MiB {s.traceback[0].filename}:{s.traceback[0].lineno}"
                                      for s in snapshot.statistics("lineno")[:15]]
            out["tracemalloc_total_mib"] = sum(s.size for s in snapshot.statistics("filename")) / 2**20
            tracemalloc.stop()
        out["peak_rss_before_save_mib"] = peak_rss_mb()
        reset_peak_rss()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await runtime._views.idle()  # the background snapshot, if the load read enough rows for one
        out["save_wait_ms"], out["save_wait_cpu_ms"] = (time.perf_counter() - wall0) * 1000, (time.process_time() - cpu0) * 1000
        out["save_peak_rss_mib"] = peak_rss_mb()
        if crash:
            out.update(load=list(_load()), crashed=True)
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        excl: list[float] = []
        cpu: list[float] = []
        cpu_excl: list[float] = []
        with counted_tokeniser() as calls:
            for question in asked["warm"][:n_queries]:
                before, before_cpu, wall0, cpu0 = embedder.seconds, embedder.cpu_seconds, time.perf_counter(), time.process_time()
                result = await session.compile(user_message=question, budget_tokens=budget, model=MODEL)
                wall = (time.perf_counter() - wall0) * 1000
                if result.tokens > budget:
                    raise AssertionError(f"compile exceeded its budget: {result.tokens} > {budget}")
                excl.append(wall - (embedder.seconds - before) * 1000)
                cpu.append((time.process_time() - cpu0) * 1000)
                cpu_excl.append(cpu[-1] - (embedder.cpu_seconds - before_cpu) * 1000)
        out["warm_tokeniser_calls_per_compile"] = calls["count"] / max(1, n_queries)
        out["rss_after_mib"] = rss_mb()  # the view still held
    if excl:
        out["compile_excl_embed_p50_ms"] = statistics.median(excl)
        out["compile_excl_embed_p95_ms"] = sorted(excl)[max(0, int(len(excl) * 0.95) - 1)]
        out["compile_cpu_p50_ms"] = statistics.median(cpu)
        out["compile_cpu_excl_embed_p50_ms"] = statistics.median(cpu_excl)  # the targets' measure
    peak = max(out["peak_rss_before_save_mib"], peak_rss_mb())  # the whole run's (the counter was reset for the save's)
    out.update(rss_model_mib=rss_model, rss_closed_mib=rss_mb(), peak_rss_mib=peak, load=list(_load()))
    return out


def _has_snapshot(db: Path) -> bool:
    """Whether the file holds a snapshot of the session's view (`memory.recall.snapshot`), read
    before the runtime opens it (any snapshot row: whether it fits is the runtime's to decide)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        found = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'view_snapshots'").fetchone()[0] and \
            con.execute("SELECT count(*) FROM view_snapshots WHERE session_id = ?", (SESSION,)).fetchone()[0]
        return bool(found)
    finally:
        con.close()


def _questions_file(db: Path) -> Path:
    return db.with_name(db.name + ".questions.json")


def _load() -> tuple[float, ...]:
    return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--db", type=Path, required=True)
    b.add_argument("--events", type=int, required=True)
    b.add_argument("--unique", type=int, default=None)
    b.add_argument("--vectors", choices=("random", "model"), default="random")
    m = sub.add_parser("measure")
    m.add_argument("--db", type=Path, required=True)
    m.add_argument("--queries", type=int, default=30)
    m.add_argument("--budget", type=int, default=2000)
    m.add_argument("--tracemalloc", action="store_true")
    m.add_argument("--crash", action="store_true", help="kill this process (SIGKILL) once the background snapshot is saved")
    args = parser.parse_args(argv)
    if args.command == "build":
        result = asyncio.run(build(args.db, args.events, args.unique, args.vectors))
    else:
        result = asyncio.run(measure(args.db, args.queries, args.budget, args.tracemalloc, args.crash))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
