"""No silent loss: when the database file is deleted under a running proxy, or stops taking writes,
/healthz says so (503) and every reply carries X-Memory-Error; nothing is acknowledged as stored
that is not. (SQLite keeps writing into a deleted file's inode, all of which vanishes at the next
start, so without a check the proxy would answer 200 and lose every turn.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from proxy.config import ProxyConfig
from testkit.harness import Proxy, Upstream, start_proxy
from tests.hardening.inproc import running

MODEL = "gpt-4o-mini"
KEY = {"Authorization": "Bearer sk-silent-loss-caller-" + "6" * 20}


def _chat(http: httpx.Client, messages: list[dict[str, Any]], stream: bool) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "stream": stream}, headers={"X-Memory-Session": "doomed"})


def _text(response: httpx.Response, stream: bool) -> str:
    if not stream:
        return str(response.json()["choices"][0]["message"]["content"])
    events = [json.loads(b[6:]) for b in response.text.split("\n\n") if b.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))


def test_a_deleted_database_is_reported_on_every_reply_and_by_healthz(served_proxy: Callable[..., Proxy], faulty: Upstream) -> None:
    proxy = served_proxy()
    db = Path(proxy.config.storage_path)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "first turn, stored"}]
    with httpx.Client(base_url=proxy.url, timeout=30, headers=KEY) as http:
        first = _chat(http, messages, False)
        assert first.status_code == 200 and "x-memory-error" not in first.headers
        assert http.get("/healthz").status_code == 200
        messages.append(first.json()["choices"][0]["message"])
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            path.unlink(missing_ok=True)
        for n, stream in enumerate((False, True, False)):
            messages.append({"role": "user", "content": f"turn {n} after the file is gone"})
            response = _chat(http, messages, stream)
            assert response.status_code == 200  # the user still gets the answer (fail open)...
            assert "deleted" in response.headers["x-memory-error"]  # ...and is told it was not kept
            assert _text(response, stream) == f"echo: turn {n} after the file is gone"
            messages.append({"role": "assistant", "content": f"echo: turn {n} after the file is gone"})
        health = http.get("/healthz")
    assert health.status_code == 503
    assert health.json()["error"]["code"] == "memory_unavailable" and "deleted" in health.json()["error"]["message"]
    proxy.served.stop()
    # The restart: a fresh file, and none of the turns above was ever claimed as stored.
    restarted = start_proxy(proxy.config)
    try:
        with httpx.Client(base_url=restarted.url, timeout=30, headers=KEY) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/memory/sessions/doomed").status_code == 404
    finally:
        restarted.served.stop()


async def test_healthz_reports_a_store_that_refuses_writes_and_recovers(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        assert (await r.http.get("/healthz")).status_code == 200
        await r.connection.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on every write
        body = {"model": MODEL, "messages": [{"role": "user", "content": "not kept"}]}
        response = await r.http.post("/v1/chat/completions", json=body, headers=KEY)
        assert response.status_code == 200 and response.headers["x-memory-error"]
        health = await r.http.get("/healthz")
        assert health.status_code == 503 and "readonly" in health.json()["error"]["message"].lower()
        await r.connection.execute("PRAGMA query_only = OFF")
        assert (await r.http.get("/healthz")).status_code == 200  # a probe write finds it healed
