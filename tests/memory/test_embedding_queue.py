"""The background embedding queue: a request never waits for a background batch, and closing the
runtime leaves no model call running."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memory.runtime import Runtime

DEADLINE_S = 30.0


class GatedEmbedder:
    """Deterministic vectors; its first call (the background batch after a write) blocks in its
    worker thread until `gate` opens, the way a slow model call on a busy machine does."""

    name = "gated-test-embedder"
    dim = 8

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()
        self._first = True
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.entered.set()
            self.gate.wait(DEADLINE_S)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8).astype(np.float32) + 1 for t in texts]
        matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        if first:
            self.finished.set()
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _history(n: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} about the qzq{i} parser and its cache"} for i in range(n)]


async def _until(flag: threading.Event) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not flag.is_set():
        assert time.monotonic() < deadline, "the background batch never reached the model"
        await asyncio.sleep(0.005)  # poll, bounded by the deadline


async def test_a_turn_does_not_wait_for_the_background_batch_of_its_session(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    rt = Runtime(tmp_path / "q.sqlite", embedder=embedder)
    try:
        session = rt.session("s")
        history = _history(20)
        await session.sync_messages(history)  # schedules the background batch
        await _until(embedder.entered)
        # Over budget, so the turn ranks evidence and embeds its question (a second model call).
        plan = await asyncio.wait_for(
            session.prepare_turn(history + [{"role": "user", "content": "what about the qzq3 parser?"}], budget_tokens=120),
            DEADLINE_S / 2)
        assert not embedder.gate.is_set() and plan.layout.mode != "full_history"
        assert rt._views["s"].missing  # what the background holds ranks by its words this once
    finally:
        embedder.gate.set()
        await rt.close()


async def test_close_waits_for_a_model_call_already_running(tmp_path: Path) -> None:
    embedder = GatedEmbedder()
    rt = Runtime(tmp_path / "c.sqlite", embedder=embedder)
    closing: asyncio.Task[None] | None = None
    try:
        await rt.session("s").sync_messages(_history(6))
        await _until(embedder.entered)
        closing = asyncio.create_task(rt.close())
        done, _ = await asyncio.wait({closing}, timeout=0.2)
        assert not done, "close returned while a model call was still running in its thread"
        embedder.gate.set()
        await asyncio.wait_for(closing, DEADLINE_S)
        assert embedder.finished.is_set()
        assert not rt._embeddings._tasks and not rt._embeddings._calls
    finally:
        embedder.gate.set()
        if closing is None:
            await rt.close()
        else:
            await asyncio.wait_for(closing, DEADLINE_S)
