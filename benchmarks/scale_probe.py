"""One scale measurement in a fresh process (so its RSS is the library's, not the harness's):

    python -m benchmarks.scale_probe --events 10000 --queries 30 [--pg-url postgresql://...]

Ingests a generated session in batches with embeddings off (storing and indexing alone), then
again with the model (the runtime embeds in the background; flush waits for the rest), compiles
fresh questions, reopens the store and compiles once cold, then prints one JSON object on stdout's
last line. With `--pg-url` (a server's maintenance database) the same runs go to fresh PostgreSQL
databases instead of SQLite files (dropped afterwards); the size reported is the database's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from memory import Session, create_runtime
from memory.recall.embeddings import load_embedder
from testkit.pg import PgServer

from .common import MODEL, Stopwatch, peak_rss_mb, percentiles, progress, rss_mb
from .timed_embedder import TimedEmbedder
from .workload import queries, session_events

__all__ = ["ProbeResult", "probe"]

BATCH = 1000


@dataclass(frozen=True)
class ProbeResult:
    events: int
    unique: int  # distinct event texts (the rest repeat them)
    budget: int
    ingest_s: float  # the ingest_many calls (the runtime embeds in the background meanwhile)
    flush_s: float  # waiting until every chunk is embedded
    embed_s: float  # time inside the embedder during ingest + flush
    texts_embedded: int
    store_only_s: float  # the same ingest into a fresh file with embeddings off: storing and indexing alone
    compile_ms: list[float]  # wall, warm, query embedding included
    compile_excl_embed_ms: list[float]  # the same compiles minus their query-embedding time
    first_compile_ms: float
    cold_compile_ms: float  # first compile after reopening the store (view rebuilt from the database)
    rss_model_mb: float  # after loading the model, before any data
    rss_mb: float  # after the compiles
    peak_rss_mb: float
    db_mb: float


async def _ingest(session: Session, stream: list[dict[str, Any]], label: str, show_progress: bool) -> float:
    with Stopwatch() as sw:
        for start in progress(range(0, len(stream), BATCH), label, total=-(-len(stream) // BATCH), enabled=show_progress):
            await session.ingest_many(stream[start : start + BATCH])
    return sw.ms / 1000


@asynccontextmanager
async def _stores(tmp: str, pg_url: str | None) -> AsyncIterator[tuple[dict[str, str], dict[str, str], Callable[[], Awaitable[float]]]]:
    """Where the store-only run and the measured run keep their data (create_runtime keywords),
    and how to read the measured store's size in MiB."""
    if pg_url is None:
        yield ({"storage_path": str(Path(tmp) / "lexical.sqlite")}, {"storage_path": str(Path(tmp) / "scale.sqlite")},
               _folder_size(Path(tmp)))
        return
    server = PgServer(pg_url)
    lexical, measured = server.create_database("scale_lexical"), server.create_database("scale")

    async def size() -> float:
        async with await psycopg.AsyncConnection.connect(measured) as conn:
            row = await (await conn.execute("SELECT pg_database_size(current_database())")).fetchone()
        return float(row[0]) / 2**20 if row else 0.0

    try:
        yield {"storage_url": lexical}, {"storage_url": measured}, size
    finally:
        server.stop()


def _folder_size(folder: Path) -> Callable[[], Awaitable[float]]:
    async def size() -> float:
        return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("scale.sqlite")) / 2**20
    return size


async def probe(events: int, n_queries: int, budget: int, unique: int | None, show_progress: bool, pg_url: str | None = None) -> ProbeResult:
    inner = load_embedder(None)
    if inner is None:
        raise RuntimeError("the scale probe needs the embedding model")
    embedder = TimedEmbedder(inner)
    rss_model = rss_mb()
    compile_ms: list[float] = []
    excl_ms: list[float] = []
    stream = list(session_events(events, unique=unique))
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        async with _stores(tmp, pg_url) as (lexical, measured, db_size):
            async with create_runtime(embedding_model="none", **lexical) as runtime:
                store_only_s = await _ingest(runtime.session("scale"), stream, f"store only {events:,}", show_progress)
            async with create_runtime(embedder=embedder, **measured) as runtime:
                session = runtime.session("scale")
                ingest_s = await _ingest(session, stream, f"ingest {events:,}", show_progress)
                with Stopwatch() as sw:
                    await session.flush()
                flush_s = sw.ms / 1000
                embed_s, texts = embedder.seconds, embedder.texts
                with Stopwatch() as sw:
                    await session.compile(user_message="What did we change in the retrieval code?", budget_tokens=budget, model=MODEL)
                first_ms = sw.ms
                for question in progress(queries(n_queries), f"compile {events:,}", enabled=show_progress):
                    before = embedder.seconds
                    with Stopwatch() as sw:
                        result = await session.compile(user_message=question, budget_tokens=budget, model=MODEL)
                    if result.tokens > budget:
                        raise AssertionError(f"compile exceeded its budget: {result.tokens} > {budget}")
                    compile_ms.append(sw.ms)
                    excl_ms.append(sw.ms - (embedder.seconds - before) * 1000.0)
            async with create_runtime(embedder=embedder, **measured) as runtime:
                with Stopwatch() as sw:
                    await runtime.session("scale").compile(user_message=queries(1, seed=5)[0], budget_tokens=budget, model=MODEL)
                cold_ms = sw.ms
                rss_after = rss_mb()
            db_mb = await db_size()
    return ProbeResult(events, min(events, unique or events), budget, ingest_s, flush_s, embed_s, texts, store_only_s,
                       compile_ms, excl_ms, first_ms, cold_ms, rss_model, rss_after, peak_rss_mb(), db_mb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--unique", type=int, default=None, help="distinct event texts; later events repeat them")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--pg-url", default=None, help="a PostgreSQL server (its maintenance database): measure the PostgreSQL store")
    args = parser.parse_args(argv)
    result = asyncio.run(probe(args.events, args.queries, args.budget, args.unique, not args.no_progress, args.pg_url))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
