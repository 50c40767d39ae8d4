"""The direct path to the OpenAI-compatible upstream (`proxy.direct`): what goes up is what the
client sent (memory's messages aside), headers carry the key and nothing of an SDK's or the
client's, and the provider's own answers (a 400 for a field it does not know, an error event in a
stream) reach the client in its envelope with nothing stored."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import httpx
import pytest

from proxy.upstream_errors import to_upstream_error
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall

MODEL = "gpt-4o-mini"
CALL = {"id": "call_ls_1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}
TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]


def _history() -> list[dict[str, Any]]:
    return [
        {"role": "developer", "content": "You run shell commands."},
        {"role": "user", "content": "List the files."},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_ls_1", "content": "README.md\nsetup.py"},
    ]


def _stored(proxy: Proxy, session: str) -> int:
    with proxy.http() as http:
        return http.get(f"/memory/sessions/{session}/export").status_code


def test_the_body_goes_up_as_the_client_sent_it(proxy: Proxy, upstream: Upstream) -> None:
    body = {"model": MODEL, "messages": _history(), "tools": TOOLS, "stream": False, "metadata": {"run": "r1"}, "seed": 7,
            "parallel_tool_calls": False}
    upstream.fake.enqueue(Reply(text="Two files."))
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "direct-body", "X-Custom": "mine"})
    assert response.status_code == 200, response.text
    received = upstream.fake.last_chat()
    sent = received.json()
    # Every field the client sent, as sent, plus the per-session cache key; nothing dropped.
    assert set(sent) == set(body) | {"prompt_cache_key"}
    assert {k: sent[k] for k in body if k != "messages"} == {k: v for k, v in body.items() if k != "messages"}
    assert sent["messages"] == body["messages"]  # within budget: as sent, `content: null` and `developer` kept
    assert "content" in sent["messages"][2] and sent["messages"][2]["content"] is None
    # The key, and nothing of the client's own headers or of an SDK's.
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert received.headers["content-type"] == "application/json"
    assert not [h for h in received.headers if h.startswith(("x-stainless", "x-memory", "x-custom", "openai-"))]
    assert response.json()["choices"][0]["message"]["content"] == "Two files."


def test_a_stream_asks_for_usage_and_keeps_the_clients_other_stream_options(proxy: Proxy, upstream: Upstream) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count to three"}], "stream": True,
            "stream_options": {"include_obfuscation": False}}
    upstream.fake.enqueue(Reply(text="one two three"))
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Memory-Session": "direct-stream"}) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert upstream.fake.last_chat().json()["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "one two three"
    # The client did not ask for usage: the usage chunk memory asked for does not reach it.
    assert not [c for c in chunks if c.get("usage")]
    assert _stored(proxy, "direct-stream") == 200


def test_a_field_the_provider_does_not_know_gets_its_own_400_and_nothing_is_stored(proxy: Proxy, upstream: Upstream) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "api_base": "http://elsewhere.invalid/v1"}
    with proxy.http() as http:
        response = http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "direct-unknown"})
    assert response.status_code == 400
    assert response.json()["error"] == {"message": "Unrecognized request argument supplied: api_base", "type": "invalid_request_error",
                                        "param": None, "code": "unknown_parameter"}
    assert len(upstream.fake.chat_requests()) == 1  # a 400 is not retried
    assert _stored(proxy, "direct-unknown") == 404


def test_an_error_event_in_the_stream_ends_it_in_the_envelope_and_stores_nothing(proxy: Proxy, upstream: Upstream) -> None:
    upstream.fake.enqueue(Reply(text="a reply that the provider gives up on", stream_error="The server had an error while processing"))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True}
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Memory-Session": "direct-error-event"}) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert json.loads(events[0])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    error = json.loads(events[-1])["error"]
    assert error == {"message": "The server had an error while processing", "type": "server_error", "param": None, "code": None}
    assert _stored(proxy, "direct-error-event") == 404


def test_tool_calls_come_back_whole_from_a_stream_and_are_stored(proxy: Proxy, upstream: Upstream) -> None:
    call = ToolCall("bash", {"command": "cat setup.py"}, id="call_cat_2")
    upstream.fake.enqueue(Reply(tool_calls=(call,)))
    body = {"model": MODEL, "messages": _history(), "tools": TOOLS, "stream": True, "stream_options": {"include_usage": True}}
    with proxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Memory-Session": "direct-tools"}) as response:
            chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == call.arguments_json()
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0  # asked for: passed on
    with proxy.http() as http:
        events = http.get("/memory/sessions/direct-tools/export").json()["events"]
    stored = [e for e in events if e["type"] == "assistant_message"]
    assert stored and "call_cat_2" in json.dumps(stored[-1])


def test_calls_share_one_kept_alive_connection(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.http() as http:
        for i in range(3):
            response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": f"ping {i}"}]})
            assert response.status_code == 200
        assert http.post("/v1/responses", json={"model": MODEL, "input": "and the Responses API"}).status_code == 200
    peers = {r.peer for r in upstream.fake.requests if r.path.endswith(("/chat/completions", "/responses"))}
    assert len(upstream.fake.requests) == 4 and len(peers) == 1, peers


def test_a_failure_while_litellm_is_still_importing_maps_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    # A direct call does not wait for litellm, whose worker thread may be half way through
    # importing the openai SDK: the module exists, its exception classes not yet.
    monkeypatch.setitem(sys.modules, "openai", types.ModuleType("openai"))
    request = httpx.Request("POST", "http://upstream.invalid/v1/chat/completions")
    assert to_upstream_error(httpx.ReadTimeout("slow", request=request)).code == "upstream_timeout"
    broken = to_upstream_error(httpx.RemoteProtocolError("peer closed connection", request=request))
    assert (broken.status, broken.code) == (502, "upstream_unreachable")
