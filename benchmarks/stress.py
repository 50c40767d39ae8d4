"""Stress: many concurrent clients, streaming and not, across shared sessions, through the real proxy.

    python -m benchmarks.stress [--seconds 60] [--clients 100] [--sessions 20] [--max-requests N]
                                [--embedding-model none|<model>] [--upstream-ms 0] [--budget 64]

The fake upstream (`benchmarks.stress_upstream`) and the proxy (`memory-runtime serve`, i.e. uvicorn)
run as their own processes on loopback; the clients are asyncio tasks here. Client `i` talks to
session `i % sessions`, so several clients write to one session at the same time; even clients
stream. Every request carries one new user message with a unique marker and a budget below its
size, so each one runs sync, compile (retrieval over the growing session) and observe.

After the load, every session is exported through `GET /memory/sessions/{id}/export` and each
exchange the client completed (a 200 with the reply, or a stream that reached `[DONE]`) is looked
up: *lost* if its user message or reply is missing, *duplicated* if either is stored twice.
Latency under load is compared with a direct phase (the same clients against the fake upstream
alone); on a small machine both are dominated by queueing and by the clients' own CPU, so the
proxy's own cost is measured separately: one client, one request at a time (first 20 discarded as
warm-up), through the proxy and direct. Bounded by time and by request count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .processes import free_port, start_server

__all__ = ["Exchange", "Tally", "Served", "StressResult", "start_upstream", "start_proxy", "run_load", "verify", "run", "main"]

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
SYSTEM = "You are the stress-test assistant. Answer briefly, keep decisions, never invent facts."
# The clients' (fake) key: the proxy scopes memory by caller, so the export uses it too.
CLIENT_KEY = "sk-stress-not-a-real-key"
TOPICS = ["billing retries", "cache eviction", "schema migration", "login throttling", "queue backpressure", "search ranking"]


@dataclass(frozen=True)
class Exchange:
    """One request whose reply the client fully received."""

    session: str
    marker: str
    stream: bool


@dataclass
class Tally:
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    completed: list[Exchange] = field(default_factory=list)
    # Set to end the load early (the crash test sets it once the proxy is killed).
    stop: bool = False


@dataclass
class Served:
    """A server process on loopback, polled healthy before use."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def _spawn(args: list[str], env: dict[str, str], url: str, log_path: Path, deadline_s: float = 60.0, health: str = "/healthz") -> Served:
    server = start_server(args[2], args, int(url.rsplit(":", 1)[1]), health, log_path, ROOT, env, deadline_s)
    return Served(url, server.process, log_path)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMORY_RUNTIME_", "OPENAI_", "GEMINI_"))}


def start_upstream(folder: Path, latency_ms: float = 0.0) -> Served:
    port = free_port()
    args = [sys.executable, "-m", "benchmarks.stress_upstream", "--port", str(port), "--latency-ms", str(latency_ms)]
    return _spawn(args, _clean_env(), f"http://127.0.0.1:{port}", folder / "upstream.log")


def start_proxy(folder: Path, upstream_url: str, embedding_model: str = "none", port: int | None = None, log_level: str = "warning",
                env: dict[str, str] | None = None, health: str = "/healthz") -> Served:
    """`memory-runtime serve` on a fresh port (or `port`), storing in `folder/memory.sqlite`, with
    `env` added to a clean environment (no inherited MEMORY_RUNTIME_/OPENAI_/GEMINI_ variables);
    ready when `health` answers 200 (/healthz also needs memory to be usable)."""
    port = port or free_port()
    config = folder / "proxy.yaml"
    config.write_text(
        f"storage_path: {folder / 'memory.sqlite'}\nlog_level: {log_level}\n"
        f"upstreams: {{retries: 0, openai: {{api_base: {upstream_url}/v1}}, gemini: {{api_base: {upstream_url}/v1beta}}}}\n"
        f"embedding: {{model: {embedding_model}}}\n"
    )
    args = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config), "--port", str(port)]
    return _spawn(args, {**_clean_env(), **(env or {})}, f"http://127.0.0.1:{port}", folder / "proxy.log", health=health)


