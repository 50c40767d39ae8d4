"""Gemini through the proxy with the official openai client: key header, system_instruction, tool
calls and thought signatures across turns, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from testkit.checks import orphan_problems
from testkit.harness import ENV_GEMINI_KEY, GEMINI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall
from tests.proxy.conftest import STORES, store_env

MODEL = "gemini-2.5-flash"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module", params=STORES)
def proxy(request: pytest.FixtureRequest, proxy_factory: Callable[..., Proxy]) -> Proxy:
    """This module's proxy, once per store."""
    return proxy_factory(**store_env(request))


def _parts(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for c in contents for p in c.get("parts", [])]


@pytest.mark.parametrize("model", [MODEL, "gemini/gemini-2.5-flash"])
def test_gemini_gets_key_header_and_system_instruction(proxy: Proxy, upstream: Upstream, model: str) -> None:
    client = proxy.client(api_key=GEMINI_KEY)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hello gemini"}], temperature=0.2
    )
    assert reply.choices[0].message.content == "echo: hello gemini"
    rec = upstream.fake.last_chat()
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in rec.headers
    body = rec.json()
    assert body["system_instruction"] == {"parts": [{"text": "Answer in French."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello gemini"}]}]
    assert body["generationConfig"]["temperature"] == 0.2


def test_gemini_env_key_is_the_fallback_and_openai_only_fields_are_dropped(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.http(key=None) as http:
        response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "user": "u1", "logit_bias": {"1": 1}})
    assert response.status_code == 200, response.text
    assert upstream.fake.last_chat().headers["x-goog-api-key"] == ENV_GEMINI_KEY


def test_gemini_streaming(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(api_key=GEMINI_KEY, default_headers={"X-Memory-Session": "gem-stream"})
    upstream.fake.enqueue(Reply(text="A streamed Gemini answer in several pieces."))
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream please"}], stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "A streamed Gemini answer in several pieces."
    assert any(c.usage is not None for c in chunks)
    rec = upstream.fake.last_chat()
    assert rec.path.endswith(":streamGenerateContent") and rec.query == "alt=sse"
    assert rec.headers["x-goog-api-key"] == GEMINI_KEY
    with proxy.http(key=GEMINI_KEY) as http:
        events = http.get("/memory/sessions/gem-stream/export").json()["events"]
    assert [e["content"] for e in events if e["type"] == "assistant_message"] == ["A streamed Gemini answer in several pieces."]


@pytest.mark.parametrize("stream", [False, True])
def test_thought_signature_survives_across_turns(proxy: Proxy, upstream: Upstream, stream: bool) -> None:
    sid = f"gem-sig-{stream}"
    signature = f"c2lnbmF0dXJlLXtzdHJlYW19-{stream}"
    client = proxy.client(api_key=GEMINI_KEY, default_headers={"X-Memory-Session": sid})
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"}]
    upstream.fake.enqueue(Reply(text=None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}, thought_signature=signature),)))
    if stream:
        calls: dict[int, dict[str, Any]] = {}
        for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                slot = calls.setdefault(call.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                slot["id"] = call.id or slot["id"]
                slot["function"]["name"] += (call.function.name or "") if call.function else ""
                slot["function"]["arguments"] += (call.function.arguments or "") if call.function else ""
        # A plain OpenAI client keeps only id/type/function: the signature must ride in the id.
        assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [calls[i] for i in sorted(calls)]}
    else:
        reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        assistant = reply.choices[0].message.model_dump(exclude_none=True)
    call_id = assistant["tool_calls"][0]["id"]
    assert signature in call_id
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    messages += [assistant, {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "clear"}'}]
    client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    body = upstream.fake.last_chat().json()
    calls_sent = [p for p in _parts(body["contents"]) if "function_call" in p or "functionCall" in p]
    assert calls_sent and calls_sent[0]["thoughtSignature"] == signature
    assert any("function_response" in p or "functionResponse" in p for p in _parts(body["contents"]))
    # The stored tool call kept the signature too (what a compiled prompt would send back).
    with proxy.http(key=GEMINI_KEY) as http:
        events = http.get(f"/memory/sessions/{sid}/export").json()["events"]
    stored = [e for e in events if e["type"] == "assistant_message" and signature in json.dumps(e)]
    assert stored


def test_thought_signature_survives_compilation(proxy: Proxy, upstream: Upstream) -> None:
    """With a small budget the proxy rebuilds the prompt from memory; the signed call still goes back."""
    client = proxy.client(api_key=GEMINI_KEY, default_headers={"X-Memory-Session": "gem-compiled", "X-Memory-Budget": "400"})
    signature = "U0lHTkVELUNPTVBJTEVE"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo? " + "context " * 20}]
    upstream.fake.enqueue(Reply(text=None, tool_calls=(ToolCall("get_weather", {"city": "Oslo"}, thought_signature=signature),)))
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assistant = reply.choices[0].message.model_dump(exclude_none=True)
    messages += [assistant, {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "cold"}]
    for n in range(6):
        messages.append({"role": "user", "content": f"Filler question {n}: " + "padding words " * 25})
        upstream.fake.enqueue(Reply(text=None, tool_calls=(ToolCall("get_weather", {"city": f"C{n}"}, thought_signature=f"{signature}{n}"),)))
        out = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS).choices[0].message.model_dump(exclude_none=True)
        messages += [out, {"role": "tool", "tool_call_id": out["tool_calls"][0]["id"], "content": "mild"}]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, tools=TOOLS)
    assert int(raw.headers["x-memory-original-tokens"]) > 400 >= int(raw.headers["x-memory-compiled-tokens"])
    body = upstream.fake.last_chat().json()
    calls_sent = [p for p in _parts(body["contents"]) if "function_call" in p or "functionCall" in p]
    assert calls_sent, "the live tail's tool call must be sent"
    assert all(p.get("thoughtSignature", "").startswith(signature) for p in calls_sent)
    # Each call Gemini sees is followed by its response: translate back to check pairing.
    assert orphan_problems(_as_openai(body["contents"])) == []


def _as_openai(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in contents:
        for p in c.get("parts", []):
            call = p.get("function_call") or p.get("functionCall")
            resp = p.get("function_response") or p.get("functionResponse")
            if call:
                out.append({"role": "assistant", "tool_calls": [{"id": call["name"] + json.dumps(call.get("args"))}]})
                last_call = out[-1]["tool_calls"][0]["id"]
            elif resp:
                out.append({"role": "tool", "tool_call_id": last_call})
    return out


def test_gemini_errors_keep_status(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(api_key=GEMINI_KEY)
    upstream.fake.enqueue(Reply(error_status=400, error_message="API key not valid"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    # Gemini's own error fields, read from its HTTP response (litellm keeps them only as text).
    assert bad.value.body == {"message": "API key not valid", "type": "FAILED_PRECONDITION", "param": None, "code": "400"}
    upstream.fake.enqueue(Reply(error_status=503, error_message="model overloaded"))
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
    assert down.value.status_code == 503
    assert down.value.body == {"message": "model overloaded", "type": "FAILED_PRECONDITION", "param": None, "code": "503"}


def test_gemini_dying_mid_stream_stores_no_partial_reply(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(api_key=GEMINI_KEY, default_headers={"X-Memory-Session": "gem-dies"})
    upstream.fake.enqueue(Reply(text="one two three four five six seven eight", die_after_chunks=2))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True):
            pass
    with proxy.http(key=GEMINI_KEY) as http:
        # Nothing of a turn whose call failed is stored: not the reply, not the question.
        assert http.get("/memory/sessions/gem-dies/export").status_code == 404
