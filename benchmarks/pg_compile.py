"""Compile on PostgreSQL against SQLite, interleaved in one process (issue 23, "PostgreSQL parity"):

    python -m benchmarks.pg_compile --events 10000 --rounds 15 [--pg-url postgresql://...] [--profile out.prof]
                                    [--vacuum] [--parity]

Builds the same generated session in an SQLite file and a PostgreSQL database (lexical memory:
`embedding_model="none"`, so the figure is the store's and the compiler's, the query embedding
excluded as in section D), warms both, then compiles the same fresh questions alternating SQLite,
PostgreSQL, SQLite, ... so both see the machine's load at the same moments. Prints each store's
median and p90 and their ratio, and the statements each store ran per compile; `--profile` writes a
cProfile of the PostgreSQL compiles. The machine's load average is printed with the figures
(a shared 2-core machine swings; a ratio from interleaved runs is what compares). Wall time on a
loaded machine also depends on who gets the CPU (PostgreSQL's server runs at its own priority, a
niced benchmark does not), so CPU time is printed too: this process's for SQLite, this process's
plus the database's server processes' (found by the database name in their titles) for PostgreSQL.
`--parity` first checks that both stores return the same full-text hits for the questions (rows,
order, scores) at limits from 1 to 5,000, and the run exits 1 when they do not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from memory import Runtime, create_runtime
from memory.recall.retrieval import fts_query
from testkit.pg import start_pg

from .common import MODEL, Stopwatch
from .workload import queries, session_events

__all__ = ["main"]

BATCH = 1000


_TICK = os.sysconf("SC_CLK_TCK")


def _server_cpu_s(dbname: str) -> float:
    """CPU seconds used so far by the server processes serving `dbname` (Linux /proc), autovacuum's
    workers left out (after a bulk ingest they may run during the compiles, on either code). Read
    from schedstat (nanoseconds) where the kernel keeps it: a compile's server share is a few clock
    ticks, which the 10 ms ticks of /proc/<pid>/stat would round to 0, 10 or 20 ms."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes()
            if dbname.encode() not in title or b"autovacuum" in title:  # a compile's own work, not the background's
                continue
            try:
                total += int((proc / "schedstat").read_text().split()[0]) / 1e9
            except (OSError, IndexError, ValueError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        except OSError:
            continue
    return total


PARITY_LIMITS = (1, 10, 100, 300, 1000, 5000)


async def parity(lite: Runtime, pg: Runtime, questions: list[str], session_id: str) -> int:
    """Each question's full-text hits on both stores at each of `PARITY_LIMITS`: the same rows in
    the same order, with scores within 1e-9 of each other (one session in both, so FTS5's
    file-wide statistics are the session's). Prints the comparison; returns the mismatches."""
    mismatches, worst, compared = 0, 0.0, 0
    for question in questions:
        match = fts_query(question)
        for limit in PARITY_LIMITS:
            a, b = await lite.store.bm25(session_id, match, limit), await pg.store.bm25(session_id, match, limit)
            compared += len(a)
            if [i for i, _ in a] != [i for i, _ in b]:
                mismatches += 1
                print(f"parity: rows differ at limit {limit} for {question!r}", file=sys.stderr)
                continue
            worst = max([worst, *(abs(x - y) / max(abs(x), 1e-12) for (_, x), (_, y) in zip(a, b, strict=True))])
    verdict = "identical rows and order" if not mismatches else f"{mismatches} lists differ"
    print(f"parity: {len(questions)} questions x limits {'/'.join(map(str, PARITY_LIMITS))} ({compared:,} hits): {verdict}, "
          f"largest relative score difference {worst:.1e}")
    return mismatches + (worst > 1e-9)


def _count_statements(runtime: Runtime) -> list[int]:
    """Wrap the store's statement entry points so a compile's round trips can be counted."""
    counter = [0]
    store: Any = runtime.store
    for name in ("_rows", "_together", "bm25"):
        inner = getattr(store, name)

        async def counted(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            counter[0] += 1
            return await _inner(*args, **kwargs)

        setattr(store, name, counted)
    return counter


async def run(events: int, rounds: int, budget: int, pg_url: str | None, profile: str | None, vacuum: bool = False,
              check: bool = False) -> int:
    stream = list(session_events(events))
    questions = queries(rounds, seed=123)
    with tempfile.TemporaryDirectory(prefix="bench-pgc-") as tmp:
        server = start_pg(Path(tmp) / "pg", pg_url)
        try:
            lite = create_runtime(storage_path=str(Path(tmp) / "c.sqlite"), embedding_model="none")
            pg_url_db = server.create_database("pgc")
            dbname = pg_url_db.rsplit("/", 1)[1].split("?", 1)[0]
            pg = create_runtime(storage_url=pg_url_db, embedding_model="none")
            async with lite, pg:
                for name, runtime in (("sqlite", lite), ("postgres", pg)):
                    with Stopwatch() as sw:
                        for start in range(0, len(stream), BATCH):
                            await runtime.session("pgc").ingest_many(stream[start : start + BATCH])
                    print(f"{name}: ingested {events:,} events in {sw.ms / 1000:.1f} s", file=sys.stderr)
                    if name == "postgres" and vacuum:  # the steady state autovacuum reaches: visibility map set, statistics taken
                        with psycopg.connect(pg_url_db, autocommit=True) as conn:
                            conn.execute("VACUUM ANALYZE")
                    for q in queries(3, seed=7):  # warm: view loaded, caches filled
                        await runtime.session("pgc").compile(user_message=q, budget_tokens=budget, model=MODEL)
                failed = await parity(lite, pg, questions, "pgc") if check else 0
                counts = {"sqlite": _count_statements(lite), "postgres": _count_statements(pg)}
                times: dict[str, list[float]] = {"sqlite": [], "postgres": []}
                cpu: dict[str, list[float]] = {"sqlite": [], "postgres": []}
                statements: dict[str, list[int]] = {"sqlite": [], "postgres": []}
                server_cpu: list[float] = []  # PostgreSQL's server processes' share (0 for SQLite)
                profiler = cProfile.Profile() if profile else None
                load_before = os.getloadavg()[0]
                for question in questions:
                    for name, runtime in (("sqlite", lite), ("postgres", pg)):
                        before = counts[name][0]
                        if profiler is not None and name == "postgres":
                            profiler.enable()
                        # The /proc scans (~10 ms each) stay outside this process's timed CPU.
                        server0 = _server_cpu_s(dbname) if name == "postgres" else 0.0
                        cpu0 = time.process_time()
                        with Stopwatch() as sw:
                            await runtime.session("pgc").compile(user_message=question, budget_tokens=budget, model=MODEL)
                        cpu1 = time.process_time()
                        server1 = _server_cpu_s(dbname) if name == "postgres" else 0.0
                        cpu[name].append((cpu1 - cpu0 + server1 - server0) * 1000)
                        server_cpu.append((server1 - server0) * 1000)
                        if profiler is not None and name == "postgres":
                            profiler.disable()
                        times[name].append(sw.ms)
                        statements[name].append(counts[name][0] - before)
                load_after = os.getloadavg()[0]
                if profiler is not None and profile:
                    profiler.dump_stats(profile)
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        p90 = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
        print(f"{name:8s} compile p50 {med[name]:7.1f} ms  p90 {p90:7.1f} ms  statements/compile {statistics.median(statements[name]):.0f}")
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"CPU p50: sqlite {cmed['sqlite']:.1f} ms, postgres {cmed['postgres']:.1f} ms (client + server); "
          f"postgres / sqlite {cmed['postgres'] / cmed['sqlite']:.2f}x; postgres server p50 {statistics.median(server_cpu[1::2]):.1f} ms, "
          f"mean {statistics.mean(server_cpu[1::2]):.1f} ms")
    print(f"postgres / sqlite (p50): {med['postgres'] / med['sqlite']:.2f}x  "
          f"({events:,} events, {rounds} rounds interleaved, load average {load_before:.1f} -> {load_after:.1f}{', vacuumed' if vacuum else ''})")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--pg-url", default=None, help="an existing server's maintenance database (default: a private pgserver)")
    parser.add_argument("--profile", default=None, help="write a cProfile of the PostgreSQL compiles here")
    parser.add_argument("--parity", action="store_true", help="first compare both stores' full-text hits for the questions at several limits")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM ANALYZE the database after the ingest (the state autovacuum reaches)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.events, args.rounds, args.budget, args.pg_url, args.profile, args.vacuum, args.parity))


if __name__ == "__main__":
    sys.exit(main())
