"""Memory failures fail open: the request goes upstream unmodified with `X-Memory-Error`, the user
gets the reply, and once the cause goes the proxy recovers by itself (no restart) and catches up
on what the client resends.

Faults are real SQLite or model failures, injected in ways that work when the suite runs as root
(where chmod cannot make a file read-only): `PRAGMA query_only` makes the connection refuse writes
with SQLITE_READONLY; a second connection holding a write transaction makes the database locked;
an embedder whose model "vanishes" raises EmbeddingModelError; a file that is not a database at all
is in place when the proxy starts (a real process)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from memory import EmbeddingModelError
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from testkit.processes import start_proxy_process
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
TOPIC = "We are planning the storage layer; the notes below are long on purpose so that a small budget forces a compile. "


@dataclass
class FlakyEmbedder:
    """Deterministic unit vectors, or EmbeddingModelError while `failing` (the model went away)."""

    name: str = "flaky-test-embedder"
    dim: int = 16
    failing: bool = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.failing:
            raise EmbeddingModelError("embedding model file is missing")
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8).astype(np.float32) + 1 for t in texts]
        matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


Fault = Callable[[Running, Path], Awaitable[Callable[[], Awaitable[None]]]]


async def _read_only(r: Running, db: Path) -> Callable[[], Awaitable[None]]:
    await r.connection.execute("PRAGMA query_only = ON")

    async def heal() -> None:
        await r.connection.execute("PRAGMA query_only = OFF")

    return heal


async def _locked(r: Running, db: Path) -> Callable[[], Awaitable[None]]:
    # The store waits busy_timeout (5 s) for a lock; shorten it so the test stays quick.
    await r.connection.execute("PRAGMA busy_timeout = 200")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def heal() -> None:
        other.execute("ROLLBACK")
        other.close()

    return heal


async def _embedding_model(r: Running, db: Path) -> Callable[[], Awaitable[None]]:
    embedder = r.runtime.embedder
    assert isinstance(embedder, FlakyEmbedder)
    embedder.failing = True

    async def heal() -> None:
        embedder.failing = False

    return heal


def _turn(n: int) -> str:
    return f"Turn {n}: " + TOPIC * 3


async def _chat(r: Running, messages: list[dict[str, Any]], stream: bool) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "stream": stream}
    return await r.http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "faulty", "X-Memory-Budget": "120"})


def _reply(response: httpx.Response, stream: bool) -> str:
    assert response.status_code == 200, response.text
    if not stream:
        return str(response.json()["choices"][0]["message"]["content"])
    assert response.text.rstrip().endswith("data: [DONE]")
    events = [json.loads(b[6:]) for b in response.text.split("\n\n") if b.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))


@asynccontextmanager
async def _proxy(config: ProxyConfig, with_embedder: bool) -> AsyncIterator[Running]:
    async with running(config) as r:
        if with_embedder:
            r.runtime.embedder = FlakyEmbedder()
        yield r


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", [_read_only, _locked, _embedding_model], ids=["read-only", "locked", "embedding-model"])
async def test_memory_failure_fails_open_and_recovers(proxy_config: Callable[..., ProxyConfig], faulty: Upstream, fault: Fault, stream: bool) -> None:
    config = proxy_config()
    async with _proxy(config, with_embedder=fault is _embedding_model) as r:
        messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
        for n in range(3):
            messages.append({"role": "user", "content": _turn(n)})
            response = await _chat(r, messages, stream)
            assert "x-memory-error" not in response.headers
            messages.append({"role": "assistant", "content": _reply(response, stream)})
        assert faulty.fake.last_chat().json()["messages"] != messages  # healthy: the prompt was compiled

        heal = await fault(r, Path(config.storage_path))
        messages.append({"role": "user", "content": _turn(3)})
        response = await _chat(r, messages, stream)
        assert response.headers["x-memory-error"]
        assert _reply(response, stream) == f"echo: {_turn(3)}"
        assert faulty.fake.last_chat().json()["messages"] == messages  # forwarded unmodified
        messages.append({"role": "assistant", "content": f"echo: {_turn(3)}"})

        await heal()
        messages.append({"role": "user", "content": _turn(4)})
        response = await _chat(r, messages, stream)
        assert "x-memory-error" not in response.headers
        assert _reply(response, stream) == f"echo: {_turn(4)}"
        assert faulty.fake.last_chat().json()["messages"] != messages  # compiled again
        export = (await r.http.get("/memory/sessions/faulty/export")).json()
    users = [e["content"] for e in export["events"] if e["type"] == "user_message"]
    replies = [e["content"] for e in export["events"] if e["type"] == "assistant_message"]
    # The turn that failed open is caught up from the resent history, each message once, in order.
    assert users == [_turn(n) for n in range(5)]
    assert replies == [f"echo: {_turn(n)}" for n in range(5)]


def test_corrupt_database_at_start_fails_open_until_the_file_is_replaced(faulty: Upstream, tmp_path: Path) -> None:
    db = tmp_path / "memory.sqlite"
    db.write_bytes(b"this is not an SQLite database. " * 512)
    proxy = start_proxy_process(tmp_path, faulty.url, health="/v1/models")  # /healthz rightly says memory is down
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "still there?"}]}
        headers = {"X-Memory-Session": "after-corruption"}
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            health = http.get("/healthz")
            assert health.status_code == 503 and "cannot open memory store" in health.json()["error"]["message"]
            for stream in (False, True):
                response = http.post("/v1/chat/completions", json={**body, "stream": stream}, headers=headers)
                assert _reply(response, stream) == "echo: still there?"
                assert "StorageError" in response.headers["x-memory-error"]
                assert faulty.fake.last_chat().json()["messages"] == body["messages"]
            listed = http.get("/memory/sessions")
            assert listed.status_code == 500 and listed.json()["error"]["type"] == "server_error"
            db.unlink()  # the operator moves the broken file away
            assert http.get("/healthz").status_code == 200
            response = http.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200 and "x-memory-error" not in response.headers
            export = http.get("/memory/sessions/after-corruption/export").json()
        assert [e["content"] for e in export["events"]] == ["still there?", "echo: still there?"]
    finally:
        proxy.stop()
    assert proxy.process.returncode == 0  # a graceful exit: the failed opens left no thread behind




def test_a_failed_open_on_a_corrupt_file_leaves_nothing_running(tmp_path: Path) -> None:
    db = tmp_path / "corrupt.sqlite"
    db.write_bytes(b"this is not an SQLite database. " * 512)
    script = (
        "import asyncio, sys\n"
        "from memory import StorageError, create_runtime\n"
        "async def main():\n"
        "    try:\n"
        f"        await create_runtime({str(db)!r}, embedding_model='none').open()\n"
        "    except StorageError:\n"
        "        return\n"
        "    sys.exit('opened a corrupt file')\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        # A thread left running keeps the process alive for good; 120 s only spares a busy machine.
        assert process.wait(timeout=120) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the interpreter could not exit: a connection thread was left running")
