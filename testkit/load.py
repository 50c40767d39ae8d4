"""Concurrent clients through the proxy (or straight at the fake upstream), and the check that every
exchange a client completed is stored exactly once.

Client `i` talks to session `i % sessions`, so several clients write to one session at the same
time; requests alternate streaming and not. Every request carries one new user message with a
unique marker and a budget below its size, so each one runs sync, compile and observe. An exchange
is complete when the client got the whole reply: a 200 with `echo: <text>`, or a stream that
reached `[DONE]` carrying it. `verify` exports each session and looks every completed exchange up:
*lost* if its user message or reply is missing, *duplicated* if either is stored twice.

Used by the stress benchmark and by the crash test (which sets `Tally.stop` after killing the proxy).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["MODEL", "CLIENT_KEY", "Exchange", "Tally", "user_text", "exchange", "run_load", "verify"]

MODEL = "gpt-4o-mini"
# The clients' (fake) key: the proxy scopes memory by caller, so `verify` exports with it too.
CLIENT_KEY = "sk-stress-not-a-real-key"
SYSTEM = "You are the stress-test assistant. Answer briefly, keep decisions, never invent facts."
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


def user_text(marker: str, n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return f"[{marker}] Next step on {topic}: compare option {n % 7} with what we decided before and list the risks for {topic}."


async def exchange(http: httpx.AsyncClient, session: str, marker: str, text: str, stream: bool, budget: int) -> str | None:
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
        text = user_text(marker, index + n)
        start = time.perf_counter()
        try:
            problem = await exchange(http, session, marker, text, stream, budget)
        except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
            problem = type(exc).__name__
        if problem is None:
            tally.latencies_ms.append((time.perf_counter() - start) * 1000)
            tally.completed.append(Exchange(session, marker, stream))
        else:
            tally.errors[problem] += 1
        n += 1


async def run_load(base_url: str | Sequence[str], clients: int, sessions: int, seconds: float, max_requests: int, budget: int = 64,
                   prefix: str = "m", session_prefix: str = "stress", tally: Tally | None = None) -> Tally:
    """Drive `clients` concurrent clients for `seconds` (or until `max_requests` were started, or
    `tally.stop` is set); pass `tally` to watch progress from another task. Several base URLs
    (instances sharing one memory): client `i` talks to URL `i % len(urls)`, so one session's
    requests arrive at every instance at once."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    tally = tally or Tally()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with AsyncExitStack() as stack:
        https = [await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=httpx.Timeout(60.0), limits=limits)) for u in urls]
        await asyncio.gather(*(
            _client(https[i % len(https)], i, f"{session_prefix}-{i % sessions}", deadline, max_requests, tally, budget, prefix)
            for i in range(clients)
        ))
    return tally


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
