"""Bounded work per request: what is over the configured limits is refused whole, with a 413 in
the OpenAI envelope, before anything is stored or forwarded; malformed bytes are a 400, not a 500.
(How long the largest allowed request takes, and /healthz meanwhile, is measured in
`benchmarks.stress --largest-request`, not here.)"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from proxy.config import ProxyConfig
from testkit.harness import Upstream
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
KEY = {"Authorization": "Bearer sk-limits-suite-caller-" + "5" * 20}


async def _stored(r: Running) -> int:
    return sum(s["events"] for s in (await r.http.get("/memory/sessions", headers=KEY)).json()["data"])


async def _post(r: Running, body: bytes) -> httpx.Response:
    return await r.http.post("/v1/chat/completions", content=body, headers={**KEY, "Content-Type": "application/json", "X-Memory-Session": "limits"})


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text[:300]
    error: dict[str, object] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


async def test_ten_thousand_messages_are_refused_whole(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    history = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n}: let us talk about item {n} at some length."} for n in range(10_000)]
    async with running(proxy_config()) as r:
        error = _refused(await _post(r, json.dumps({"model": MODEL, "messages": history}).encode()), 413, "too_many_messages")
        assert error["param"] == "messages" and "4096" in str(error["message"])
        assert await _stored(r) == 0 and faulty.fake.chat_requests() == []


async def test_a_message_over_the_token_limit_is_refused(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    config = proxy_config("upstreams: {retries: 0}\nlimits: {max_message_tokens: 1000, max_messages: 10}\n")
    words = " ".join(f"word{n}" for n in range(1500))  # ~3,000 tokens, ~12 KB: over the bound, counted
    async with running(config) as r:
        ok = [{"role": "user", "content": "short"}]
        error = _refused(await _post(r, json.dumps({"model": MODEL, "messages": [*ok, {"role": "assistant", "content": words}]}).encode()), 413, "message_too_large")
        assert error["param"] == "messages[1]" and "tokens" in str(error["message"])
        _refused(await _post(r, json.dumps({"model": MODEL, "messages": ok * 11}).encode()), 413, "too_many_messages")
        assert await _stored(r) == 0 and faulty.fake.chat_requests() == []
        assert (await _post(r, json.dumps({"model": MODEL, "messages": ok * 10}).encode())).status_code == 200  # at the limits: served


async def test_two_megabytes_of_one_character_are_refused_without_tokenizing(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "a" * 2_000_000}]}).encode()
        error = _refused(await _post(r, body), 413, "message_too_large")
        assert "characters" in str(error["message"])
        assert await _stored(r) == 0 and faulty.fake.chat_requests() == []


async def test_raw_surrogate_bytes_are_a_400(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        for raw in (b"\xed\xa0\x80", b"ok \xed\xbf\xbf end", b"\xff\xfe"):
            body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + raw + b'"}]}'
            _refused(await _post(r, body), 400, None)  # type: ignore[arg-type]
            compile_body = b'{"user_message": "' + raw + b'"}'
            response = await r.http.post("/memory/sessions/limits/compile", content=compile_body, headers={**KEY, "Content-Type": "application/json"})
            assert response.status_code in (400, 404) and response.status_code < 500
        assert await _stored(r) == 0 and faulty.fake.chat_requests() == []
