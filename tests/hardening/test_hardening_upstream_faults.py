"""Upstream faults through the real proxy over loopback: error statuses before the first byte,
streams that stall past the timeout or reset mid-way, slow streams, and a client that goes away
mid-stream. The client always gets the right status or a final error event in the OpenAI envelope;
a turn whose call failed leaves nothing stored (not the question, no partial reply as if complete).

(tests/proxy covers the status mapping of non-streaming 400/503/401, a 429 on a stream, a stream
that dies mid-way and a non-streaming timeout; these tests add the storage side and the rest.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from testkit.faults import WORDS
from testkit.harness import Proxy, Upstream

ENVELOPE = {"message", "type", "param", "code"}


def _stored(proxy: Proxy, session: str) -> tuple[list[str], list[str]] | None:
    """(user messages, replies) stored for the session; None when nothing at all is stored."""
    with proxy.http() as http:
        response = http.get(f"/memory/sessions/{session}/export")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    return [e["content"] for e in events if e["type"] == "user_message"], [e["content"] for e in events if e["type"] == "assistant_message"]


def _body(model: str, text: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def _sse_events(raw: str) -> list[str]:
    return [block[len("data: ") :] for block in raw.split("\n\n") if block.startswith("data: ")]


@pytest.fixture(scope="module")
def proxy(served_proxy: Callable[..., Proxy]) -> Proxy:
    return served_proxy("upstreams: {retries: 0, timeout_seconds: 1.0}\n")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("status", [500, 429, 400])
def test_upstream_error_status_reaches_the_client_and_stores_nothing(proxy: Proxy, status: int, stream: bool) -> None:
    session = f"status-{status}-{stream}"
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json=_body(f"status-{status}", "please answer", stream), headers={"X-Memory-Session": session})
    assert response.status_code == status
    assert set(response.json()["error"]) == ENVELOPE
    assert response.json()["error"]["message"] == f"fake {status}"
    assert _stored(proxy, session) is None


def test_slow_stream_within_the_timeout_is_relayed_whole_and_stored_once(proxy: Proxy, faulty: Upstream) -> None:
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=_body("slow-60-8", "go slowly", True), headers={"X-Memory-Session": "slow-ok"}) as response:
            events = _sse_events(response.read().decode())
    assert events[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, events[:-1]) if c.get("choices"))
    assert text == "".join(w + " " for w in WORDS[:8])
    assert _stored(proxy, "slow-ok") == (["go slowly"], [text])


@pytest.mark.parametrize("model,code", [("slow-2500-3", "upstream_timeout"), ("reset-3", None)], ids=["stalls-past-timeout", "connection-reset"])
def test_broken_stream_ends_with_an_error_event_and_stores_no_partial_reply(proxy: Proxy, model: str, code: str | None) -> None:
    session = f"broken-{model}"
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=_body(model, "tell me everything", True), headers={"X-Memory-Session": session}) as response:
            assert response.status_code == 200  # headers went out with the first chunk
            events = _sse_events(response.read().decode())
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert set(error) == ENVELOPE
    if code:
        assert error["code"] == code
    assert _stored(proxy, session) is None


def test_slow_non_streaming_reply_past_the_timeout_is_504_and_stores_nothing(proxy: Proxy) -> None:
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json=_body("slow-500-4", "wait for me", False), headers={"X-Memory-Session": "slow-json"})
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert _stored(proxy, "slow-json") is None


def test_client_disconnect_mid_stream_cancels_the_upstream_call(proxy: Proxy, faulty: Upstream) -> None:
    session = "walks-away"
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=_body("slow-100-200", "a long story please", True), headers={"X-Memory-Session": session}) as response:
            seen = 0
            for line in response.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                if seen >= 3:
                    break  # leaving the block closes the connection mid-stream
    # The upstream stream (20 s long) is abandoned promptly, not read to the end.
    # (A stream read to the end never sets the event: the bound only spares a loaded machine.)
    assert faulty.fake.faults.cancelled_event.wait(timeout=15), "the upstream stream was not cancelled"
    assert (faulty.fake.faults.cancelled, faulty.fake.faults.finished) == (1, 0)
    assert _stored(proxy, session) is None
    # The session is not left locked or half-written: the next turn works and is stored once.
    follow = [{"role": "user", "content": "a long story please"}, {"role": "user", "content": "short one then"}]
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": follow}, headers={"X-Memory-Session": session})
    assert response.status_code == 200
    assert _stored(proxy, session) == (["a long story please", "short one then"], ["echo: short one then"])
