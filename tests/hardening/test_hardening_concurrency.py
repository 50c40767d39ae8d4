"""Concurrency through the real proxy over loopback: requests of one session at once store every
message exactly once, each reply after its own question; a long upstream call in one session holds
no lock, so other sessions (and the same session) go on meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx
import pytest

from testkit.faults import WORDS
from testkit.harness import Proxy, Upstream

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def proxy(served_proxy: Callable[..., Proxy]) -> Proxy:
    return served_proxy()


def _events(proxy: Proxy, session: str) -> list[dict[str, object]]:
    with proxy.http(key=None) as http:
        return list(http.get(f"/memory/sessions/{session}/export").json()["events"])


async def test_same_session_requests_at_once_are_stored_exactly_once_each_reply_after_its_question(proxy: Proxy) -> None:
    texts = [f"parallel question {n} about the release" for n in range(16)]

    async def ask(http: httpx.AsyncClient, n: int) -> int:
        body = {"model": MODEL, "messages": [{"role": "user", "content": texts[n]}], "stream": n % 2 == 1}
        response = await http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "together"})
        return response.status_code

    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        assert await asyncio.gather(*(ask(http, n) for n in range(len(texts)))) == [200] * len(texts)
    contents = [str(e["content"]) for e in _events(proxy, "together")]
    assert sorted(contents) == sorted(texts + [f"echo: {t}" for t in texts])  # each exactly once
    assert all(contents.index(t) < contents.index(f"echo: {t}") for t in texts)


def test_a_long_upstream_call_blocks_neither_other_sessions_nor_its_own(proxy: Proxy, faulty: Upstream) -> None:
    # The upstream holds its stream open until the test releases it (not a 4 s timer that a loaded
    # machine could outrun): a lock held across the call would make the requests below time out.
    slow_done: list[int] = []

    def slow_stream() -> None:
        body = {"model": "held-40", "messages": [{"role": "user", "content": "take your time"}], "stream": True}
        with httpx.Client(base_url=proxy.url, timeout=60) as http:
            with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Memory-Session": "long"}) as response:
                slow_done.append(len(response.read()))

    worker = threading.Thread(target=slow_stream)
    worker.start()
    try:
        assert faulty.fake.faults.started_event.wait(30), "the held stream never started"
        with proxy.http(key=None) as http:
            for n in range(5):
                other = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": f"quick {n}"}]}, headers={"X-Memory-Session": "short"})
                assert other.status_code == 200
            same = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "meanwhile"}]}, headers={"X-Memory-Session": "long"})
            assert same.status_code == 200
        assert faulty.fake.faults.finished == 0 and not slow_done  # still held: the requests above did not wait for it
    finally:
        faulty.fake.faults.release()
        worker.join(timeout=60)
    assert slow_done and faulty.fake.faults.finished == 1
    contents = [str(e["content"]) for e in _events(proxy, "long")]
    slow_reply = "".join(WORDS[i % len(WORDS)] + " " for i in range(40))
    assert sorted(contents) == sorted(["take your time", slow_reply, "meanwhile", "echo: meanwhile"])
