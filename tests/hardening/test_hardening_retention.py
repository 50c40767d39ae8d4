"""Retention through the proxy: sessions past `retention.session_ttl_days` are erased by the app's
own sweep, and `max_sessions_per_caller` evicts only the over-quota caller's oldest sessions (one
caller filling its quota never erases another's memory)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.cli.main import main as cli_main
from proxy.config import ProxyConfig
from proxy.admin.retention import sweep
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
A = {"Authorization": "Bearer sk-retention-caller-a-" + "7" * 20}
B = {"Authorization": "Bearer sk-retention-caller-b-" + "8" * 20}


async def _make(r: Running, caller: dict[str, str], session: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"qzretain {session}"}]}
    response = await r.http.post("/v1/chat/completions", json=body, headers={**caller, "X-Memory-Session": session})
    assert response.status_code == 200


async def _ids(r: Running, caller: dict[str, str]) -> list[str]:
    return [s["id"] for s in (await r.http.get("/memory/sessions", headers=caller)).json()["data"]]


async def _age(r: Running, client_id: str, days: float) -> None:
    await r.connection.execute("UPDATE sessions SET updated_at = ? WHERE id LIKE ?", (time.time() - days * 86400, f"%/{client_id}"))


async def test_the_app_sweeps_sessions_past_their_ttl(proxy_config: Callable[..., ProxyConfig]) -> None:
    config = proxy_config("upstreams: {retries: 0}\nretention: {session_ttl_days: 7, sweep_interval_seconds: 0.05}\n")
    async with running(config) as r:
        for session in ("fresh", "stale"):
            await _make(r, A, session)
        await _age(r, "stale", 8)
        deadline = time.monotonic() + 60
        while "stale" in await _ids(r, A):
            assert time.monotonic() < deadline, "the sweep never erased the stale session"
            await asyncio.sleep(0.02)  # poll, bounded by the deadline
        assert await _ids(r, A) == ["fresh"]


async def test_the_per_caller_cap_never_evicts_another_caller(proxy_config: Callable[..., ProxyConfig], capsys: pytest.CaptureFixture[str]) -> None:
    config = proxy_config("upstreams: {retries: 0}\nretention: {max_sessions_per_caller: 2}\n")
    async with running(config) as r:
        await _make(r, B, "b-only")
        await _age(r, "b-only", 30)  # B's session is the oldest of all
        for n, session in enumerate(("a1", "a2", "a3", "a4")):
            await _make(r, A, session)
            await _age(r, session, 10 - n)
        assert await sweep(r.runtime, config.retention) != []
        assert await _ids(r, A) == ["a3", "a4"]
        assert await _ids(r, B) == ["b-only"]
        await _make(r, A, "a5")
    assert await asyncio.to_thread(cli_main, ["sessions", "expire", "--storage", config.storage_path, "--config", _config_file(config)]) == 0
    expired = json.loads(capsys.readouterr().out)["expired"]
    assert [e.rsplit("/", 1)[1] for e in expired] == ["a3"]


def _config_file(config: ProxyConfig) -> str:
    return str(Path(config.storage_path).parent / "config.yaml")  # written by `config_for`
