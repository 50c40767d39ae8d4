"""Replies through the proxy compared with OpenAI's documented shapes (`fixtures/openai_shapes.json`,
written down from the API reference): no field OpenAI does not send, the usage chunk with
`choices: []`, `refusal` inside `message`, the provider's error fields and headers passed back.
Chat and Responses, OpenAI and Gemini (whose replies litellm builds, so the shaping matters most)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import GEMINI_KEY, OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall

SHAPES = json.loads((Path(__file__).parent / "fixtures" / "openai_shapes.json").read_text())
EVENTS = SHAPES["response.events"]
CHAT = [{"role": "user", "content": "hello there"}]


def unknown_fields(value: Any, shape: Any, path: str = "$") -> list[str]:
    """Paths in `value` whose field the documented `shape` does not have."""
    if shape == "$response":
        shape = SHAPES["response"]
    elif shape == "$output_item":
        shape = {"_": SHAPES["response"]["output"]}["_"]
    if isinstance(value, dict) and isinstance(shape, dict):
        out: list[str] = []
        for key, inner in value.items():
            if key not in shape:
                out.append(f"{path}.{key}")
            else:
                out += unknown_fields(inner, shape[key], f"{path}.{key}")
        return out
    if isinstance(value, dict) and isinstance(shape, list):  # one of several documented item kinds
        kinds = [s for s in shape if isinstance(s, dict) and s.get("type") == value.get("type")] or shape[:1]
        return unknown_fields(value, kinds[0], path)
    if isinstance(value, list) and isinstance(shape, list) and shape:
        return [p for n, v in enumerate(value) for p in unknown_fields(v, shape if isinstance(v, dict) and len(shape) > 1 else shape[0],
                                                                        f"{path}[{n}]")]
    return []


def _post(proxy: Proxy, path: str, body: dict[str, Any], key: str = OPENAI_KEY) -> httpx.Response:
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        return http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


def _data(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def test_the_shape_check_can_fail() -> None:
    assert unknown_fields({"id": "x", "choices": [{"message": {"content": "", "provider_specific_fields": {}}}]},
                          SHAPES["chat.completion"]) == ["$.choices[0].message.provider_specific_fields"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash"])
def test_chat_replies_have_openais_fields_only(proxy: Proxy, upstream: Upstream, model: str) -> None:
    key = GEMINI_KEY if model.startswith("gemini") else OPENAI_KEY
    upstream.fake.enqueue(Reply(text="Sure."), Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)))
    for _ in range(2):
        response = _post(proxy, "/v1/chat/completions", {"model": model, "messages": CHAT}, key)
        assert response.status_code == 200, response.text
        body = response.json()
        assert unknown_fields(body, SHAPES["chat.completion"]) == []
        message = body["choices"][0]["message"]
        assert "refusal" in message and message["refusal"] is None and "logprobs" in body["choices"][0]
    streamed = _post(proxy, "/v1/chat/completions", {"model": model, "messages": CHAT, "stream": True,
                                                     "stream_options": {"include_usage": True}}, key)
    chunks = _data(streamed)
    assert chunks and all(unknown_fields(c, SHAPES["chat.completion.chunk"]) == [] for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0  # the usage chunk, as OpenAI sends it
    assert all(c["choices"] for c in chunks[:-1])


def test_usage_is_visible_to_the_documented_client_loop(proxy: Proxy, upstream: Upstream) -> None:
    stream = proxy.client().chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True, stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        if not chunk.choices:
            usage = chunk.usage
    assert usage is not None and usage.total_tokens > 0


def test_provider_headers_come_back_on_chat_and_responses(proxy: Proxy, upstream: Upstream) -> None:
    for path, body in (("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT}),
                       ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT, "stream": True}),
                       ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
                       ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True})):
        response = _post(proxy, path, body)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"].startswith("req_"), path  # the provider's id, not the proxy's
        assert response.headers["x-memory-request-id"] != response.headers["x-request-id"]
        assert response.headers["openai-processing-ms"] == "42" and response.headers["x-ratelimit-remaining-requests"] == "9999"


def test_upstream_error_fields_are_kept_on_chat(proxy: Proxy, upstream: Upstream) -> None:
    upstream.fake.enqueue(Reply(error_status=401, error_message="Incorrect API key provided: sk-te****"))
    response = _post(proxy, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": CHAT})
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "Incorrect API key provided: sk-te****", "type": "fake_error", "param": None,
                                         "code": "fake_code"}}
    assert response.headers["x-request-id"].startswith("req_chat") and response.headers["x-ratelimit-limit-requests"] == "10000"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash"])
def test_responses_replies_have_openais_fields_only(proxy: Proxy, upstream: Upstream, model: str) -> None:
    key = GEMINI_KEY if model.startswith("gemini") else OPENAI_KEY
    upstream.fake.enqueue(Reply(text="Sure."), Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)), Reply(text="Streamed."))
    for _ in range(2):
        response = _post(proxy, "/v1/responses", {"model": model, "input": "hello"}, key)
        assert response.status_code == 200, response.text
        assert unknown_fields(response.json(), SHAPES["response"]) == []
    streamed = _post(proxy, "/v1/responses", {"model": model, "input": "hello", "stream": True}, key)
    events = _data(streamed)
    assert [e["type"] for e in events][-1] == "response.completed"
    assert "".join(e.get("delta", "") for e in events if e["type"] == "response.output_text.delta") == "Streamed."
    for event in events:
        assert unknown_fields(event, EVENTS[event["type"]]) == [], event
