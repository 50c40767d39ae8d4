"""Issue 21 item 7: the proxy answers from its first second. The embedding model loads in a worker
thread after start-up (held here on an event, not a timer): meanwhile `/healthz` is 200 and says
ranking is lexical, chats are answered and stored; once the model is ready `/healthz` is a plain
"ok", the log says so, and what was stored meanwhile is embedded without anyone asking. A model that
fails to load leaves ranking lexical and says why. (`python -m benchmarks.start_time` measures the
time to the first answer of a real `memory-runtime serve`.)"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memory import EmbeddingModelError
from proxy.config import ProxyConfig
from testkit.embedders import HashEmbedder
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
KEY = {"Authorization": "Bearer sk-fast-start-caller-" + "3" * 20}
LEXICAL = "embedding model loading, ranking lexically until it is ready"


class HeldModel:
    """`load_embedder` that blocks until the test releases it, then returns a `HashEmbedder` (or fails)."""

    def __init__(self, fail: bool = False) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, model: str | None, model_dir: str | Path | None = None) -> HashEmbedder:
        self.started.set()
        if not self.release.wait(timeout=60):
            raise EmbeddingModelError("the test never released the model")
        if self.fail:
            raise EmbeddingModelError("model.onnx is missing from the model folder")
        return HashEmbedder()


async def _unembedded(r: Running, session_suffix: str, model: str) -> tuple[int, int]:
    """(chunks of the session, those without a vector of `model`), read on the store's connection."""
    rows = await r.connection.execute_fetchall(
        "SELECT count(*), sum(NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.content_hash = c.content_hash)) "
        "FROM chunks c WHERE c.session_id LIKE ?", (model, f"%/{session_suffix}"))
    return int(rows[0][0]), int(rows[0][1] or 0)


async def test_the_proxy_answers_while_the_model_loads_then_uses_vectors(proxy_config: Callable[..., ProxyConfig],
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    held = HeldModel()
    monkeypatch.setattr("memory.runtime.load_embedder", held)
    caplog.set_level(logging.INFO, logger="memory")
    config = proxy_config(MEMORY_RUNTIME_EMBEDDING_MODEL="held-test-model")
    async with running(config, wait_for_model=False) as r:  # start-up is over while the model is still held
        assert await asyncio.to_thread(held.started.wait, 10)
        health = await r.http.get("/healthz")
        assert health.status_code == 200 and health.text == f"ok ({LEXICAL})"
        assert any("ranking lexically until it is ready" in m for m in caplog.messages)
        messages = [{"role": "user", "content": "Decision: the early cache lives in qzearlyredis."}]
        for n in range(3):
            reply = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages},
                                      headers={**KEY, "X-Memory-Session": "early"})
            assert reply.status_code == 200 and "x-memory-error" not in reply.headers, reply.headers
            messages += [reply.json()["choices"][0]["message"], {"role": "user", "content": f"Follow-up {n} about qzearlyredis."}]
        assert r.runtime.embedder is None
        chunks, missing = await _unembedded(r, "early", "held-test-model")
        probes = await r.connection.execute_fetchall("SELECT count(*) FROM chunks WHERE session_id LIKE '%/early' AND parent_id IS NOT NULL")
        assert chunks > 0 and probes[0][0] > 0  # pair probes too, for the model to embed once it is ready
        held.release.set()
        await asyncio.wait_for(r.runtime.wait_for_model(), 30)
        assert isinstance(r.runtime.embedder, HashEmbedder)
        assert (await r.http.get("/healthz")).text == "ok"
        assert any("ready after" in m and "ranking with vectors" in m for m in caplog.messages)
        # What was stored meanwhile is embedded in the background, with no request asking for it.
        deadline = time.monotonic() + 30
        while (await _unembedded(r, "early", HashEmbedder.name))[1]:
            assert time.monotonic() < deadline, "the chunks stored while the model loaded were never embedded"
            await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above
        # And the next turn ranks with vectors (its question is embedded for the compile).
        reply = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages},
                                  headers={**KEY, "X-Memory-Session": "early", "X-Memory-Budget": "60"})
        assert reply.status_code == 200 and "x-memory-error" not in reply.headers
        assert r.runtime._embeddings.recent(messages[-1]["content"]) is not None


async def test_a_model_that_fails_to_load_leaves_ranking_lexical_and_says_why(proxy_config: Callable[..., ProxyConfig],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldModel(fail=True)
    monkeypatch.setattr("memory.runtime.load_embedder", held)
    async with running(proxy_config(MEMORY_RUNTIME_EMBEDDING_MODEL="held-test-model"), wait_for_model=False) as r:
        held.release.set()
        await asyncio.wait_for(r.runtime.wait_for_model(), 30)
        health = await r.http.get("/healthz")
        assert health.status_code == 200 and "failed to load, ranking lexically: model.onnx is missing" in health.text
        reply = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                                  headers={**KEY, "X-Memory-Session": "after-failure"})
        assert reply.status_code == 200 and "x-memory-error" not in reply.headers and r.runtime.embedder is None
