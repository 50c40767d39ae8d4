"""`POST /v1/messages` with memory, driven by the official `anthropic` Python SDK against a fake
Anthropic upstream that refuses what Anthropic refuses (tool pairing, breakpoints, thinking
signatures) and bills caching by the breakpoint rule.

Every test asserts on what the upstream received, so it fails when memory is not applied."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from testkit.fake_anthropic import anthropic_requests
from testkit.harness import Proxy, Upstream
from testkit.script import Reply, ToolCall

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-test-caller-key-5e1f"
BUDGET = 1800
BETA = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
READ_FILE = {"name": "read_file", "description": "Read a file of the repository",
             "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
SYSTEM = [{"type": "text", "text": "You are a careful coding agent. " + "Follow the house style. " * 20,
           "cache_control": {"type": "ephemeral"}}]


@pytest.fixture(scope="module")
def aproxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n")


def _client(proxy: Proxy, session: str | None = None, **headers: str) -> anthropic.Anthropic:
    extra = {"anthropic-beta": BETA, "anthropic-version": "2023-06-01", **headers}
    if session is not None:
        extra["X-Memory-Session"] = session
    return anthropic.Anthropic(base_url=proxy.url, api_key=KEY, max_retries=0, default_headers=extra)


def _sent(upstream: Upstream, n: int = -1) -> dict[str, Any]:
    return dict(anthropic_requests(upstream.fake)[n].json())


def _export(proxy: Proxy, session: str) -> dict[str, Any]:
    with httpx.Client(base_url=proxy.url, headers={"x-api-key": KEY}, timeout=30) as http:
        response = http.get(f"/memory/sessions/{session}/export")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _live(export: dict[str, Any], etype: str) -> list[str]:
    return [e["content"] for e in export["events"] if e["type"] == etype and not e["detached"]]


def _filler(i: int) -> str:
    return f"Step {i}: notes on module {i}, " + " ".join(f"detail-{i}-{k}" for k in range(60))


def _breakpoints(body: dict[str, Any]) -> int:
    return json.dumps(body).count('"cache_control"')


def test_create_within_budget_forwards_the_body_exactly_and_stores_the_turn(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-exact")
    messages = [{"role": "user", "content": [{"type": "text", "text": "Decision: we ship on Fridays.", "cache_control": {"type": "ephemeral"}}]}]
    reply = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=messages, tools=[READ_FILE])
    message = reply.parse()
    assert message.content[0].type == "text" and message.content[0].text == "echo: Decision: we ship on Fridays."
    assert reply.headers["x-memory-session"] == "msg-exact" and reply.headers["x-memory-mode"] == "full_history"
    assert reply.headers["request-id"].startswith("req_")
    sent = anthropic_requests(upstream.fake)[-1]
    body = sent.json()
    assert body["messages"] == messages and body["system"] == SYSTEM and body["tools"] == [READ_FILE]
    # The headers the client sent, exactly; the caller's key, not the proxy's.
    assert sent.headers["anthropic-beta"] == BETA and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["authorization"] == f"Bearer {KEY}"  # the SDK sends its key as a Bearer token
    assert "cookie" not in sent.headers
    export = _export(aproxy, "msg-exact")
    assert _live(export, "user_message") == ["Decision: we ship on Fridays."]
    assert _live(export, "assistant_message") == ["echo: Decision: we ship on Fridays."]


def test_stream_relays_every_event_and_stores_the_turn(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-stream")
    upstream.fake.enqueue(Reply(text="streamed answer, in pieces"))
    seen: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "stream please"}]) as stream:
        for event in stream:
            seen.append(event.type)
        final = stream.get_final_message()
    assert final.content[0].text == "streamed answer, in pieces"
    assert final.usage.input_tokens > 0
    assert seen[0] == "message_start" and seen[-1] == "message_stop" and "content_block_delta" in seen
    with httpx.Client(base_url=aproxy.url, timeout=30) as http:
        raw = http.post("/v1/messages", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-Session": "msg-stream-raw"},
                        json={"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    names = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert _live(_export(aproxy, "msg-stream"), "assistant_message") == ["streamed answer, in pieces"]


def test_tool_loop_over_budget_is_compiled_paired_and_cached(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-tools", **{"X-Memory-Budget": "5000"})
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Decision: the service is written in Go.\n" + _filler(0)}]
    for i in range(1, 14):
        upstream.fake.enqueue(Reply(tool_calls=(ToolCall("read_file", {"path": f"pkg/m{i}.go"}, id=f"toolu_{i:03d}"),)))
        reply = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[READ_FILE], messages=messages)
        assert reply.stop_reason == "tool_use"
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i:03d}", "content": _filler(i)},
                                                     {"type": "text", "text": f"(reminder {i})"}]})
        upstream.fake.enqueue(Reply(text=f"read module {i}"))
        reply = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[READ_FILE], messages=messages)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        messages.append({"role": "user", "content": f"Next, module {i + 1}. " + _filler(100 + i)})
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[READ_FILE], messages=messages)
    assert raw.headers["x-memory-mode"] in ("rebased", "frame")
    assert int(raw.headers["x-memory-compiled-tokens"]) < int(raw.headers["x-memory-original-tokens"])
    body = _sent(upstream)
    # Fewer messages than the client sent; the fake accepted them, so every tool_use is answered.
    assert len(body["messages"]) < len(messages)
    # The client's last message, then (when memory found any) the question's evidence, uncached after it.
    last = -2 if body["messages"][-1] != messages[-1] else -1
    assert body["messages"][last] == messages[-1] and body["system"] == SYSTEM and body["tools"] == [READ_FILE]
    assert last == -1 or body["messages"][-1]["content"][0]["text"].startswith("Relevant context retrieved")
    assert "Go" in json.dumps(body["messages"][:-1])  # the decision of turn one survives, from memory
    assert 2 <= _breakpoints(body) <= 4
    # The next turn reads the frame from the provider's cache.
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in raw.parse().content]})
    messages.append({"role": "user", "content": "And module 11?"})
    again = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[READ_FILE], messages=messages)
    assert again.usage.cache_read_input_tokens and again.usage.cache_read_input_tokens >= 1024
    assert len(_live(_export(aproxy, "msg-tools"), "tool_message")) == 13
    with httpx.Client(base_url=aproxy.url, timeout=30) as http:
        metrics = http.get("/metrics").text
    written = [line for line in metrics.splitlines() if line.startswith('memory_runtime_cache_write_tokens_total{model_family="claude"}')]
    read = [line for line in metrics.splitlines() if line.startswith('memory_runtime_cached_tokens_total{model_family="claude"}')]
    assert written and float(written[0].split()[-1]) > 0 and read and float(read[0].split()[-1]) > 0
    assert 'memory_runtime_requests_total{model_family="claude",route="messages",status="200"}' in metrics
    with httpx.Client(base_url=aproxy.url, headers={"x-api-key": KEY}, timeout=30) as http:
        turns = http.get("/memory/sessions/msg-tools/turns").json()["data"]
    assert all(t["cache_write_tokens"] is not None for t in turns) and sum(t["cache_write_tokens"] for t in turns) > 0
    assert turns[-1]["cached_tokens"] == again.usage.cache_read_input_tokens
    assert turns[-1]["cache_write_tokens"] == again.usage.cache_creation_input_tokens
    assert turns[-1]["prompt_tokens"] == again.usage.input_tokens + again.usage.cache_read_input_tokens + again.usage.cache_creation_input_tokens


def test_thinking_blocks_keep_their_signatures_over_budget(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-thinking")
    messages: list[dict[str, Any]] = []
    for i in range(8):
        messages.append({"role": "user", "content": _filler(200 + i)})
        reply = client.messages.create(model=MODEL, max_tokens=2048, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024})
        assert reply.content[0].type == "thinking"
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
    messages.append({"role": "user", "content": "summarise"})
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=2048, messages=messages,
                                                   thinking={"type": "enabled", "budget_tokens": 1024})
    assert raw.headers["x-memory-mode"] != "full_history"
    body = _sent(upstream)
    thinking = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "thinking"]
    assert thinking  # the fake checked every signature: a changed one is a 400


def test_bad_input_is_refused_in_anthropics_envelope_and_stores_nothing(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-bad")
    unanswered = [{"role": "user", "content": "go"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "read_file", "input": {}}]},
                  {"role": "user", "content": "no result here"}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=unanswered)
    assert caught.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": (
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_x. "
        "Each `tool_use` block must have a corresponding `tool_result` block in the next message.")}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "system", "content": "x"}])  # type: ignore[list-item]
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
    with httpx.Client(base_url=aproxy.url, timeout=30) as http:
        missing = http.post("/v1/messages", headers={"x-api-key": KEY, "X-Memory-Session": "msg-bad"},
                            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        assert missing.status_code == 400 and missing.json()["error"]["message"] == "max_tokens: Field required"
        gone = http.get("/memory/sessions/msg-bad/export", headers={"x-api-key": KEY})
    assert gone.status_code == 404
    assert not anthropic_requests(upstream.fake)


def test_upstream_errors_and_broken_streams_store_nothing(aproxy: Proxy, upstream: Upstream) -> None:
    client = _client(aproxy, "msg-faults")
    upstream.fake.enqueue(Reply(error_status=529, error_message="Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "one"}])
    assert caught.value.status_code == 529
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    for reply in (Reply(text="a reply that breaks off", die_after_chunks=2), Reply(text="a reply that just ends", end_after_chunks=2),
                  Reply(text="a reply that errs", stream_error="Overloaded")):
        upstream.fake.enqueue(reply)
        with httpx.Client(base_url=aproxy.url, timeout=30) as http:
            raw = http.post("/v1/messages", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-Session": "msg-faults"},
                            json={"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "two"}]})
        lines = raw.text.strip().splitlines()
        assert lines[-2] == "event: error" and "event: message_stop" not in raw.text
        assert json.loads(lines[-1].removeprefix("data: "))["type"] == "error"
    with httpx.Client(base_url=aproxy.url, timeout=30) as http:
        assert http.get("/memory/sessions/msg-faults/export", headers={"x-api-key": KEY}).status_code == 404


def test_keys_the_caller_and_count_tokens(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    keyless = proxy_factory("upstreams: {retries: 0}\n")
    with httpx.Client(base_url=keyless.url, timeout=30) as http:
        refused = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                            json={"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401
    assert refused.json() == {"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}}
    assert not anthropic_requests(upstream.fake)
    with_env = proxy_factory("upstreams: {retries: 0}\n", ANTHROPIC_API_KEY="sk-ant-env-fallback")
    with httpx.Client(base_url=with_env.url, timeout=30) as http:
        ok = http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                       json={"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200 and anthropic_requests(upstream.fake)[-1].headers["x-api-key"] == "sk-ant-env-fallback"
        counted = http.post("/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01", "x-api-key": KEY},
                            json={"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert upstream.fake.requests[-1].path == "/v1/messages/count_tokens" and upstream.fake.requests[-1].headers["x-api-key"] == KEY
    # The same key is the same caller whether it comes as x-api-key or as a Bearer token.
    _client(with_env, "msg-who").messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "who"}])
    with httpx.Client(base_url=with_env.url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.get("/memory/sessions/msg-who/export").status_code == 200


def test_a_stateless_client_gets_memorys_copies_rebuilt_exactly(aproxy: Proxy, upstream: Upstream) -> None:
    """Only the newest message each call, with the session header: the prompt's history comes
    from memory's stored copies (their blocks, signatures included), and still pairs."""
    client = _client(aproxy, "msg-stateless")
    thinking = {"type": "enabled", "budget_tokens": 1024}
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("read_file", {"path": "a.go"}, id="toolu_s1"),)))
    first = client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=[{"role": "user", "content": "read a.go"}])
    call = [b.model_dump(exclude_none=True) for b in first.content]
    # A stateless tool loop: the assistant's call and the result, nothing before.
    client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=[
        {"role": "user", "content": "read a.go"}, {"role": "assistant", "content": call},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_s1", "content": "package a"}]}])
    client.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=[{"role": "user", "content": "and now?"}])
    body = _sent(upstream)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert body["messages"][1]["content"] == call  # memory's copy of the reply, blocks and signature as the provider sent them
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_s1", "content": "package a"}]
    assert body["messages"][-1] == {"role": "user", "content": "and now?"}


