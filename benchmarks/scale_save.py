"""Requests while a large view's snapshot is saved in the background (issue 23).

    python -m benchmarks.scale_save --db /tmp/copy-of-s100k.sqlite [--clients 4] [--baseline-s 6] [--after-s 4]

A process that serves small sessions loads a large one (`scale_restart build`'s file) and the
runtime then saves that view's snapshot in the background (`memory.recall.views`): this times the
small sessions' requests before, during and after that save. The file's snapshot of the large
session is deleted first (so the load reads the rows and a save follows): run it on a copy.

`--clients` clients, each with its own session of 200 chat messages (ingested and embedded
first), send one compile after another (budget 2,000, a fresh question each), each inside
`runtime.busy()` as the proxy's turns are, with `--think-ms` between two of one client's: the
process is never quiet, so the save starts once it has waited its longest (`quiet.MAX_WAIT_S`).
After `--baseline-s` seconds the large session's first compile runs (its view read from the rows);
requests are grouped by when they ran: `baseline` (before that compile), `load` (overlapping
it), `save` (overlapping the save), `after` (after the save, for `--after-s` seconds). One request
of the large session itself is sent as the save starts (`same_session_during_save_ms`: it waits
while the save makes its parts under that session's lock, `same_session_lock_wait_ms` is that wait
alone, which also holds any wait for the session's first compile when the save was called
before it ended; `parts_made_under_lock_ms` is how long the save held the lock), and one after the save (`same_session_after_save_ms`, the same compile's cost without a
save). Prints one JSON object on stdout's last line.
Wall times: run it on a quiet machine, or read them against `baseline` of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import memory.recall.snapshot as snapshot_module
import memory.recall.views as views_module
from memory import create_runtime
from memory.recall.embeddings import load_embedder
from memory.recall.index import SessionView
from memory.recall.views import Views
from memory.runtime import Runtime

from .common import MODEL, peak_rss_mb, percentiles, reset_peak_rss, rss_mb
from .workload import chat_turns, queries

__all__ = ["run"]

SESSION = "scale"  # scale_restart's session
BUDGET = 2000


def _drop_snapshot(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'view_snapshots'").fetchone()[0]:
            con.execute("DELETE FROM view_snapshots WHERE session_id = ?", (SESSION,))
            con.commit()
    finally:
        con.close()


async def run(db: Path, clients: int, baseline_s: float, after_s: float, think_ms: float) -> dict[str, Any]:
    _drop_snapshot(db)
    embedder = load_embedder(None)
    if embedder is None:
        raise SystemExit("this benchmark needs the embedding model")
    asked = json.loads(db.with_name(db.name + ".questions.json").read_text())
    runtime = create_runtime(storage_path=str(db), embedder=embedder)
    saves: list[tuple[float, float]] = []
    made: list[tuple[float, float]] = []  # the parts' making: what the session's lock is held for
    same: list[float] = []
    save, dump = Views._save, snapshot_module.dump

    def timed_dump(view: SessionView) -> Iterator[bytes]:
        t0 = time.perf_counter()
        yield from dump(view)
        made.append((t0, time.perf_counter()))

    setattr(views_module, "dump", timed_dump)  # what `Views._save` calls

    async def timed_save(views: Views, session_id: str, emb: Any) -> bool:
        t0 = time.perf_counter()
        if session_id == SESSION:
            waited = asyncio.ensure_future(_lock_wait(runtime, SESSION))
            same_task = asyncio.ensure_future(_one_compile(runtime, SESSION, asked["warm"][0]))
        stored = await save(views, session_id, emb)
        saves.append((t0, time.perf_counter()))
        if session_id == SESSION:
            same.extend([await waited, await same_task])
        return stored

    out: dict[str, Any] = {"db": str(db), "clients": clients, "think_ms": think_ms}
    async with runtime:
        runtime._views._save = timed_save.__get__(runtime._views)  # type: ignore[method-assign]
        names = [f"small-{i}" for i in range(clients)]
        for i, name in enumerate(names):
            await runtime.session(name).ingest_many(chat_turns(200, seed=100 + i))
            await runtime.session(name).flush()
        questions = queries(2000, seed=5)
        done: list[tuple[float, float]] = []
        stop = asyncio.Event()

        async def client(i: int) -> None:
            n = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                async with runtime.busy():
                    await runtime.session(names[i]).compile(user_message=questions[(n * clients + i) % len(questions)],
                                                            budget_tokens=BUDGET, model=MODEL)
                done.append((t0, time.perf_counter()))
                n += 1
                await asyncio.sleep(think_ms / 1000)

        tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
        await asyncio.sleep(baseline_s)
        reset_peak_rss()
        load0 = time.perf_counter()
        await _one_compile(runtime, SESSION, asked["first"])
        load1 = time.perf_counter()
        out["rss_after_load_mib"] = rss_mb()
        await runtime._views.idle()
        out["same_session_after_save_ms"] = await _one_compile(runtime, SESSION, asked["warm"][1])
        await asyncio.sleep(after_s)
        stop.set()
        await asyncio.gather(*tasks)
        out["peak_rss_from_load_mib"] = peak_rss_mb()
    if not saves:
        raise SystemExit("no background save happened")
    save0, save1 = saves[0]
    groups: dict[str, list[float]] = {"baseline": [], "load": [], "save": [], "after": []}
    for t0, t1 in done:
        ms = (t1 - t0) * 1000
        if t1 < load0:
            groups["baseline"].append(ms)
        elif t0 < load1 and t1 > load0:
            groups["load"].append(ms)
        elif t0 < save1 and t1 > save0:
            groups["save"].append(ms)
        elif t0 > save1:
            groups["after"].append(ms)
    for name, samples in groups.items():
        p = percentiles(samples)
        out[name] = {"n": len(samples), "p50_ms": p.p50, "p99_ms": p.p99, "max_ms": max(samples, default=float("nan"))}
    out.update(load_ms=(load1 - load0) * 1000, save_ms=(save1 - save0) * 1000, save_starts_after_load_ms=(save0 - load1) * 1000,
               parts_made_under_lock_ms=[(b - a) * 1000 for a, b in made], same_session_lock_wait_ms=same[0] if same else None, same_session_during_save_ms=same[1] if same else None,
               loadavg=[float(x) for x in Path("/proc/loadavg").read_text().split()[:3]])
    return out


async def _lock_wait(runtime: Runtime, session_id: str) -> float:
    t0 = time.perf_counter()
    async with runtime.store.session_lock(session_id):
        return (time.perf_counter() - t0) * 1000


async def _one_compile(runtime: Runtime, session_id: str, question: str) -> float:
    t0 = time.perf_counter()
    await runtime.session(session_id).compile(user_message=question, budget_tokens=BUDGET, model=MODEL)
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--baseline-s", type=float, default=6.0)
    parser.add_argument("--after-s", type=float, default=4.0)
    parser.add_argument("--think-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.db, args.clients, args.baseline_s, args.after_s, args.think_ms))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
