"""Localhost is not the web: what a web page (or a DNS-rebinding attacker) can make a browser send
to the proxy on 127.0.0.1 is refused before it is stored, relayed or billed to the operator's key.
Host allow-list, Origin, content types, OPTIONS, browser contexts without a key, and relay paths."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from proxy.config import ProxyConfig
from testkit.harness import Proxy, Upstream
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
KEY = "sk-browser-suite-caller-" + "3" * 24
ENV_KEY = "sk-browser-suite-operator-env-" + "4" * 20
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Decision: keep qzbrowsersecret."}]}
EVIL = "https://evil.example"


@pytest.fixture
def config(proxy_config: Callable[..., ProxyConfig]) -> ProxyConfig:
    return proxy_config(OPENAI_API_KEY=ENV_KEY)


async def _seed(r: Running) -> None:
    seeded = await r.http.post("/v1/chat/completions", json=CHAT, headers={"X-Memory-Session": "victim"})
    assert seeded.status_code == 200


async def _victim_exists(r: Running) -> bool:
    return (await r.http.get("/memory/sessions/victim")).status_code == 200


def _refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8787", "127.0.0.1.nip.io", "localhost.attacker.example:80"])
async def test_a_foreign_host_is_refused_on_every_route(config: ProxyConfig, faulty: Upstream, host: str) -> None:
    async with running(config) as r:
        await _seed(r)
        before = len(faulty.fake.requests)
        rebound = {"Host": host}
        _refused(await r.http.get("/memory/sessions", headers=rebound), 403)
        _refused(await r.http.get("/memory/sessions/victim/export", headers=rebound), 403)
        _refused(await r.http.delete("/memory/sessions/victim", headers=rebound), 403)
        _refused(await r.http.post("/v1/chat/completions", json=CHAT, headers=rebound), 403)
        _refused(await r.http.get("/v1/models", headers=rebound), 403)
        assert len(faulty.fake.requests) == before  # nothing relayed, nothing billed
        assert await _victim_exists(r)


@pytest.mark.parametrize("host", ["localhost:8787", "LOCALHOST", "127.0.0.1", "127.0.0.1:8787", "[::1]:8787", "10.1.2.3:8787"])
async def test_loopback_names_and_ip_literals_are_served(config: ProxyConfig, host: str) -> None:
    async with running(config) as r:
        assert (await r.http.get("/memory/sessions", headers={"Host": host})).status_code == 200


async def test_configured_host_names_are_served(proxy_config: Callable[..., ProxyConfig]) -> None:
    async with running(proxy_config("server: {allowed_hosts: [memory.internal]}\n")) as r:
        assert (await r.http.get("/memory/sessions", headers={"Host": "memory.internal:8787"})).status_code == 200
        _refused(await r.http.get("/memory/sessions", headers={"Host": "other.internal"}), 403)


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:3000", "http://127.0.0.1:1"])
async def test_a_foreign_origin_is_refused_even_with_a_key(config: ProxyConfig, faulty: Upstream, origin: str) -> None:
    async with running(config) as r:
        await _seed(r)
        before = len(faulty.fake.requests)
        page = {"Origin": origin, "Authorization": f"Bearer {KEY}"}
        _refused(await r.http.post("/v1/chat/completions", json=CHAT, headers=page), 403)
        _refused(await r.http.get("/memory/sessions", headers={"Origin": origin}), 403)
        _refused(await r.http.delete("/memory/sessions/victim", headers={"Origin": origin}), 403)
        _refused(await r.http.post("/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "batch"}, headers={"Origin": origin}), 403)
        assert len(faulty.fake.requests) == before and await _victim_exists(r)


async def test_an_allowed_origin_gets_cors_with_its_own_key_only(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    app = "https://app.example"
    async with running(proxy_config("server: {allowed_origins: ['https://app.example']}\n", OPENAI_API_KEY=ENV_KEY)) as r:
        preflight = await r.http.options("/v1/chat/completions", headers={"Origin": app, "Access-Control-Request-Method": "POST",
                                                                              "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == app
        ok = await r.http.post("/v1/chat/completions", json=CHAT, headers={"Origin": app, "Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == app
        assert faulty.fake.last_chat().headers["authorization"] == f"Bearer {KEY}"
        before = len(faulty.fake.requests)
        _refused(await r.http.post("/v1/chat/completions", json=CHAT, headers={"Origin": app}), 401)  # would spend ENV_KEY
        assert len(faulty.fake.requests) == before


async def test_simple_cross_site_bodies_are_refused(config: ProxyConfig, faulty: Upstream) -> None:
    async with running(config) as r:
        before = len(faulty.fake.requests)
        body = json.dumps(CHAT).encode()
        for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": content_type} if content_type else {}
            _refused(await r.http.post("/v1/chat/completions", content=body, headers=headers), 415)
            _refused(await r.http.post("/memory/sessions/victim/compile", content=b'{"user_message": "x"}', headers=headers), 415)
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            _refused(await r.http.post("/v1/files", content=b"purpose=batch", headers={"Content-Type": content_type}), 415)
        assert len(faulty.fake.requests) == before
        assert (await r.http.get("/memory/sessions")).json()["data"] == []  # nothing stored


async def test_a_browser_context_never_spends_the_environment_key(config: ProxyConfig, faulty: Upstream) -> None:
    # A form post or fetch from a page carries Sec-Fetch-* (or Referer) even when it sends no Origin.
    contexts: list[dict[str, str]] = [
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
        {"Referer": "https://evil.example/page"},
    ]
    async with running(config) as r:
        before = len(faulty.fake.requests)
        for browser in contexts:
            _refused(await r.http.post("/v1/chat/completions", json=CHAT, headers=browser), 401)
            _refused(await r.http.post("/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "batch"}, headers=browser), 401)
            _refused(await r.http.get("/v1/models", headers=browser), 401)
        _refused(await r.http.get("/memory/sessions", headers=contexts[0]), 401)  # keyless memory, from another site
        assert len(faulty.fake.requests) == before
        # The same requests from a program (no browser headers) still use the environment key.
        uploaded = await r.http.post("/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "batch"})
        assert uploaded.status_code == 201 and faulty.fake.requests[-1].headers["authorization"] == f"Bearer {ENV_KEY}"
        # The proxy's own page (a top-level navigation) may read keyless memory.
        assert (await r.http.get("/memory/sessions", headers={"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"})).status_code == 200


async def test_options_is_answered_locally_without_permissive_cors(config: ProxyConfig, faulty: Upstream) -> None:
    async with running(config) as r:
        before = len(faulty.fake.requests)
        for path in ("/v1/chat/completions", "/v1/models", "/v1/files/abc", "/memory/sessions"):
            local = await r.http.options(path, headers={"Access-Control-Request-Method": "POST"})
            assert local.status_code == 204
            assert not [h for h in local.headers if h.lower().startswith("access-control-")]
            _refused(await r.http.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"}), 403)
        assert len(faulty.fake.requests) == before


@pytest.fixture(scope="module")
def served(served_proxy: Callable[..., Proxy]) -> Proxy:
    return served_proxy()


@pytest.mark.parametrize(
    "path",
    ["/v1/../../x", "/v1/models/../../../x", "/v1/%2e%2e/%2e%2e/x", "/v1/models/..%2f..%2fx", "/v1/models%2F..%2F..%2Fx", "/v1//x",
     "/v1/./models", "/v1/models/..", "/v1/a%5c..%5cb"],
)
def test_relay_paths_stay_under_v1(served: Proxy, faulty: Upstream, path: str) -> None:
    before = len(faulty.fake.requests)
    host, port = served.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {KEY}"})  # sent verbatim, not normalised
        response = conn.getresponse()
        body: Any = response.read()
    finally:
        conn.close()
    assert response.status == 400, (path, response.status, body)
    assert b"invalid_path" in body
    assert len(faulty.fake.requests) == before


def test_upstream_cors_headers_are_not_relayed(served: Proxy, faulty: Upstream) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as client:
        relayed = client.get("/v1/cors-echo", headers={"Authorization": f"Bearer {KEY}"})
    assert relayed.status_code == 200 and faulty.fake.requests[-1].path == "/v1/cors-echo"
    assert not [h for h in relayed.headers if h.lower().startswith("access-control-")]
