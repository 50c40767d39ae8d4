"""Footprint: resident memory of the proxy after touching many sessions, and what the bounded view
cache (`memory.recall.views.MAX_VIEWS`) saves against an unbounded one.

    python -m benchmarks.footprint [--sessions 10000] [--turns 3]

1. Through the real proxy (`memory-runtime serve`, lexical memory): each session gets `--turns`
   requests, each over its budget so it compiles (which builds the session's in-process view);
   the proxy's RSS (VmRSS) is read at checkpoints, the first after a warm-up of 100 sessions.
2. The library alone, the same sessions with `max_views` at its default and at "unbounded" (larger
   than the session count), RSS at the same checkpoints, each in a fresh child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from memory.recall.views import MAX_VIEWS
from testkit.processes import start_proxy_process, start_upstream_process

__all__ = ["rss_mib", "through_proxy", "library", "main"]

KEY = "sk-footprint-benchmark-not-a-real-key"
TEXT = ("Decision: we keep the retry budget at {n} per minute for worker {s}; the queue drains nightly and we review it on "
        "Fridays, after the release train, with the on-call engineer and whoever owns the billing service that week.")
WARM_UP = 100  # sessions touched before the first reading: the tokenizer tables and caches load on first use


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _checkpoints(sessions: int) -> list[int]:
    return sorted({n for n in (WARM_UP, 1000, 2500, 5000, sessions) if WARM_UP <= n <= sessions})


async def _touch(url: str, sessions: int, turns: int, checkpoints: list[int], pid: int) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as http:
        async def one(s: int) -> None:
            history: list[dict[str, str]] = []
            for n in range(turns):
                history.append({"role": "user", "content": TEXT.format(n=n, s=s)})
                response = await http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": history},
                                           headers={"X-Memory-Session": f"fp-{s}", "X-Memory-Budget": "40"})
                response.raise_for_status()
                history.append({"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]})

        done = 0
        for mark in checkpoints:
            for start in range(done, mark, 16):
                await asyncio.gather(*(one(s) for s in range(start, min(start + 16, mark))))
            done = mark
            out.append((mark, rss_mib(pid)))
    return out


def through_proxy(sessions: int, turns: int, folder: Path) -> list[tuple[int, float]]:
    upstream = start_upstream_process(folder)
    try:
        proxy = start_proxy_process(folder, upstream.url)
        try:
            return asyncio.run(_touch(proxy.url, sessions, turns, _checkpoints(sessions), proxy.process.pid))
        finally:
            proxy.stop()
    finally:
        upstream.stop()


_LIBRARY = """
import asyncio, json, sys
from benchmarks.footprint import TEXT, rss_mib
from memory import Runtime
import os
sessions, turns, max_views, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
marks = json.loads(sys.argv[5])
async def main():
    out = []
    async with Runtime(path, embedding_model="none", max_views=max_views) as rt:
        done = 0
        for mark in marks:
            for s in range(done, mark):
                session = rt.session(f"fp-{s}")
                history = []
                for n in range(turns):
                    history.append({"role": "user", "content": TEXT.format(n=n, s=s)})
                    await session.sync_messages(history)
                    await session.compile("what did we decide?", budget_tokens=40)
                    history.append({"role": "assistant", "content": "noted"})
            done = mark
            out.append((mark, rss_mib(os.getpid())))
    print(json.dumps(out))
asyncio.run(main())
"""


def library(sessions: int, turns: int, max_views: int, folder: Path) -> list[tuple[int, float]]:
    """The same sessions through the library in a fresh child process (so RSS starts clean)."""
    path = folder / f"library-{max_views}.sqlite"
    args = [sys.executable, "-c", _LIBRARY, str(sessions), str(turns), str(max_views), str(path), json.dumps(_checkpoints(sessions))]
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return [(int(n), float(r)) for n, r in json.loads(done.stdout.strip().splitlines()[-1])]


def _table(rows: dict[str, list[tuple[int, float]]]) -> str:
    marks = [n for n, _ in next(iter(rows.values()))]
    lines = ["| sessions touched | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for i, mark in enumerate(marks):
        lines.append(f"| {mark:,} | " + " | ".join(f"{series[i][1]:.0f} MiB" for series in rows.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.footprint", description="RSS after touching many sessions.")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="footprint-"))
    rows = {
        "proxy RSS": through_proxy(args.sessions, args.turns, folder),
        f"library, max_views={MAX_VIEWS}": library(args.sessions, args.turns, MAX_VIEWS, folder),
        "library, unbounded views": library(args.sessions, args.turns, args.sessions + 1, folder),
    }
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
