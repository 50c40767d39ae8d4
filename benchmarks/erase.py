"""Erase cost: how long deleting one session takes in a database holding many others, and how many
bytes it writes (the database and WAL files grow by what a delete rewrites).

    python -m benchmarks.erase [--sessions 2000] [--messages 40] [--deletes 5]

Builds a lexical-memory database of `--sessions` sessions of `--messages` messages each (prose
with a unique token per session), then erases `--deletes` of them one at a time, timing each and
checking the erased tokens are gone from every file. Runs against whatever `memory` is importable,
so the same command measures another checkout (`PYTHONPATH=<checkout> python -m benchmarks.erase`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from memory import create_runtime

__all__ = ["run", "main"]

_WORDS = ("storage", "retry", "budget", "ranking", "session", "cache", "deploy", "schema", "token", "latency", "index", "queue")


def _files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


async def run(sessions: int, messages: int, deletes: int, folder: Path) -> dict[str, float]:
    path = folder / "erase.sqlite"
    rng = random.Random(5)
    async with create_runtime(storage_path=path, embedding_model="none") as rt:
        for s in range(sessions):
            history = [{"role": "user" if i % 2 == 0 else "assistant",
                        "content": f"qzerase{s}x " + " ".join(rng.choice(_WORDS) for _ in range(60))} for i in range(messages)]
            await rt.session(f"erase-{s}").sync_messages(history)
        size = sum(p.stat().st_size for p in _files(path))
        times: list[float] = []
        for s in range(deletes):
            start = time.perf_counter()
            assert await rt.delete_session(f"erase-{s}")
            times.append(time.perf_counter() - start)
            needle = f"qzerase{s}x ".encode()
            assert not any(needle in p.read_bytes() for p in _files(path)), "erased text still on disk"
    return {"database_mib": size / 1_048_576, "median_s": statistics.median(times), "max_s": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.erase", description="Time to erase one session among many.")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--deletes", type=int, default=5)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.sessions, args.messages, args.deletes, Path(tempfile.mkdtemp(prefix="erase-"))))
    print(f"| database | erase one session: median | max |\n|---|---|---|\n"
          f"| {result['database_mib']:.1f} MiB ({args.sessions} sessions x {args.messages} messages) | "
          f"{result['median_s'] * 1000:.0f} ms | {result['max_s'] * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
