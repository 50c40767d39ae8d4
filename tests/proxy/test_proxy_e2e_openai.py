"""End to end with the official openai client: real proxy app over loopback HTTP, fake upstream.

This module runs the real embedding model (loaded once for the module's proxy)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from memory import get_counter
from testkit.checks import orphan_problems
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall
from testkit.pg import dump_database
from tests.proxy.conftest import STORES, store_env

MODEL = "gpt-4o-mini"
BUDGET = 1200
TOPICS = ["database", "caching", "auth", "logging", "deploys", "billing", "search", "queues"]


@pytest.fixture(scope="module", params=STORES)
def mproxy(request: pytest.FixtureRequest, proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n", MEMORY_RUNTIME_EMBEDDING_MODEL="sentence-transformers/all-MiniLM-L6-v2",
                         **store_env(request))


def _user_turn(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"Turn {i}: let us talk about the {topic} layer. " + " ".join(f"detail-{i}-{k} about {topic}" for k in range(12))


def _export(proxy: Proxy, session_id: str) -> dict[str, Any]:
    with proxy.http() as http:
        response = http.get(f"/memory/sessions/{session_id}/export")
        assert response.status_code == 200, response.text
        return response.json()


def _stored_messages(export: dict[str, Any], role: str) -> list[str]:
    etype = {"user": "user_message", "assistant": "assistant_message"}[role]
    return [e["content"] for e in export["events"] if e["type"] == etype]


def test_forty_turn_conversation_is_compiled_under_budget(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client(default_headers={"X-Memory-Session": "forty-turns"})
    counter = get_counter(MODEL)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful engineering assistant."}]
    for i in range(40):
        messages.append({"role": "user", "content": _user_turn(i)})
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0.1, seed=7)
        reply = raw.parse()
        sent = upstream.fake.last_chat().json()
        # Fields the proxy does not use pass through.
        assert sent["temperature"] == 0.1 and sent["seed"] == 7
        original = counter.messages_tokens(messages)
        received = counter.messages_tokens(sent["messages"])
        assert int(raw.headers["x-memory-original-tokens"]) == original
        assert received <= BUDGET
        assert int(raw.headers["x-memory-compiled-tokens"]) == received
        assert int(raw.headers["x-memory-items"]) >= (1 if i else 0)
        assert raw.headers["x-memory-session"] == "forty-turns"
        # The reply comes back intact; the system message and the live user message go up verbatim.
        assert reply.choices[0].message.content == f"echo: {_user_turn(i)}"
        assert sent["messages"][0] == messages[0]
        assert sent["messages"][-1] == messages[-1]
        if i > 0:
            # The next turn sees the stored reply of the previous one.
            assert {"role": "assistant", "content": f"echo: {_user_turn(i - 1)}"} in sent["messages"]
        messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    assert counter.messages_tokens(messages) > 4 * BUDGET  # the test really exercised compilation
    export = _export(mproxy, "forty-turns")
    assert len(_stored_messages(export, "user")) == 40
    assert len(_stored_messages(export, "assistant")) == 40
    with mproxy.http() as http:
        manifest = http.get("/memory/sessions/forty-turns/manifest").json()
    assert manifest  # the last compile was remembered
    # Dry-run compile over the same memory.
    with mproxy.http() as http:
        dry = http.post("/memory/sessions/forty-turns/compile", json={"user_message": "what did we say about caching?", "budget_tokens": 600})
    assert dry.status_code == 200, dry.text
    assert dry.json()["tokens"] <= 600


def test_streaming_reply_is_streamed_intact_and_stored_before_done(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client(default_headers={"X-Memory-Session": "stream-1"})
    text = "Decision: use SQLite for storage.\nHere is a longer streamed answer with ünïcödé ✓."
    upstream.fake.enqueue(Reply(text=text))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "pick a database"}], stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
    assert "".join(pieces) == text
    assert usage is not None and usage.total_tokens > 0
    assert upstream.fake.last_chat().json()["stream_options"] == {"include_usage": True}
    # By the time [DONE] arrived the reply was stored, and its Decision: line was extracted.
    assert _stored_messages(_export(mproxy, "stream-1"), "assistant") == [text]
    with mproxy.http() as http:
        info = http.get("/memory/sessions/stream-1").json()
    assert any("SQLite" in d["text"] for d in info["state"]["decisions"])


def test_stream_is_not_buffered(mproxy: Proxy, upstream: Upstream) -> None:
    hold = threading.Event()
    upstream.fake.enqueue(Reply(text="first-chunk then the rest arrives later", hold=hold))
    stream = mproxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "unbuffered?"}], stream=True)
    received = ""
    for chunk in stream:
        received += "".join(c.delta.content or "" for c in chunk.choices)
        if received and not hold.is_set():
            # The upstream is still holding the rest: this chunk was relayed as it arrived.
            assert received == "first-c"
            hold.set()
    assert received == "first-chunk then the rest arrives later"


def test_streaming_without_usage_request_hides_the_usage_the_proxy_asked_for(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client()
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "no usage please"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
    # The proxy asks for usage (the provider's cached-token count is recorded) but the client,
    # which did not ask, never sees the usage chunk.
    assert upstream.fake.last_chat().json()["stream_options"] == {"include_usage": True}


async def test_async_client_stream_and_not(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.async_client(default_headers={"X-Memory-Session": "async-1"})
    first = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "async hello"}])
    assert first.choices[0].message.content == "echo: async hello"
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "async hello"}, {"role": "assistant", "content": "echo: async hello"}, {"role": "user", "content": "again"}],
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: again"
    export = _export(mproxy, "async-1")
    assert _stored_messages(export, "user") == ["async hello", "again"]
    assert _stored_messages(export, "assistant") == ["echo: async hello", "echo: again"]
    await client.close()


async def test_concurrent_sessions_do_not_mix(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.async_client()

    async def talk(n: int) -> str:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"parallel conversation number {n}"}], extra_headers={"X-Memory-Session": f"par-{n}"}
        )
        return raw.parse().choices[0].message.content or ""

    replies = await asyncio.gather(*(talk(n) for n in range(6)))
    assert replies == [f"echo: parallel conversation number {n}" for n in range(6)]
    for n in range(6):
        assert _stored_messages(_export(mproxy, f"par-{n}"), "user") == [f"parallel conversation number {n}"]
    await client.close()


def _weather_call(n: int) -> ToolCall:
    return ToolCall("get_weather", {"city": f"City{n}"}, id=f"call_w{n}")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_conversation_stays_valid_under_compilation(mproxy: Proxy, upstream: Upstream, stream: bool) -> None:
    sid = f"tools-{stream}"
    client = mproxy.client(default_headers={"X-Memory-Session": sid, "X-Memory-Budget": "700"})
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use tools."}]
    for n in range(12):
        messages.append({"role": "user", "content": _user_turn(n) + f" What's the weather in City{n}?"})
        upstream.fake.enqueue(Reply(text=None, tool_calls=(_weather_call(n),)), Reply(text=f"It is sunny in City{n}."))
        if stream:
            assembled: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
            for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True):
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    if call.id:
                        assembled["tool_calls"].append({"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": ""}})
                    assembled["tool_calls"][-1]["function"]["arguments"] += call.function.arguments or ""
            assistant = assembled
        else:
            reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            assert reply.choices[0].finish_reason == "tool_calls"
            assistant = reply.choices[0].message.model_dump(exclude_none=True)
        assert assistant["tool_calls"][0]["id"] == f"call_w{n}"
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": f"City{n}"}
        sent = upstream.fake.last_chat().json()
        assert sent["tools"] == TOOLS
        assert orphan_problems(sent["messages"]) == []
        messages.append(assistant)
        messages.append({"role": "tool", "tool_call_id": f"call_w{n}", "content": json.dumps({"city": f"City{n}", "sky": "sunny"})})
        final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        sent = upstream.fake.last_chat().json()
        assert orphan_problems(sent["messages"]) == []
        # The live tail (user turn, tool call, its result) goes up verbatim.
        assert sent["messages"][-1] == messages[-1]
        assert sent["messages"][-2]["tool_calls"][0]["id"] == f"call_w{n}"
        assert get_counter(MODEL).messages_tokens(sent["messages"]) <= 700
        messages.append({"role": "assistant", "content": final.choices[0].message.content})
    export = _export(mproxy, sid)
    stored_calls = [e for e in export["events"] if e["type"] == "assistant_message" and e["payload"].get("tool_calls")]
    assert len(stored_calls) == 12  # each tool call stored once, despite the resends


def test_content_parts_are_accepted_and_their_text_stored(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client(default_headers={"X-Memory-Session": "parts-1"})
    content = [{"type": "text", "text": "describe this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert upstream.fake.last_chat().json()["messages"][-1]["content"] == content
    assert "describe this" in _stored_messages(_export(mproxy, "parts-1"), "user")[0]


def test_headerless_sessions_are_told_apart_by_transcript(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client()
    upstream.fake.enqueue(Reply(text="Hello from conversation A"), Reply(text="Hello from conversation B"))
    a = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    b = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    sid_a, sid_b = a.headers["x-memory-session"], b.headers["x-memory-session"]
    assert sid_a != sid_b
    follow_a = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello from conversation A"}, {"role": "user", "content": "tell me about A"}],
    )
    assert follow_a.headers["x-memory-session"] == sid_a
    follow_b = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello from conversation B"}, {"role": "user", "content": "tell me about B"}],
    )
    assert follow_b.headers["x-memory-session"] == sid_b
    # An edited history diverges and starts a new conversation.
    edited = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "something else entirely"}, {"role": "user", "content": "tell me"}],
    )
    assert edited.headers["x-memory-session"] not in (sid_a, sid_b)
    assert _stored_messages(_export(mproxy, sid_a), "user") == ["hi", "tell me about A"]


def test_resent_history_is_stored_once_and_edits_only_add_the_divergent_part(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client(default_headers={"X-Memory-Session": "edits"})
    history: list[dict[str, Any]] = []
    for text in ("first question", "second question", "third question"):
        history.append({"role": "user", "content": text})
        reply = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
        history.append({"role": "assistant", "content": reply.choices[0].message.content})
    assert _stored_messages(_export(mproxy, "edits"), "user") == ["first question", "second question", "third question"]
    edited = history[:2] + [{"role": "user", "content": "second question, rephrased"}]
    client.chat.completions.create(model=MODEL, messages=edited)  # type: ignore[arg-type]
    users = _stored_messages(_export(mproxy, "edits"), "user")
    assert users.count("first question") == 1  # the common prefix is not duplicated
    assert users[-1] == "second question, rephrased"


def test_user_field_scopes_session_resolution(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client()
    upstream.fake.enqueue(Reply(text="scoped reply"))
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "scoped hi"}], user="alice")
    history = [{"role": "user", "content": "scoped hi"}, {"role": "assistant", "content": "scoped reply"}, {"role": "user", "content": "next"}]
    same = client.chat.completions.with_raw_response.create(model=MODEL, messages=history, user="alice")
    other = client.chat.completions.with_raw_response.create(model=MODEL, messages=history, user="bob")
    assert same.headers["x-memory-session"] == first.headers["x-memory-session"]
    assert other.headers["x-memory-session"] != first.headers["x-memory-session"]


def test_caller_key_goes_upstream_and_env_key_is_the_fallback(mproxy: Proxy, upstream: Upstream) -> None:
    mproxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "key check"}])
    assert upstream.fake.last_chat().headers["authorization"] == f"Bearer {OPENAI_KEY}"
    with mproxy.http(key=None) as http:
        response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "no key"}]})
    assert response.status_code == 200
    assert upstream.fake.last_chat().headers["authorization"] == "Bearer sk-env-fallback-key-0c4d"


def test_upstream_errors_keep_status_and_envelope(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client()
    upstream.fake.enqueue(Reply(error_status=400, error_message="bad thing"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert bad.value.status_code == 400
    assert bad.value.body == {"message": "bad thing", "type": "fake_error", "param": None, "code": "fake_code"}
    upstream.fake.enqueue(Reply(error_status=503, error_message="overloaded"))
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert down.value.status_code == 503
    # litellm keeps no parsed body for a 503: the provider's whole error still reaches the client.
    assert down.value.body == {"message": "overloaded", "type": "fake_error", "param": None, "code": "fake_code"}
    upstream.fake.enqueue(Reply(error_status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
    upstream.fake.enqueue(Reply(error_status=401, error_message="bad key"))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_upstream_dying_mid_stream_ends_with_an_error_event_and_stores_no_partial_reply(mproxy: Proxy, upstream: Upstream) -> None:
    sid = "dies-mid-stream"
    client = mproxy.client(default_headers={"X-Memory-Session": sid})
    upstream.fake.enqueue(Reply(text="This reply will be cut off halfway through the stream.", die_after_chunks=2))
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "tell me a story"}], stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "This reply wil"  # two 7-char chunks arrived before the break
    assert info.value.body is not None
    with mproxy.http() as http:
        # Nothing of a failed turn is stored: no partial reply as if complete, and not the question.
        assert http.get(f"/memory/sessions/{sid}/export").status_code == 404


def test_raw_stream_error_event_uses_the_envelope(mproxy: Proxy, upstream: Upstream) -> None:
    upstream.fake.enqueue(Reply(text="abcdefghijklmnopqrstuvwxyz", die_after_chunks=1))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "raw"}], "stream": True}
    with mproxy.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            raw = b"".join(response.iter_raw()).decode()
    events = [line[len("data: ") :] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert last["error"]["type"] == "upstream_error"


MALFORMED: list[tuple[str, Any]] = [
    ("not json", b"{oops"),
    ("array", b"[]"),
    ("missing model", {"messages": [{"role": "user", "content": "hi"}]}),
    ("missing messages", {"model": MODEL}),
    ("messages not a list", {"model": MODEL, "messages": {"role": "user"}}),
    ("bad role", {"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}),
    ("content wrong type", {"model": MODEL, "messages": [{"role": "user", "content": 3}]}),
    ("stream wrong type", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "true"}),
]


@pytest.mark.parametrize("name,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_400_envelope_and_store_nothing(mproxy: Proxy, upstream: Upstream, name: str, body: Any) -> None:
    with mproxy.http() as http:
        before = http.get("/memory/sessions").json()["data"]
        if isinstance(body, bytes):
            response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        else:
            response = http.post("/v1/chat/completions", json=body)
        after = http.get("/memory/sessions").json()["data"]
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert after == before
    assert upstream.fake.chat_requests() == []


def test_bad_memory_headers_are_400(mproxy: Proxy, upstream: Upstream) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    with mproxy.http() as http:
        assert http.post("/v1/chat/completions", json=body, headers={"X-Memory-Budget": "lots"}).status_code == 400
        assert http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "x" * 300}).status_code == 400
    assert upstream.fake.chat_requests() == []


def test_memory_routes_and_delete(mproxy: Proxy, upstream: Upstream) -> None:
    client = mproxy.client(default_headers={"X-Memory-Session": "to-delete"})
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Constraint: never store secrets"}])
    with mproxy.http() as http:
        ids = [s["id"] for s in http.get("/memory/sessions").json()["data"]]
        assert "to-delete" in ids
        info = http.get("/memory/sessions/to-delete").json()
        assert info["counts"]["messages"] == 2
        assert http.get("/memory/sessions/nope").status_code == 404
        assert http.get("/memory/sessions/nope/export").json()["error"]["type"] == "not_found_error"
        assert http.post("/memory/sessions/to-delete/compile", json={"budget_tokens": 5}).status_code == 400
        deleted = http.delete("/memory/sessions/to-delete")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert http.get("/memory/sessions/to-delete").status_code == 404
        assert http.delete("/memory/sessions/to-delete").status_code == 404
        assert "to-delete" not in [s["id"] for s in http.get("/memory/sessions").json()["data"]]
        assert http.get("/nowhere").json()["error"]["type"] == "not_found_error"


def test_fail_open_when_memory_breaks(mproxy: Proxy, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    from memory import StorageError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("database is locked")

    runtime = mproxy.services.runtime
    monkeypatch.setattr(runtime, "resolve_session", broken)
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "please still answer"}]
    raw = mproxy.client().chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    assert raw.parse().choices[0].message.content == "echo: please still answer"
    assert "database is locked" in raw.headers["x-memory-error"]
    assert upstream.fake.last_chat().json()["messages"] == messages
    # A failure inside compile: the original request still goes up unmodified, streaming too.
    monkeypatch.undo()
    session_type = type(runtime.session("x"))
    monkeypatch.setattr(session_type, "prepare_turn", broken)
    long = [{"role": "user", "content": _user_turn(i)} if i % 2 == 0 else {"role": "assistant", "content": "ok"} for i in range(41)]
    chunks = mproxy.client().chat.completions.with_raw_response.create(model=MODEL, messages=long, stream=True, extra_headers={"X-Memory-Session": "fail-open", "X-Memory-Budget": "300"})
    assert "StorageError" in chunks.headers["x-memory-error"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks.parse() if c.choices)
    assert text == f"echo: {_user_turn(40)}"
    assert upstream.fake.last_chat().json()["messages"] == long


def test_storage_holds_no_api_key(mproxy: Proxy, upstream: Upstream) -> None:
    # Runs last in this module: every conversation above used OPENAI_KEY or the env fallback.
    client = mproxy.client(default_headers={"X-Memory-Session": "key-scan"})
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "store me"}])
    if mproxy.config.storage_url:
        dumps = {"database": dump_database(mproxy.config.storage_url)}
    else:
        storage = mproxy.config.storage_path
        dumps = {p: open(p, "rb").read() for p in (storage, storage + "-wal", storage + "-shm") if _exists(p)}
    assert dumps
    for where, data in dumps.items():
        for key in (OPENAI_KEY, "sk-env-fallback-key-0c4d"):
            assert key.encode() not in data, f"{key} found in {where}"
    assert b"store me" in b"".join(dumps.values())  # the scan can see plain text


def _exists(path: str) -> bool:
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False


def test_healthz(mproxy: Proxy) -> None:
    assert httpx.get(mproxy.url + "/healthz").text == "ok"
