"""Stress: many concurrent clients, streaming and not, across shared sessions, through the real proxy.

    python -m benchmarks.stress [--seconds 60] [--clients 100] [--sessions 20] [--max-requests N]
                                [--embedding-model none|<model>] [--upstream-ms 0] [--budget 64]
                                [--storage-url postgresql://... [--instances 3]] [--workers N]
                                [--litellm-bin PATH | --no-litellm]
    python -m benchmarks.stress --largest-request [--embedding-model ...] [--scale 1.0]
                                (`benchmarks.bounded`: /healthz while the largest allowed request runs)

The fake upstream (`testkit.upstream_server`) and the proxy (`memory-runtime serve`, i.e. uvicorn)
run as their own processes on loopback; the clients are asyncio tasks on aiohttp in this process
(`testkit.load`; its docstring says why not httpx, whose pool capped them near 75 req/s): client
`i` talks to session `i % sessions`, so several clients write to one session at the same time; half
the requests stream; every request runs sync, compile and observe).

After the load, every session is exported through `GET /memory/sessions/{id}/export` and each
exchange the client completed is looked up: *lost* if its user message or reply is missing,
*duplicated* if either is stored twice.
With `--storage-url`, `--instances` proxies share one PostgreSQL database and client `i` talks to
instance `i % instances`, so every session's requests arrive at every instance at once. With
`--workers N`, each proxy is `serve --workers N` (N processes on one port and one memory, SQLite
included); the load starts once every worker answers ready (its model loaded) and has imported
litellm (a one-off import in the background that took half the proxy's CPU in the load's first 20 s).
Latency under load is reported for the proxy and, from a separate run, for the same clients
against the fake upstream alone; on a small machine both are dominated by queueing and by the
clients' own CPU, and the difference of two percentiles is not a percentile of anything. What the
proxy adds is measured paired instead: the same request sent straight to the upstream and through
the proxy, back to back, and the percentiles taken over those per-request differences, by one
probe client during the load and by one client alone afterwards (first 20 pairs dropped as
warm-up). Bounded by time and by request count; loopback only.

The peer: LiteLLM's own proxy (`benchmarks.litellm_peer` sets it up; found at its default place
unless `--litellm-bin` names it) in front of the same fake upstream, under the same load (clients,
sessions, seconds, the same probe and single client), right after ours in the same run, so
both see the same machine. It has no memory, so there is nothing to verify; its errors are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

from testkit.load import CLIENT_KEY, Tally, exchange, run_load, user_text, verify
from testkit.processes import Server, await_litellm, start_proxy_process, start_upstream_process
from testkit.serve import is_ready

from .bounded import main as bounded_main
from .litellm_peer import default_bin
from .overhead import _start_litellm

__all__ = ["Added", "PeerResult", "StressResult", "run", "main"]

# Characters per streamed chunk from the fake upstream: a few chunks per reply, as a model sends.
CHUNK_CHARS = 32
# Pairs of the 1-client measurement dropped as warm-up (first connections, first compiles).
WARMUP = 20


async def _direct_load(upstream_url: str, clients: int, seconds: float, max_requests: int) -> tuple[list[float], float]:
    """The same clients against the fake upstream alone: its latency without the proxy, and the
    throughput the clients and the upstream reach by themselves (the harness's own ceiling)."""
    started = time.monotonic()
    tally = await run_load(upstream_url, clients, clients, seconds, max_requests, prefix="d")
    elapsed = time.monotonic() - started
    return tally.latencies_ms, len(tally.completed) / elapsed if elapsed else 0.0


@dataclass(frozen=True)
class Added:
    """What the proxy adds to one request: percentiles of per-request differences (through the
    proxy minus straight to the upstream, the same request sent both ways back to back)."""

    pairs: int
    p50: float
    p99: float


async def _paired(proxy_url: str, upstream_url: str, session: str, limit: int, budget: int,
                  stop: Callable[[], bool] = lambda: False) -> list[float]:
    """One client sending each request straight to the upstream and through the proxy, back to
    back, in alternating order (so drift hits both alike), half of them streaming; returns the
    per-request differences in milliseconds, for `limit` pairs or until `stop()` says so."""
    diffs: list[float] = []
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=proxy_url, timeout=timeout) as via, httpx.AsyncClient(base_url=upstream_url, timeout=timeout) as direct:
        for n in range(limit):
            if stop():
                break
            marker = f"{session}n{n}"
            text, stream = user_text(marker, n), n % 2 == 0
            ms: dict[str, float] = {}
            for name, http in (("direct", direct), ("via", via)) if (n // 2) % 2 == 0 else (("via", via), ("direct", direct)):
                start = time.perf_counter()
                if await exchange(http, session, marker, text, stream, budget) is not None:
                    break
                ms[name] = (time.perf_counter() - start) * 1000
            if len(ms) == 2:
                diffs.append(ms["via"] - ms["direct"])
    return diffs


async def _load_with_probe(proxy_urls: list[str], upstream_url: str, clients: int, sessions: int, seconds: float, max_requests: int,
                           budget: int) -> tuple[Tally, list[float]]:
    """The load (spread over the instances), and meanwhile one probe client measuring paired added
    latency under it through the first instance (it stops with the load, so no pair is measured
    without it)."""
    load = asyncio.create_task(run_load(proxy_urls, clients, sessions, seconds, max_requests, budget))
    diffs = await _paired(proxy_urls[0], upstream_url, "probe", max_requests, budget, stop=load.done)
    return await load, diffs


def _cpu_seconds(servers: list[Server]) -> float:
    """User + system CPU seconds the servers' processes (workers included) have used so far."""
    total = 0.0
    for server in servers:
        root = psutil.Process(server.process.pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _cpu_ms_per_request(cpu_s: float, tally: Tally, probe_pairs: list[float]) -> float:
    """The servers' CPU over the load, per request they answered (the load's and the probe's)."""
    answered = len(tally.completed) + len(probe_pairs)
    return 1000 * cpu_s / answered if answered else float("nan")


def _added(diffs: list[float]) -> Added:
    p50, p99 = _p50_p99(diffs)
    return Added(len(diffs), p50, p99)


@dataclass(frozen=True)
class PeerResult:
    """LiteLLM's proxy under the same load in the same run (no memory: nothing to verify)."""

    requests: int
    completed: int
    errors: dict[str, int]
    latency_ms: tuple[float, float]
    throughput: float
    added_under_load: Added
    added_single: Added
    cpu_ms: float  # its process's CPU per request answered under the load


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
    direct_throughput: float  # the same clients straight at the upstream (separate run): the harness's ceiling
    cpu_ms: float  # the proxy's processes' CPU per request answered under the load: robust on a shared machine
    # Paired, per request: one probe client during the load, and one client alone (warm-up dropped).
    added_under_load: Added
    added_single: Added
    store: str = "sqlite"
    instances: int = 1
    workers: int = 1
    load_average: float = float("nan")  # the machine's 1-minute load average as the load started
    peer: PeerResult | None = None
    peer_note: str = "not measured"

    def markdown(self) -> str:
        p50, p99 = self.proxy_ms
        d50, d99 = self.direct_ms
        load, single = self.added_under_load, self.added_single
        rows = [
            ("store, instances", f"{'SQLite' if self.store == 'sqlite' else 'PostgreSQL'}, {self.instances}"),
            ("worker processes per instance", str(self.workers)),
            ("machine load average (1 min) at the start", f"{self.load_average:.1f}"),
            ("clients / sessions / seconds", f"{self.clients} / {self.sessions} / {self.seconds:g}"),
            ("requests (completed)", f"{self.requests} ({self.completed})"),
            ("throughput", f"{self.throughput:.1f} req/s"),
            ("throughput, the same clients direct to upstream (separate run)", f"{self.direct_throughput:.1f} req/s"),
            ("proxy CPU per request under load (all its processes)", f"{self.cpu_ms:.2f} ms"),
            ("errors", f"{sum(self.errors.values())}" + (f" {dict(self.errors)}" if self.errors else "")),
            ("lost turns", str(self.lost)),
            ("duplicated turns", str(self.duplicated)),
            ("latency under load, through proxy p50 / p99", f"{p50:.1f} / {p99:.1f} ms"),
            ("latency, the same clients direct to upstream (separate run) p50 / p99", f"{d50:.1f} / {d99:.1f} ms"),
            (f"added latency under load, paired ({load.pairs} pairs from a probe client) p50 / p99", f"{load.p50:.1f} / {load.p99:.1f} ms"),
            (f"added latency, 1 client alone, paired ({single.pairs} pairs) p50 / p99", f"{single.p50:.1f} / {single.p99:.1f} ms"),
        ]
        if self.peer is None:
            lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
            return "\n".join(lines) + f"\n\nLiteLLM's proxy under the same load: {self.peer_note}."
        peer = self.peer
        theirs = {
            "requests (completed)": f"{peer.requests} ({peer.completed})",
            "throughput": f"{peer.throughput:.1f} req/s",
            "proxy CPU per request under load (all its processes)": f"{peer.cpu_ms:.2f} ms",
            "errors": f"{sum(peer.errors.values())}" + (f" {dict(peer.errors)}" if peer.errors else ""),
            "latency under load, through proxy p50 / p99": f"{peer.latency_ms[0]:.1f} / {peer.latency_ms[1]:.1f} ms",
            f"added latency under load, paired ({load.pairs} pairs from a probe client) p50 / p99":
                f"{peer.added_under_load.p50:.1f} / {peer.added_under_load.p99:.1f} ms ({peer.added_under_load.pairs} pairs)",
            f"added latency, 1 client alone, paired ({single.pairs} pairs) p50 / p99":
                f"{peer.added_single.p50:.1f} / {peer.added_single.p99:.1f} ms ({peer.added_single.pairs} pairs)",
        }
        lines = ["| measure | memory-runtime | LiteLLM proxy (same load, same run) |", "|---|---|---|"]
        lines += [f"| {k} | {v} | {theirs.get(k, '')} |" for k, v in rows]
        return "\n".join(lines) + f"\n\nLiteLLM's proxy: {self.peer_note}."


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(samples), [50, 99])
    return float(p50), float(p99)


def run(seconds: float, clients: int, sessions: int, max_requests: int, embedding_model: str = "none", upstream_ms: float = 0.0,
        budget: int = 64, direct_seconds: float | None = None, folder: Path | None = None, single_requests: int = 300,
        storage_url: str | None = None, instances: int = 1, litellm_bin: Path | None = None, workers: int = 1) -> StressResult:
    """One load run. With `storage_url` (an empty PostgreSQL database), `instances` proxies share it.
    With `litellm_bin`, LiteLLM's proxy then takes the same load in front of the same upstream."""
    if instances > 1 and not storage_url:
        raise ValueError("several instances need a shared PostgreSQL database (storage_url)")
    folder = folder or Path(tempfile.mkdtemp(prefix="stress-", dir=_tmp_root()))
    upstream = start_upstream_process(folder, upstream_ms, CHUNK_CHARS)
    proxies: list[Server] = []
    try:
        direct_s = direct_seconds if direct_seconds is not None else min(10.0, max(1.0, seconds / 6))
        direct, direct_throughput = asyncio.run(_direct_load(upstream.url, clients, direct_s, max_requests))
        env = {"MEMORY_RUNTIME_STORAGE_URL": storage_url} if storage_url else None
        for i in range(instances):
            home = folder / f"instance{i}"
            home.mkdir(exist_ok=True)
            proxies.append(start_proxy_process(home, upstream.url, embedding_model=embedding_model, env=env, workers=workers))
        urls = [p.url for p in proxies]
        for url in urls:
            _all_workers_ready(url, workers)
        load_average = os.getloadavg()[0]
        started, cpu_before = time.monotonic(), _cpu_seconds(proxies)
        tally, under_load = asyncio.run(_load_with_probe(urls, upstream.url, clients, sessions, seconds, max_requests, budget))
        elapsed, cpu_ms = time.monotonic() - started, _cpu_ms_per_request(_cpu_seconds(proxies) - cpu_before, tally, under_load)
        lost, duplicated = verify(urls[0], tally.completed, [f"stress-{k}" for k in range(sessions)])
        single = asyncio.run(_paired(urls[0], upstream.url, "single", single_requests, budget))
        for proxy in proxies:
            proxy.stop()
        peer, note = (None, "not measured: no LiteLLM proxy executable (see benchmarks/litellm_peer.py)") if litellm_bin is None else (
            _peer(folder, upstream.url, litellm_bin, clients, sessions, seconds, max_requests, budget, single_requests), f"measured ({litellm_bin})")
    finally:
        for proxy in proxies:
            proxy.stop()
        upstream.stop()
    return StressResult(
        clients, sessions, seconds, tally.requests, len(tally.completed), dict(tally.errors), lost, duplicated,
        _p50_p99(tally.latencies_ms), _p50_p99(direct), len(tally.completed) / elapsed if elapsed else 0.0, direct_throughput, cpu_ms,
        _added(under_load), _added(single[WARMUP:]), "postgres" if storage_url else "sqlite", instances, workers, load_average, peer, note,
    )


def _all_workers_ready(url: str, workers: int, deadline_s: float = 300.0) -> None:
    """Wait until `10 * workers` health checks in a row, each on a new connection (which any
    worker may accept), answer ready: a worker still loading its model answers "ok (... loading)";
    then until as many Gemini calls, each on a new connection, were answered (litellm imported)."""
    end, streak = time.monotonic() + deadline_s, 0
    while streak < 10 * workers:
        if time.monotonic() > end:
            raise RuntimeError(f"the workers at {url} were not all ready within {deadline_s:.0f}s")
        with httpx.Client(timeout=5.0) as client:  # a new connection per check
            streak = streak + 1 if is_ready(client.get(url + "/healthz")) else 0
        if streak == 0:
            time.sleep(0.1)  # a worker is still loading: poll again, bounded by the deadline above
    # Each worker imports litellm in a thread after start-up (the proxy started here has a Gemini key);
    # the measured load should not share the CPU with that one-off import (as in benchmarks.overhead).
    for _ in range(10 * workers):
        with httpx.Client(timeout=deadline_s) as client:  # a new connection: any worker may take it
            await_litellm(client, url, CLIENT_KEY)


def _peer(folder: Path, upstream_url: str, litellm_bin: Path, clients: int, sessions: int, seconds: float, max_requests: int,
          budget: int, single_requests: int) -> PeerResult:
    """LiteLLM's proxy in front of the same upstream, under the same load and probes as ours. Its
    master key is the clients' key, so the same clients authenticate unchanged (our headers it ignores)."""
    home = folder / "litellm"
    home.mkdir(exist_ok=True)
    server = _start_litellm(home, upstream_url, litellm_bin, CLIENT_KEY)
    try:
        started, cpu_before = time.monotonic(), _cpu_seconds([server])
        tally, under_load = asyncio.run(_load_with_probe([server.url], upstream_url, clients, sessions, seconds, max_requests, budget))
        elapsed, cpu_ms = time.monotonic() - started, _cpu_ms_per_request(_cpu_seconds([server]) - cpu_before, tally, under_load)
        single = asyncio.run(_paired(server.url, upstream_url, "single", single_requests, budget))
    finally:
        server.stop()
    return PeerResult(tally.requests, len(tally.completed), dict(tally.errors), _p50_p99(tally.latencies_ms),
                      len(tally.completed) / elapsed if elapsed else 0.0, _added(under_load), _added(single[WARMUP:]), cpu_ms)


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
    parser.add_argument("--workers", type=int, default=1, help="worker processes per proxy (serve --workers)")
    parser.add_argument("--litellm-bin", type=Path, default=None,
                        help=f"LiteLLM proxy executable for the peer (default: {default_bin()} when present)")
    parser.add_argument("--no-litellm", action="store_true", help="do not run LiteLLM's proxy under the same load")
    parser.add_argument("--largest-request", action="store_true", help="instead: the largest allowed request, /healthz timed meanwhile")
    parser.add_argument("--scale", type=float, default=1.0, help="with --largest-request: shrink it for a quick run")
    args = parser.parse_args(argv)
    if args.largest_request:
        return bounded_main(["--embedding-model", args.embedding_model, "--scale", str(args.scale)])
    litellm = None if args.no_litellm else args.litellm_bin or (default_bin() if default_bin().exists() else None)
    result = run(args.seconds, args.clients, args.sessions, args.max_requests, args.embedding_model, args.upstream_ms, args.budget,
                 storage_url=args.storage_url, instances=args.instances, litellm_bin=litellm, workers=args.workers)
    print(result.markdown())
    return 0 if not result.errors and not result.lost and not result.duplicated else 1


if __name__ == "__main__":
    sys.exit(main())
