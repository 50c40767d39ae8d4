"""Every other /v1/* route is relayed unchanged; plus app-level guards (access token, body size,
retries) that sit in front of every route."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai
import pytest

from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply


def test_models_and_embeddings_through_the_sdk(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client()
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and emb.data[1].embedding == [0.1, 0.2, 0.3]
    rec = upstream.fake.requests[-1]
    assert rec.path == "/v1/embeddings" and rec.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert json.loads(rec.body)["input"] == ["a", "b"]


def test_method_query_headers_body_and_status_are_kept(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.http() as http:
        response = http.post(
            "/v1/files/abc/content?purpose=batch&limit=2",
            content=b"raw \x00 bytes",
            headers={"Authorization": "Bearer sk-relay", "X-Custom": "kept", "X-Memory-Session": "not-forwarded", "Content-Type": "application/octet-stream"},
        )
        deleted = http.delete("/v1/files/abc", headers={"Authorization": "Bearer sk-relay"})
    assert response.status_code == 201
    assert response.headers["x-fake-header"] == "yes"
    assert response.json() == {"method": "POST", "path": "/v1/files/abc/content", "query": "purpose=batch&limit=2", "authorization": "Bearer sk-relay", "body": "raw \x00 bytes"}
    rec = upstream.fake.requests[0]
    assert rec.headers["x-custom"] == "kept" and rec.headers["content-type"] == "application/octet-stream"
    assert "x-memory-session" not in rec.headers
    assert deleted.status_code == 200 and deleted.json()["method"] == "DELETE"


def test_streamed_relay_response(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.http() as http:
        with http.stream("GET", "/v1/audio/stream?stream=1") as response:
            assert response.status_code == 200
            assert b"".join(response.iter_bytes()) == b"part0;part1;part2;"


def test_relay_falls_back_to_env_key(proxy: Proxy, upstream: Upstream) -> None:
    with proxy.http(key=None) as http:
        http.get("/v1/models")
    assert upstream.fake.requests[-1].headers["authorization"] == "Bearer sk-env-fallback-key-0c4d"


def test_unreachable_upstream_is_a_502_envelope(proxy_factory: Callable[..., Proxy]) -> None:
    dead = proxy_factory("upstreams: {retries: 0, connect_timeout_seconds: 2}\n", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    with dead.http() as http:
        relayed = http.get("/v1/models")
        chat = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    for response in (relayed, chat):
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unreachable"


def test_retries_happen_before_any_byte_is_sent(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    retrying = proxy_factory("upstreams: {retries: 2}\n")
    upstream.fake.enqueue(Reply(error_status=503), Reply(error_status=429), Reply(text="third time lucky"))
    reply = retrying.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "third time lucky"
    assert len(upstream.fake.chat_requests()) == 3
    upstream.fake.reset()
    upstream.fake.enqueue(Reply(error_status=400))
    with pytest.raises(openai.BadRequestError):
        retrying.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True)
    assert len(upstream.fake.chat_requests()) == 1  # a 400 is not retried


def test_upstream_timeout_is_a_504_envelope(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    impatient = proxy_factory("upstreams: {retries: 0, timeout_seconds: 0.3}\n")
    upstream.fake.enqueue(Reply(text="too late", delay_seconds=1.5))
    with pytest.raises(openai.APIStatusError) as info:
        impatient.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 504
    assert info.value.body["code"] == "upstream_timeout"  # type: ignore[index]


def test_access_token_guards_every_route_but_healthz(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    guarded = proxy_factory("upstreams: {retries: 0}\nserver: {access_token: let-me-in}\n")
    with guarded.http() as http:
        assert http.get("/healthz").status_code == 200
        denied = http.get("/memory/sessions")
        assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert http.get("/v1/models", headers={"X-Memory-Access-Token": "wrong"}).status_code == 401
        assert http.get("/memory/sessions", headers={"X-Memory-Access-Token": "let-me-in"}).status_code == 200
    client = guarded.client(default_headers={"X-Memory-Access-Token": "let-me-in"})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "in"}]).choices[0].message.content == "echo: in"
    assert "x-memory-access-token" not in upstream.fake.last_chat().headers


def test_oversized_body_is_413(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    small = proxy_factory("upstreams: {retries: 0}\nserver: {max_body_bytes: 2000}\n")
    with small.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})

        def chunks():  # no Content-Length: the limit holds on bytes actually read
            yield b'{"model": "m", "messages": [{"role": "user", "content": "'
            yield b"y" * 5000
            yield b'"}]}'

        streamed = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    for r in (response, streamed):
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    assert upstream.fake.chat_requests() == []


def test_other_methods_on_chat_completions_are_relayed(proxy: Proxy, upstream: Upstream) -> None:
    # OpenAI serves stored completions at GET /v1/chat/completions[/{id}]; only POST gets memory.
    response = httpx.get(proxy.url + "/v1/chat/completions/chatcmpl-1?limit=3")
    assert response.status_code == 200 and response.json()["path"] == "/v1/chat/completions/chatcmpl-1"


def test_wrong_method_on_memory_routes_is_an_envelope(proxy: Proxy) -> None:
    response = httpx.put(proxy.url + "/memory/sessions")
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
