"""Stress: many concurrent clients, streaming and not, across shared sessions, through the real proxy.

    python -m benchmarks.stress [--seconds 60] [--clients 100] [--sessions 20] [--max-requests N]
                                [--embedding-model none|<model>] [--upstream-ms 0] [--budget 64]
                                [--storage-url postgresql://... [--instances 3]]

The fake upstream (`testkit.upstream_server`) and the proxy (`memory-runtime serve`, i.e. uvicorn)
run as their own processes on loopback; the clients are asyncio tasks here (`testkit.load`: client
`i` talks to session `i % sessions`, so several clients write to one session at the same time; half
the requests stream; every request runs sync, compile and observe).

After the load, every session is exported through `GET /memory/sessions/{id}/export` and each
exchange the client completed is looked up: *lost* if its user message or reply is missing,
*duplicated* if either is stored twice.
With `--storage-url`, `--instances` proxies share one PostgreSQL database and client `i` talks to
instance `i % instances`, so every session's requests arrive at every instance at once.
Latency under load is compared with a direct phase (the same clients against the fake upstream
alone); on a small machine both are dominated by queueing and by the clients' own CPU, so the
proxy's own cost is measured separately: one client, one request at a time (first 20 discarded as
warm-up), through the proxy and direct. Bounded by time and by request count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testkit.load import run_load, verify
from testkit.processes import Server, start_proxy_process, start_upstream_process

__all__ = ["StressResult", "run", "main"]

# Characters per streamed chunk from the fake upstream: a few chunks per reply, as a model sends.
CHUNK_CHARS = 32


async def _direct_load(upstream_url: str, clients: int, seconds: float, max_requests: int) -> list[float]:
    """The same clients against the fake upstream alone: the baseline for added latency."""
    tally = await run_load(upstream_url, clients, clients, seconds, max_requests, prefix="d")
    return tally.latencies_ms


@dataclass(frozen=True)
class StressResult:
    clients: int
    sessions: int
    seconds: float
    requests: int
    completed: int
    errors: dict[str, int]
    lost: int
    duplicated: int
    proxy_ms: tuple[float, float]
    direct_ms: tuple[float, float]
    throughput: float
    # One client, one request at a time, half streaming: what the proxy itself adds.
    single_proxy_ms: tuple[float, float] = (float("nan"), float("nan"))
    single_direct_ms: tuple[float, float] = (float("nan"), float("nan"))
    store: str = "sqlite"
    instances: int = 1

    def markdown(self) -> str:
        p50, p99 = self.proxy_ms
        d50, d99 = self.direct_ms
        s50, s99 = self.single_proxy_ms
        sd50, sd99 = self.single_direct_ms
        rows = [
            ("store, instances", f"{'SQLite' if self.store == 'sqlite' else 'PostgreSQL'}, {self.instances}"),
            ("clients / sessions / seconds", f"{self.clients} / {self.sessions} / {self.seconds:g}"),
            ("requests (completed)", f"{self.requests} ({self.completed})"),
            ("throughput", f"{self.throughput:.1f} req/s"),
            ("errors", f"{sum(self.errors.values())}" + (f" {dict(self.errors)}" if self.errors else "")),
            ("lost turns", str(self.lost)),
            ("duplicated turns", str(self.duplicated)),
            ("latency under load, through proxy p50 / p99", f"{p50:.1f} / {p99:.1f} ms"),
            ("latency under load, direct to upstream p50 / p99", f"{d50:.1f} / {d99:.1f} ms"),
            ("added latency under load p50 / p99", f"{p50 - d50:.1f} / {p99 - d99:.1f} ms"),
            ("added latency, 1 client p50 / p99", f"{s50 - sd50:.1f} / {s99 - sd99:.1f} ms"),
        ]
        lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines)


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(samples), [50, 99])
    return float(p50), float(p99)


def run(seconds: float, clients: int, sessions: int, max_requests: int, embedding_model: str = "none", upstream_ms: float = 0.0,
        budget: int = 64, direct_seconds: float | None = None, folder: Path | None = None, single_requests: int = 300,
        storage_url: str | None = None, instances: int = 1) -> StressResult:
    """One load run. With `storage_url` (an empty PostgreSQL database), `instances` proxies share it."""
    if instances > 1 and not storage_url:
        raise ValueError("several instances need a shared PostgreSQL database (storage_url)")
    folder = folder or Path(tempfile.mkdtemp(prefix="stress-", dir=_tmp_root()))
    upstream = start_upstream_process(folder, upstream_ms, CHUNK_CHARS)
    proxies: list[Server] = []
    try:
        direct_s = direct_seconds if direct_seconds is not None else min(10.0, max(1.0, seconds / 6))
        direct = asyncio.run(_direct_load(upstream.url, clients, direct_s, max_requests))
        single_direct = asyncio.run(_direct_load(upstream.url, 1, 15, single_requests))
        env = {"MEMORY_RUNTIME_STORAGE_URL": storage_url} if storage_url else None
        for i in range(instances):
            home = folder / f"instance{i}"
            home.mkdir(exist_ok=True)
            proxies.append(start_proxy_process(home, upstream.url, embedding_model=embedding_model, env=env))
        urls = [p.url for p in proxies]
        started = time.monotonic()
        tally = asyncio.run(run_load(urls, clients, sessions, seconds, max_requests, budget))
        elapsed = time.monotonic() - started
        lost, duplicated = verify(urls[0], tally.completed, [f"stress-{k}" for k in range(sessions)])
        single_proxy = asyncio.run(run_load(urls[0], 1, 1, 15, single_requests, budget, prefix="sp", session_prefix="single")).latencies_ms
    finally:
        for proxy in proxies:
            proxy.stop()
        upstream.stop()
    return StressResult(
        clients, sessions, seconds, tally.requests, len(tally.completed), dict(tally.errors), lost, duplicated,
        _p50_p99(tally.latencies_ms), _p50_p99(direct), len(tally.completed) / elapsed if elapsed else 0.0,
        _p50_p99(single_proxy[20:]), _p50_p99(single_direct[20:]), "postgres" if storage_url else "sqlite", instances,
    )


def _tmp_root() -> str:
    root = Path(tempfile.gettempdir()) / "memory-runtime-stress"
    root.mkdir(exist_ok=True)
    return str(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stress", description="Concurrent load through the real proxy.")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop starting requests after this many")
    parser.add_argument("--embedding-model", default="none", help='"none" (lexical memory) or a model name')
    parser.add_argument("--upstream-ms", type=float, default=0.0, help="simulated upstream latency")
    parser.add_argument("--budget", type=int, default=64, help="X-Memory-Budget, below each request's size so every request compiles")
    parser.add_argument("--storage-url", default=None, help="an empty PostgreSQL database the proxies share (default: SQLite)")
    parser.add_argument("--instances", type=int, default=1, help="proxies on --storage-url, each taking a share of the clients")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.clients, args.sessions, args.max_requests, args.embedding_model, args.upstream_ms, args.budget,
                 storage_url=args.storage_url, instances=args.instances)
    print(result.markdown())
    return 0 if not result.errors and not result.lost and not result.duplicated else 1


if __name__ == "__main__":
    sys.exit(main())
