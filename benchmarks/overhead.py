"""Section C: what a proxy adds to a chat call, against a fake upstream on loopback.

The fake upstream, the memory-runtime proxy and (when installed) LiteLLM's own proxy each run in
their own process. For a session of N turns, every request resends the same N-turn history plus a
fresh user question; per iteration the direct call and the call through each proxy run back to
back, in rotating order, so drift and noise hit all paths alike. The Responses API row sends the
same history as `input` to `/v1/responses` (with `store: false`, as a stateless app would), paired
with a direct `/v1/responses` call, in the same rotation: its added latency against the chat row's
is the Responses route's own cost at the same session size. Reported: non-streaming latency and
streaming time-to-first-content-token, p50/p95/p99 of each path and of the paired difference; and
what a loaded machine does not inflate: the memory-runtime proxy's CPU time (user + system, from
/proc) during each of its requests (mean: /proc counts in 10 ms ticks), and per request what it spent outside them (the
background embedding those requests left, counted until the proxy is idle again after each mode).

`python -m benchmarks.run_all` renders it as section C; for some sizes alone, with LiteLLM's proxy
from `python -m benchmarks.litellm_peer`:

    python -m benchmarks.overhead --turns 10,50 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from testkit.processes import Server, await_litellm, free_port, start_proxy_process, start_server, start_upstream_process

from .common import MODEL, Percentiles, percentiles, progress
from .corpus import REPO_ROOT
from .litellm_peer import default_bin
from .workload import chat_turns, queries

__all__ = ["OverheadRow", "OverheadResult", "run_overhead"]

OURS = "memory-runtime proxy"
OURS_RESPONSES = "memory-runtime proxy, Responses API"
LITELLM = "LiteLLM proxy 1.106.2"
DIRECT_KEY = "sk-bench-not-a-real-key"
PROXY_BUDGET = 2000
WARMUP = 3


@dataclass(frozen=True)
class OverheadRow:
    target: str
    turns: int
    mode: str  # "non-stream" (full response) or "stream TTFT"
    direct: Percentiles
    via: Percentiles
    added: Percentiles  # paired: via - direct of the same iteration
    compiled_share: float | None  # memory-runtime only: share of requests that were compiled
    cpu_ms: float | None = None  # memory-runtime only: the proxy's CPU during one of its requests, mean (/proc counts 10 ms ticks)
    background_cpu_ms: float | None = None  # memory-runtime only: its CPU outside its requests, per request of both its paths


@dataclass(frozen=True)
class OverheadResult:
    sizes: tuple[int, ...]
    iterations: int
    budget: int
    rows: tuple[OverheadRow, ...]
    litellm_note: str


@dataclass(frozen=True)
class _Target:
    name: str
    url: str
    headers: dict[str, str]
    api: str = "chat"  # or "responses"


def _first_content(line: str, api: str) -> bool:
    if not line.startswith("data: {"):
        return False
    data = json.loads(line[6:])
    if api == "responses":
        return data.get("type") == "response.output_text.delta" and bool(data.get("delta"))
    delta = (data.get("choices") or [{}])[0].get("delta") or {}
    return bool(delta.get("content"))


def _call(client: httpx.Client, target: _Target, messages: list[dict[str, Any]], stream: bool) -> tuple[float, bool]:
    """(milliseconds, compiled?) for one request: full response, or first content token when streaming."""
    if target.api == "responses":
        path, body = "/v1/responses", {"model": MODEL, "input": messages, "stream": stream, "store": False}
    else:
        path, body = "/v1/chat/completions", {"model": MODEL, "messages": messages, "stream": stream}
    start = time.perf_counter()
    if not stream:
        response = client.post(target.url + path, json=body, headers=target.headers)
        response.read()
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed * 1000.0, _compiled(response)
    first: float | None = None
    with client.stream("POST", target.url + path, json=body, headers=target.headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and _first_content(line, target.api):
                first = time.perf_counter() - start
        compiled = _compiled(response)
    if first is None:
        raise RuntimeError(f"{target.name}: stream carried no content")
    return first * 1000.0, compiled


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


IDLE_CPU_S = 0.02  # a process counts as idle once it used less than this in one IDLE_POLL_S
IDLE_POLL_S = 0.5
IDLE_DEADLINE_S = 120.0


def settled_cpu_seconds(pid: int) -> float:
    """Process `pid`'s CPU seconds once it has gone idle (its background work done), or at the deadline."""
    end = time.monotonic() + IDLE_DEADLINE_S
    last = process_cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(IDLE_POLL_S)  # sampling another process's CPU; bounded by the deadline
        now = process_cpu_seconds(pid)
        if now - last < IDLE_CPU_S:
            return now
        last = now
    return last


def _compiled(response: httpx.Response) -> bool:
    original = response.headers.get("x-memory-original-tokens")
    compiled = response.headers.get("x-memory-compiled-tokens")
    return original is not None and compiled is not None and int(compiled) < int(original)


def _start_litellm(tmp: Path, upstream: str, litellm_bin: Path, master_key: str) -> Server:
    port = free_port()
    config = {
        "model_list": [{"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}", "api_base": upstream + "/v1",
                                                                 "api_key": DIRECT_KEY}}],
        # It refuses to start without one; a random per-run key, no database (the key alone authenticates).
        "general_settings": {"master_key": master_key},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    # Its model cost map is fetched from the network at import unless told to use the bundled one.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [str(litellm_bin), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return start_server(LITELLM, cmd, port, "/health/liveliness", tmp / "litellm.log", REPO_ROOT, env=env)