def test_a_long_tool_loop_in_one_turn_is_compacted_in_anthropic_form(aproxy: Proxy, upstream: Upstream) -> None:
    """Claude Code works inside one user turn: a task, then tool_use / tool_result pairs. Over the
    budget, older tool_results go up as stubs (same tool_use_id, in the very next user message),
    the task and the newest results verbatim, and the strict fake accepts every request."""
    client = _client(aproxy, "msg-loop", **{"X-Memory-Budget": "8000"})
    task = "Task: find where the retry budget is computed and fix the off-by-one."
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    modes = []
    for i in range(1, 25):
        upstream.fake.enqueue(Reply(tool_calls=(ToolCall("read_file", {"path": f"pkg/m{i}.go"}, id=f"toolu_{i:03d}"),)))
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[READ_FILE], messages=messages)
        modes.append(raw.headers["x-memory-mode"])
        reply = raw.parse()
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        output = "\n".join(f"line {n} of pkg/m{i}.go: func step{i}_{n}() int {{ return {n} }}" for n in range(40))
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i:03d}", "content": output}]})
    assert "compacted" in modes and modes[0] == "full_history"
    body = _sent(upstream)  # the request that carried steps 1-23
    results = {b["tool_use_id"]: b["content"] for m in body["messages"] if isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"}
    assert sorted(results) == [f"toolu_{i:03d}" for i in range(1, 24)]  # every tool_use answered, ids kept
    assert results["toolu_001"].startswith("[memory-runtime: compacted output of read_file")  # a stub, in Anthropic form
    assert results["toolu_023"] == messages[-3]["content"][0]["content"]  # the newest output verbatim
    assert task in json.dumps(body["messages"][0])
