"""kill -9 of the proxy process under concurrent load, then a restart on the same file: SQLite's
integrity check passes and every exchange whose reply a client fully received (a 200 body, or a
stream that reached [DONE]) is stored, exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from testkit.harness import Upstream
from testkit.load import Tally, run_load, verify
from testkit.processes import start_proxy_process

SESSIONS = 4


async def _load_then_kill(url: str, kill: Callable[[], None], tally: Tally, wanted: int) -> None:
    # The load outlasts the wait below (the kill must land while requests are in flight, however
    # slow the machine): it stops when the test says so, not on its own.
    load = asyncio.create_task(run_load(url, clients=12, sessions=SESSIONS, seconds=600, max_requests=20_000, tally=tally))
    deadline = time.monotonic() + 120
    while len(tally.completed) < wanted and not load.done():
        assert time.monotonic() < deadline, "load made no progress"
        await asyncio.sleep(0.02)
    kill()  # SIGKILL while requests of every kind are in flight
    tally.stop = True
    await load


def test_kill_9_under_load_loses_no_acknowledged_exchange(faulty: Upstream, tmp_path: Path) -> None:
    proxy = start_proxy_process(tmp_path, faulty.url)
    tally = Tally()
    try:
        asyncio.run(_load_then_kill(proxy.url, proxy.kill9, tally, wanted=60))
    finally:
        if proxy.process.poll() is None:
            proxy.kill9()
    assert proxy.process.returncode == -9
    assert sum(tally.errors.values()) > 0, "the kill should have cut requests in flight"

    with sqlite3.connect(tmp_path / "memory.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []

    restarted = start_proxy_process(tmp_path, faulty.url)
    try:
        lost, duplicated = verify(restarted.url, tally.completed, [f"stress-{k}" for k in range(SESSIONS)])
        assert (lost, duplicated) == (0, 0), f"{lost} lost, {duplicated} duplicated of {len(tally.completed)}"
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            response = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "alive?"}]}, headers={"X-Memory-Session": "stress-0"})
        assert response.status_code == 200 and "x-memory-error" not in response.headers
    finally:
        restarted.stop()
