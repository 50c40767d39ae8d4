"""Bounded work per request, through the real proxy: how long the largest request the default limits
allow takes on first contact, what /healthz answers meanwhile, and how fast what is over the limits
is refused.

    python -m benchmarks.bounded [--embedding-model none|<model>] [--scale 1.0]
    python -m benchmarks.stress --largest-request ...        (the same, from the stress benchmark)

The largest allowed request is `limits.max_messages` - 2 messages of generated prose (user and
assistant alternating, ~450 tokens each) filling `server.max_body_bytes`, sent once as a first
contact (nothing stored yet) and once more with one new turn. While each runs, one client polls
/healthz back to back (each answer timed); p50 / p99 / max are over those polls. Then a
10,000-message history and 2 MB of one repeated character are sent and timed (both must be refused
with a 413). `--scale` shrinks the request for a quick run. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from proxy.config import LimitsConfig, ServerConfig
from testkit.processes import start_proxy_process, start_upstream_process

__all__ = ["BoundedResult", "largest_messages", "run", "main"]

MODEL = "gpt-4o-mini"
KEY = "sk-bounded-benchmark-not-a-real-key"
_WORDS = ("storage", "retry", "budget", "ranking", "session", "cache", "deploy", "schema", "token", "latency", "index", "vector",
          "decided", "because", "therefore", "customer", "invoice", "queue", "worker", "limit", "review", "release", "branch", "test")


def _prose(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS) + (str(rng.randrange(1000)) if rng.random() < 0.1 else "")
        words.append(word)
        size += len(word) + 1
    text = " ".join(words)[:chars]
    return ". ".join(s.capitalize() for s in text.split(". "))


def largest_messages(limits: LimitsConfig, max_body_bytes: int, scale: float = 1.0, seed: int = 7) -> list[dict[str, Any]]:
    """`max_messages - 2` messages of prose (room for one more turn) whose JSON body stays just
    under `max_body_bytes`."""
    count = max(2, int((limits.max_messages - 2) * scale))
    budget = int(max_body_bytes * scale) - 4096
    per_message = max(20, budget // count - 40)  # ~40 bytes of JSON around each message
    rng = random.Random(seed)
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"[{i}] " + _prose(rng, per_message - 8)} for i in range(count)]


@dataclass(frozen=True)
class Timed:
    status: int
    seconds: float
    health_ms: tuple[float, float, float]  # p50, p99, max of /healthz while it ran
    health_polls: int

    def row(self, label: str) -> str:
        p50, p99, top = self.health_ms
        return f"| {label} | {self.status} | {self.seconds:.2f} s | {p50:.1f} / {p99:.1f} / {top:.1f} ms ({self.health_polls} polls) |"


@dataclass(frozen=True)
class BoundedResult:
    embedding_model: str
    messages: int
    body_bytes: int
    first_contact: Timed
    next_turn: Timed
    ten_thousand: Timed
    one_character: Timed

    def markdown(self) -> str:
        lines = [
            f"Largest allowed request: {self.messages} messages, {self.body_bytes / 1_048_576:.2f} MiB (embedding model: {self.embedding_model}).",
            "",
            "| request | status | time | /healthz p50 / p99 / max meanwhile |",
            "|---|---|---|---|",
            self.first_contact.row("largest allowed, first contact"),
            self.next_turn.row("the same history + one turn"),
            self.ten_thousand.row("10,000 messages (over the limit)"),
            self.one_character.row("2 MB of one character (over the limit)"),
        ]
        return "\n".join(lines)


def _poll_health(url: str, done: threading.Event, samples: list[float], failures: list[str]) -> None:
    # Its own thread and connection: the timings must not include the client's own work.
    with httpx.Client(base_url=url, timeout=60) as probe:
        while not done.is_set():
            start = time.perf_counter()
            response = probe.get("/healthz")
            samples.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                failures.append(f"/healthz answered {response.status_code}: {response.text[:200]}")
            done.wait(0.005)  # a polling interval, not a wait for a server


def _timed(url: str, body: bytes, session: str) -> Timed:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "X-Memory-Session": session}
    samples: list[float] = []
    failures: list[str] = []
    done = threading.Event()
    poller = threading.Thread(target=_poll_health, args=(url, done, samples, failures))
    poller.start()
    start = time.perf_counter()
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            response = http.post("/v1/chat/completions", content=body, headers=headers)
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        poller.join()
    if failures:
        raise RuntimeError(failures[0])
    stats = np.percentile(np.asarray(samples), [50, 99, 100]) if samples else np.asarray([np.nan] * 3)
    return Timed(response.status_code, elapsed, (float(stats[0]), float(stats[1]), float(stats[2])), len(samples))


def run(embedding_model: str = "none", scale: float = 1.0, folder: Path | None = None) -> BoundedResult:
    folder = folder or Path(tempfile.mkdtemp(prefix="bounded-"))
    limits, server = LimitsConfig(), ServerConfig()
    messages = largest_messages(limits, server.max_body_bytes, scale)
    body = json.dumps({"model": MODEL, "messages": messages}).encode()
    assert len(body) <= server.max_body_bytes, len(body)
    turn = [{"role": "assistant", "content": "Noted, " + _prose(random.Random(3), 200)}, {"role": "user", "content": "And what did we decide about the cache?"}]
    next_body = json.dumps({"model": MODEL, "messages": [*messages, *turn]}).encode()
    rng = random.Random(11)
    ten_k = json.dumps({"model": MODEL, "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": _prose(rng, 200)} for i in range(10_000)]}).encode()
    one_char = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "a" * 2_000_000}]}).encode()
    upstream = start_upstream_process(folder)
    try:
        proxy = start_proxy_process(folder, upstream.url, embedding_model=embedding_model)
        try:
            # Warm up (the tokenizer's tables and litellm's lazy imports load on first use).
            warm = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "warm up"}]}).encode()
            (_timed(proxy.url, warm, "warm-up"))
            first = (_timed(proxy.url, body, "largest"))
            following = (_timed(proxy.url, next_body, "largest"))
            over = (_timed(proxy.url, ten_k, "ten-thousand"))
            char = (_timed(proxy.url, one_char, "one-character"))
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    return BoundedResult(embedding_model, len(messages), len(body), first, following, over, char)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bounded", description="Bounded work per request through the real proxy.")
    parser.add_argument("--embedding-model", default="none", help='"none" (lexical memory) or a model name')
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the largest request (messages and bytes) for a quick run")
    args = parser.parse_args(argv)
    result = run(args.embedding_model, args.scale)
    print(result.markdown())
    refused = result.ten_thousand.status == 413 and result.one_character.status == 413
    return 0 if refused and result.first_contact.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
