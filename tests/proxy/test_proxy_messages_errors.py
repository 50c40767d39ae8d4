"""The front door's refusals on Anthropic's routes come in Anthropic's envelope: a 415, 401, 403
or 413 raised before the route runs (the guard, the body limit, the message limits) reads as
`{"type": "error", "error": {"type", "message"}}` to the `anthropic` SDK and Claude Code, while
the OpenAI routes keep OpenAI's. Nothing reaches the upstream and nothing is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from testkit.fake_anthropic import anthropic_requests
from testkit.harness import Proxy, Upstream

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-test-error-key-77a1"
TOKEN = "operator-token-for-envelopes-0123"
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CONFIG = (f"upstreams: {{retries: 0}}\nserver: {{access_token: {TOKEN}, max_body_bytes: 20000}}\n"
          "limits: {max_messages: 3, max_message_tokens: 2000}\n")


@pytest.fixture(scope="module")
def guarded(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(CONFIG)


def _client(proxy: Proxy, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=KEY, max_retries=0,
                               default_headers={"anthropic-version": "2023-06-01", "X-Memory-Session": "env-errors", **headers})


def _anthropic_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind and body["error"]["message"]
    return body


def test_a_missing_or_wrong_access_token_is_anthropics_authentication_error(guarded: Proxy, upstream: Upstream) -> None:
    for headers in ({}, {"X-Memory-Access-Token": "not-the-token-at-all-123"}):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            _client(guarded, **headers).messages.create(**BODY)
        assert caught.value.status_code == 401
        assert caught.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                                "message": "missing or wrong X-Memory-Access-Token"}}
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        counted = http.post("/v1/messages/count_tokens", headers={"x-api-key": KEY}, json=BODY)
        _anthropic_error(counted, 401, "authentication_error")
        chat = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    # The OpenAI routes keep OpenAI's envelope.
    assert chat.status_code == 401 and chat.json()["error"]["type"] == "authentication_error" and "type" not in chat.json()
    assert not anthropic_requests(upstream.fake)


def test_wrong_content_type_host_and_origin(guarded: Proxy, upstream: Upstream) -> None:
    auth = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "X-Memory-Access-Token": TOKEN}
    with httpx.Client(base_url=guarded.url, timeout=30, headers=auth) as http:
        plain = http.post("/v1/messages", content=b'{"model": "m"}', headers={"Content-Type": "text/plain"})
        assert "Content-Type" in _anthropic_error(plain, 415, "invalid_request_error")["error"]["message"]
        _anthropic_error(http.post("/v1/messages", json=BODY, headers={"Host": "attacker.example"}), 403, "permission_error")
        _anthropic_error(http.post("/v1/messages", json=BODY, headers={"Origin": "https://attacker.example"}), 403, "permission_error")
        _anthropic_error(http.post("/v1/messages/count_tokens", json=BODY, headers={"Origin": "null"}), 403, "permission_error")
        chat = http.post("/v1/chat/completions", content=b"{}", headers={"Content-Type": "text/plain"})
    assert chat.status_code == 415 and chat.json()["error"]["code"] == "unsupported_media_type"
    assert not anthropic_requests(upstream.fake)


def test_over_the_limits_is_anthropics_request_too_large(guarded: Proxy, upstream: Upstream) -> None:
    client = _client(guarded, **{"X-Memory-Access-Token": TOKEN})
    big = [{"role": "user", "content": "word " * 5000}]
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(5)]
    for messages in (big, many):
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model=MODEL, max_tokens=64, messages=messages)  # type: ignore[arg-type]
        assert caught.value.status_code == 413
        assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"
        assert caught.value.body["error"]["type"] == "request_too_large"
    long_one = [{"role": "user", "content": " ".join(f"w{i}" for i in range(2500))}]
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=long_one)  # type: ignore[arg-type]
    assert caught.value.status_code == 413 and caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    with httpx.Client(base_url=guarded.url, timeout=30, headers={"X-Memory-Access-Token": TOKEN, "x-api-key": KEY}) as http:
        assert http.get("/memory/sessions/env-errors/export").status_code == 404
    assert not anthropic_requests(upstream.fake)
