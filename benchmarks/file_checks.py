"""What the file-identity check costs: before every commit the SQLite store checks that the path
still names the database file (and, since issue 21, the `-wal` file) its connection opened.

    python -m benchmarks.file_checks [--checks 20000] [--turns 300]

Times the check alone (`--checks` calls) and one stored turn (`--turns` ingests of a user and an
assistant message, one commit each, which is what a chat request commits after its reply), in a
fresh lexical-memory database on the local disk. Runs against whatever `memory` is importable, so
the same command measures another checkout (`PYTHONPATH=<checkout> python -m benchmarks.file_checks`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from memory import create_runtime
from memory.store.sqlite.store import SqliteStore

__all__ = ["run", "main"]


async def run(checks: int, turns: int, folder: Path) -> dict[str, float]:
    async with create_runtime(storage_path=folder / "checks.sqlite", embedding_model="none") as rt:
        store = rt.store
        if not isinstance(store, SqliteStore):
            raise SystemExit("needs the SQLite store")
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(checks):
                if store._file_problem() is not None:  # the very call each commit makes
                    raise SystemExit("the check found a problem in a fresh database")
            rounds.append((time.perf_counter() - start) / checks)
        session = rt.session("bench/checks")
        commits = []
        for n in range(turns):
            start = time.perf_counter()
            await session.ingest_many([{"type": "user_message", "payload": {"content": f"question {n} about the storage budget"}},
                                       {"type": "assistant_message", "payload": {"content": f"answer {n}: keep the budget"}}])
            commits.append(time.perf_counter() - start)
    return {"check_us": statistics.median(rounds) * 1e6, "turn_commit_ms": statistics.median(commits) * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.file_checks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
        out = asyncio.run(run(args.checks, args.turns, Path(folder)))
    share = out["check_us"] / (out["turn_commit_ms"] * 1000) * 100
    print(f"file check: {out['check_us']:.2f} us per commit (median of 5 x {args.checks}); "
          f"one stored turn: {out['turn_commit_ms']:.3f} ms (median of {args.turns}); the check is {share:.2f}% of it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