def run_overhead(sizes: Sequence[int], iterations: int, litellm_bin: Path | None, show_progress: bool = True) -> OverheadResult:
    servers: list[Server] = []
    rows: list[OverheadRow] = []
    note = ""
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            fake = start_upstream_process(tmp)
            servers.append(fake)
            # The default embedding model, as a user runs it.
            ours = start_proxy_process(tmp, fake.url, embedding_model=None, budget_tokens=PROXY_BUDGET)
            servers.append(ours)
            direct = _Target("direct", fake.url, {"Authorization": f"Bearer {DIRECT_KEY}"})
            targets = [_Target(OURS, ours.url, {"Authorization": f"Bearer {DIRECT_KEY}"}),
                       _Target(OURS_RESPONSES, ours.url, {"Authorization": f"Bearer {DIRECT_KEY}"}, "responses")]
            if litellm_bin is None:
                note = "not measured: no LiteLLM proxy executable given (--litellm-bin)"
            else:
                master_key = "sk-bench-" + secrets.token_hex(16)
                try:
                    peer = _start_litellm(tmp, fake.url, litellm_bin, master_key)
                except RuntimeError as exc:
                    log = (tmp / "litellm.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
                    note = f"not measured: {exc}; last log line: {log[-1] if log else '(empty)'}"
                else:
                    servers.append(peer)
                    targets.append(_Target(LITELLM, peer.url, {"Authorization": f"Bearer {master_key}"}))
                    note = f"measured ({litellm_bin})"
            with httpx.Client(timeout=120.0) as client:
                await_litellm(client, ours.url, DIRECT_KEY)
                for turns in sizes:
                    rows += _measure_size(client, direct, targets, turns, iterations, show_progress, ours.process.pid)
        finally:
            for server in reversed(servers):
                server.stop()
    return OverheadResult(tuple(sizes), iterations, PROXY_BUDGET, tuple(rows), note)


def _measure_size(client: httpx.Client, direct: _Target, targets: list[_Target], turns: int, iterations: int,
                  show_progress: bool, pid: int) -> list[OverheadRow]:
    history = [{"role": "user" if e["type"] == "user_message" else "assistant", "content": e["payload"]["content"]}
               for e in chat_turns(turns)]
    # Each memory-runtime path has its own session of the same size.
    sessions = {OURS: f"bench-overhead-{turns}", OURS_RESPONSES: f"bench-overhead-responses-{turns}"}
    direct_responses = _Target("direct, Responses API", direct.url, direct.headers, "responses")
    paths = [direct, direct_responses,
             *(_Target(t.name, t.url, {**t.headers, "X-Memory-Session": sessions[t.name]}, t.api) if t.name in sessions else t
               for t in targets)]
    questions = queries(WARMUP + 2 * iterations, seed=turns)
    rows: list[OverheadRow] = []
    for mode, stream in (("non-stream", False), ("stream TTFT", True)):
        samples: dict[str, list[float]] = {p.name: [] for p in paths}
        compiled: dict[str, int] = {}
        offset = 0 if not stream else iterations
        cpu: dict[str, list[float]] = {name: [] for name in sessions}
        for w in range(WARMUP):  # first request stores the history and embeds it
            for p in paths:
                _call(client, p, history + [{"role": "user", "content": questions[w]}], stream)
        started = settled_cpu_seconds(pid)
        for i in progress(range(iterations), f"overhead {turns} turns {mode}", enabled=show_progress):
            messages = history + [{"role": "user", "content": questions[WARMUP + offset + i]}]
            order = paths[i % len(paths):] + paths[: i % len(paths)]
            for p in order:
                before = process_cpu_seconds(pid) if p.name in sessions else 0.0
                ms, was_compiled = _call(client, p, messages, stream)
                if p.name in sessions:
                    cpu[p.name].append(1000 * (process_cpu_seconds(pid) - before))
                samples[p.name].append(ms)
                compiled[p.name] = compiled.get(p.name, 0) + int(was_compiled)
        outside = 1000 * (settled_cpu_seconds(pid) - started) - sum(sum(v) for v in cpu.values())
        background = outside / (iterations * len(sessions))
        for t in targets:
            base = direct_responses if t.api == "responses" else direct
            added = [v - d for v, d in zip(samples[t.name], samples[base.name])]
            ours = t.name in sessions
            rows.append(OverheadRow(t.name, turns, mode, percentiles(samples[base.name]), percentiles(samples[t.name]),
                                    percentiles(added), compiled.get(t.name, 0) / iterations if ours else None,
                                    percentiles(cpu[t.name]).mean if ours else None, background if ours else None))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", default="10,50,300", help="comma-separated session sizes")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--litellm-bin", type=Path, default=None, help="LiteLLM's proxy (default: benchmarks.litellm_peer's, if set up)")
    args = parser.parse_args(argv)
    peer = args.litellm_bin or (default_bin() if default_bin().exists() else None)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg", encoding="ascii") as fh:
        load_start = " ".join(fh.read().split()[:3])
    result = run_overhead([int(t) for t in args.turns.split(",") if t], args.iterations, peer)
    with open("/proc/loadavg", encoding="ascii") as fh:
        load_end = " ".join(fh.read().split()[:3])
    print(f"commit {commit}, {args.iterations} iterations, load {load_start} -> {load_end}; LiteLLM proxy: {result.litellm_note}")
    print("| Path | Turns | Measure | Direct p50 | Via p50 | Added p50 | Added p95 | Added p99 | Proxy CPU ms in its request, mean | Its CPU ms outside, per request |")
    for r in result.rows:
        cpu = f"{r.cpu_ms:.1f} | {r.background_cpu_ms:.1f}" if r.cpu_ms is not None and r.background_cpu_ms is not None else "– | –"
        print(f"| {r.target} | {r.turns} | {r.mode} | {r.direct.p50:.1f} | {r.via.p50:.1f} | {r.added.p50:.1f} | {r.added.p95:.1f} | {r.added.p99:.1f} | {cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
