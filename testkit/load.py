"""Concurrent clients through the proxy (or straight at the fake upstream), and the check that every
exchange a client completed is stored exactly once.

Client `i` talks to session `i % sessions`, so several clients write to one session at the same
time; requests alternate streaming and not. Every request carries one new user message with a
unique marker and a budget below its size, so each one runs sync, compile and observe. An exchange
is complete when the client got the whole reply: a 200 with `echo: <text>`, or a stream that
reached `[DONE]` carrying it. `verify` exports each session and looks every completed exchange up:
*lost* if its user message or reply is missing, *duplicated* if either is stored twice.

The load's clients speak aiohttp (its C HTTP parser costs a client a fraction of httpx's CPU per
request: on a 2-core machine the clients share the cores with the proxy they measure; httpx's
connection pool, scanned per request, made 100 clients cost ~11 ms of CPU per request and capped
them near 75 req/s straight at the fake upstream); `exchange`, the same request over httpx, is for
single probes.

Used by the stress benchmark and by the crash test (which sets `Tally.stop` after killing the proxy).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
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


def _request(session: str, text: str, stream: bool, budget: int) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"X-Memory-Session": session, "X-Memory-Budget": str(budget), "Authorization": f"Bearer {CLIENT_KEY}"}
    return body, headers


class _StreamReply:
    """A streamed reply read line by line: its text, whether `[DONE]` came, and the first problem."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.done = False
        self.problem: str | None = None

    def line(self, line: str) -> None:
        if not line.startswith("data: ") or self.problem is not None:
            return
        data = line[len("data: ") :].rstrip("\r\n")
        if data == "[DONE]":
            self.done = True
            return
        event = json.loads(data)
        if "error" in event:
            self.problem = "error event"
        for choice in event.get("choices") or []:
            self.pieces.append((choice.get("delta") or {}).get("content") or "")

    def verdict(self, text: str) -> str | None:
        if self.problem is not None:
            return self.problem
        if not self.done:
            return "no [DONE]"
        return _reply_verdict("".join(self.pieces), text)


def _reply_verdict(reply: str, text: str) -> str | None:
    return None if reply == "echo: " + text else "wrong reply"


async def exchange(http: httpx.AsyncClient, session: str, marker: str, text: str, stream: bool, budget: int) -> str | None:
    """Send one exchange; returns None when the reply arrived whole, else the kind of failure."""
    body, headers = _request(session, text, stream, budget)
    if not stream:
        response = await http.post("/v1/chat/completions", json=body, headers=headers)
        if response.status_code != 200:
            return f"status {response.status_code}"
        return _reply_verdict(response.json()["choices"][0]["message"]["content"], text)
    reply = _StreamReply()
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            return f"status {response.status_code}"
        async for line in response.aiter_lines():
            reply.line(line)
    return reply.verdict(text)


async def _exchange_aio(http: aiohttp.ClientSession, url: str, session: str, text: str, stream: bool, budget: int) -> str | None:
    """`exchange` over aiohttp, whose C parser costs the load's clients a fraction of httpx's CPU
    per request (on a 2-core machine the clients share the cores with the proxy they measure)."""
    body, headers = _request(session, text, stream, budget)
    async with http.post(url + "/v1/chat/completions", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"}) as response:
        if response.status != 200:
            return f"status {response.status}"
        if not stream:
            return _reply_verdict(json.loads(await response.read())["choices"][0]["message"]["content"], text)
        reply = _StreamReply()
        async for raw in response.content:
            reply.line(raw.decode())
    return reply.verdict(text)


async def _client(http: aiohttp.ClientSession, url: str, index: int, session: str, deadline: float, limit: int, tally: Tally, budget: int,
                  prefix: str) -> None:
    n = 0
    while time.monotonic() < deadline and tally.requests < limit and not tally.stop:
        tally.requests += 1
        marker = f"{prefix}c{index}n{n}"
        stream = (index + n) % 2 == 0  # every client alternates, so half the requests in flight stream
        text = user_text(marker, index + n)
        start = time.perf_counter()
        try:
            problem = await _exchange_aio(http, url, session, text, stream, budget)
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, UnicodeDecodeError, KeyError) as exc:
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
    # One connection per client, kept alive, as httpx's pool did; no limit on the connections per host.
    connector = aiohttp.TCPConnector(limit=clients + 10, limit_per_host=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60.0)) as http:
        await asyncio.gather(*(
            _client(http, urls[i % len(urls)], i, f"{session_prefix}-{i % sessions}", deadline, max_requests, tally, budget, prefix)
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