def _user_text(marker: str, n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return f"[{marker}] Next step on {topic}: compare option {n % 7} with what we decided before and list the risks for {topic}."


async def _one(http: httpx.AsyncClient, session: str, marker: str, text: str, stream: bool, budget: int) -> str | None:
    """Send one exchange; returns None when the reply arrived whole, else the kind of failure."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]}
    headers = {"X-Memory-Session": session, "X-Memory-Budget": str(budget), "Authorization": f"Bearer {CLIENT_KEY}"}
    if not stream:
        response = await http.post("/v1/chat/completions", json=body, headers=headers)
        if response.status_code != 200:
            return f"status {response.status_code}"
        reply = response.json()["choices"][0]["message"]["content"]
        return None if reply == "echo: " + text else "wrong reply"
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    pieces: list[str] = []
    done = False
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            return f"status {response.status_code}"
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                continue
            event = json.loads(data)
            if "error" in event:
                return "error event"
            for choice in event.get("choices") or []:
                pieces.append((choice.get("delta") or {}).get("content") or "")
    if not done:
        return "no [DONE]"
    return None if "".join(pieces) == "echo: " + text else "wrong reply"


async def _client(http: httpx.AsyncClient, index: int, session: str, deadline: float, limit: int, tally: Tally, budget: int, prefix: str) -> None:
    n = 0
    while time.monotonic() < deadline and tally.requests < limit and not tally.stop:
        tally.requests += 1
        marker = f"{prefix}c{index}n{n}"
        stream = (index + n) % 2 == 0  # every client alternates, so half the requests in flight stream
        text = _user_text(marker, index + n)
        start = time.perf_counter()
        try:
            problem = await _one(http, session, marker, text, stream, budget)
        except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
            problem = type(exc).__name__
        if problem is None:
            tally.latencies_ms.append((time.perf_counter() - start) * 1000)
            tally.completed.append(Exchange(session, marker, stream))
        else:
            tally.errors[problem] += 1
        n += 1


async def run_load(base_url: str, clients: int, sessions: int, seconds: float, max_requests: int, budget: int = 64, prefix: str = "m",
                   session_prefix: str = "stress", tally: Tally | None = None) -> Tally:
    """Drive `clients` concurrent clients for `seconds` (or until `max_requests` were started, or
    `tally.stop` is set); pass `tally` to watch progress from another task."""
    tally = tally or Tally()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0), limits=limits) as http:
        await asyncio.gather(
            *(_client(http, i, f"{session_prefix}-{i % sessions}", deadline, max_requests, tally, budget, prefix) for i in range(clients))
        )
    return tally


async def _direct_load(upstream_url: str, clients: int, seconds: float, max_requests: int) -> list[float]:
    """The same clients against the fake upstream alone: the baseline for added latency."""
    tally = await run_load(upstream_url, clients, clients, seconds, max_requests, prefix="d")
    return tally.latencies_ms


def verify(base_url: str, completed: list[Exchange], session_ids: list[str]) -> tuple[int, int]:
    """(lost, duplicated) over the completed exchanges, against what the proxy exports."""
    users: Counter[str] = Counter()
    replies: Counter[str] = Counter()
    with httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as http:
        for sid in session_ids:
            response = http.get(f"/memory/sessions/{sid}/export")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            for event in response.json()["events"]:
                content = event.get("content") or ""
                marker = content.split("]", 1)[0].rsplit("[", 1)[-1] if "[" in content else ""
                if event["type"] == "user_message":
                    users[marker] += 1
                elif event["type"] == "assistant_message":
                    replies[marker] += 1
    lost = sum(1 for ex in completed if users[ex.marker] == 0 or replies[ex.marker] == 0)
    duplicated = sum(1 for ex in completed if users[ex.marker] > 1 or replies[ex.marker] > 1)
    return lost, duplicated


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

    def markdown(self) -> str:
        p50, p99 = self.proxy_ms
        d50, d99 = self.direct_ms
        s50, s99 = self.single_proxy_ms
        sd50, sd99 = self.single_direct_ms
        rows = [
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
        budget: int = 64, direct_seconds: float | None = None, folder: Path | None = None, single_requests: int = 300) -> StressResult:
    folder = folder or Path(tempfile.mkdtemp(prefix="stress-", dir=_tmp_root()))
    upstream = start_upstream(folder, upstream_ms)
    try:
        direct_s = direct_seconds if direct_seconds is not None else min(10.0, max(1.0, seconds / 6))
        direct = asyncio.run(_direct_load(upstream.url, clients, direct_s, max_requests))
        single_direct = asyncio.run(_direct_load(upstream.url, 1, 15, single_requests))
        proxy = start_proxy(folder, upstream.url, embedding_model)
        try:
            started = time.monotonic()
            tally = asyncio.run(run_load(proxy.url, clients, sessions, seconds, max_requests, budget))
            elapsed = time.monotonic() - started
            lost, duplicated = verify(proxy.url, tally.completed, [f"stress-{k}" for k in range(sessions)])
            single_proxy = asyncio.run(run_load(proxy.url, 1, 1, 15, single_requests, budget, prefix="sp", session_prefix="single")).latencies_ms
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    return StressResult(
        clients, sessions, seconds, tally.requests, len(tally.completed), dict(tally.errors), lost, duplicated,
        _p50_p99(tally.latencies_ms), _p50_p99(direct), len(tally.completed) / elapsed if elapsed else 0.0,
        _p50_p99(single_proxy[20:]), _p50_p99(single_direct[20:]),
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
    args = parser.parse_args(argv)
    result = run(args.seconds, args.clients, args.sessions, args.max_requests, args.embedding_model, args.upstream_ms, args.budget)
    print(result.markdown())
    return 0 if not result.errors and not result.lost and not result.duplicated else 1


if __name__ == "__main__":
    sys.exit(main())
