"""Issue 21 item 4: deleting the `-wal` file under a running proxy is as loud as deleting the
database file. SQLite keeps committing into the deleted WAL's inode, and every commit since the last
checkpoint is gone after a kill -9; so /healthz answers 503 with the reason, every reply carries
`X-Memory-Error`, and nothing is acknowledged as stored that is not: after the kill, the restarted
proxy holds none of the turns answered once the WAL was gone."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from memory.store.sqlite.store import SqliteStore
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from testkit.processes import start_proxy_process
from tests.hardening.inproc import running

MODEL = "gpt-4o-mini"
KEY = {"Authorization": "Bearer sk-deleted-wal-caller-" + "5" * 20}


def _chat(http: httpx.Client, messages: list[dict[str, Any]], stream: bool) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "stream": stream},
                     headers={"X-Memory-Session": "wal-doomed"})


def test_a_deleted_wal_is_reported_and_nothing_after_it_is_acknowledged(faulty: Upstream, tmp_path: Path) -> None:
    wal = tmp_path / "memory.sqlite-wal"
    before_kill: list[str] = []
    proxy = start_proxy_process(tmp_path, faulty.url)
    try:
        with httpx.Client(base_url=proxy.url, timeout=30, headers=KEY) as http:
            messages: list[dict[str, Any]] = [{"role": "user", "content": "first turn qzfirstturn"}]
            first = _chat(http, messages, False)
            assert first.status_code == 200 and "x-memory-error" not in first.headers
            assert http.get("/healthz").status_code == 200
            messages.append(first.json()["choices"][0]["message"])
            wal.unlink()
            for n, stream in enumerate((False, True)):
                messages.append({"role": "user", "content": f"turn {n} qzafterwal{n}"})
                response = _chat(http, messages, stream)
                assert response.status_code == 200  # the answer still comes (fail open)...
                error = response.headers.get("x-memory-error", "")
                assert "WAL" in error and "deleted" in error, response.headers  # ...and says it was not kept
                before_kill.append(error)
                messages.append({"role": "assistant", "content": f"echo: turn {n} qzafterwal{n}"})
            health = http.get("/healthz")
            assert health.status_code == 503
            assert health.json()["error"]["code"] == "memory_unavailable" and "-wal was deleted" in health.json()["error"]["message"]
    finally:
        proxy.kill9()
    restarted = start_proxy_process(tmp_path, faulty.url)
    try:
        with httpx.Client(base_url=restarted.url, timeout=30, headers=KEY) as http:
            assert http.get("/healthz").status_code == 200
            exported = http.get("/memory/sessions/wal-doomed/export")
            assert "qzafterwal" not in exported.text  # never acknowledged, and indeed not there
    finally:
        restarted.kill9()
    assert len(before_kill) == 2


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_the_store_refuses_commits_once_its_wal_is_gone(proxy_config: Callable[..., ProxyConfig], how: str) -> None:
    async with running(proxy_config()) as r:
        store = r.runtime.store
        assert isinstance(store, SqliteStore)
        wal = Path(f"{store.path}-wal")
        session = r.runtime.session("k_x/s")
        await session.ingest({"type": "user_message", "payload": {"content": "stored before"}})
        assert await r.runtime.health() is None
        wal.unlink()
        if how == "replaced":
            fd = os.open(wal, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        problem = await r.runtime.health()
        assert problem is not None and f"-wal was {how}" in problem
        with pytest.raises(Exception, match=f"-wal was {how}"):
            await session.ingest({"type": "user_message", "payload": {"content": "never acknowledged"}})
        assert await asyncio.wait_for(r.runtime.health(), 5) == problem
