"""The background embedding queue: a request never waits for a background batch, embeds nothing on
its path but its question (and history it brought itself), background batches run at a lower
priority, and closing the runtime leaves no model call running."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memory.ingest.ingest import sha256_text
from memory.recall.embedding_queue import BACKGROUND_NICENESS, MAX_NICENESS
from memory.runtime import Runtime

DEADLINE_S = 30.0
# How long the gated model call waits for the test to open the gate by itself: well past every
# deadline a test sets, so a turn that (wrongly) waited for the batch times out instead of being
# let through by the gate giving up.
GATE_LIMIT_S = 4 * DEADLINE_S


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
            self.gate.wait(GATE_LIMIT_S)
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
            DEADLINE_S)
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


class RecordingEmbedder:
    """Deterministic vectors; records each call's texts and the niceness of the thread it ran in."""

    name = "recording-test-embedder"
    dim = 8

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append((list(texts), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8).astype(np.float32) + 1 for t in texts]
        matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def test_a_turn_embeds_its_question_and_leaves_earlier_turns_to_a_lower_priority_background(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        return  # a thread's own niceness is Linux's; elsewhere the batches run at the normal priority
    embedder = RecordingEmbedder()
    rt = Runtime(tmp_path / "p.sqlite", embedder=embedder)
    held = asyncio.Event()
    rt._embeddings._quiet = held.wait  # the background waits until the test lets it run
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    try:
        session = rt.session("s")
        history = _history(20)
        await session.sync_messages(history)  # stored, its chunks left to the (held) background
        q1, q2, q3 = "what about the qzq3 parser?", "and the qzq5 cache?", "which of them failed first?"
        plan = await session.prepare_turn(history + [{"role": "user", "content": q1}], budget_tokens=120)
        assert plan.layout.mode != "full_history"  # over budget: the turn ranked evidence
        assert embedder.calls == [([q1], own)]  # its question alone, at the process's priority
        assert rt._views["s"].missing  # the stored history ranks by its words until the background runs
        reply = {"role": "assistant", "content": "the qzq3 parser was fine"}
        await session.commit_turn(plan, reply)
        sent = history + [{"role": "user", "content": q1}, reply]
        plan = await session.prepare_turn(sent + [{"role": "user", "content": q2}], budget_tokens=120)
        assert embedder.calls[1:] == [([q2], own)]  # not the previous turn's reply
        held.set()
        deadline = time.monotonic() + DEADLINE_S
        while rt._embeddings._sessions or rt._views["s"].missing:
            assert time.monotonic() < deadline, "the background never embedded the session"
            await asyncio.sleep(0.01)  # poll, bounded by the deadline
        background = embedder.calls[2:]
        lower = min(MAX_NICENESS, own + BACKGROUND_NICENESS)
        assert background and all(priority == lower > own for _, priority in background)  # own < 19 here
        everything = [t for texts, _ in embedder.calls for t in texts]
        assert everything.count(q1) == 1  # its user-message chunk took the question's vector
        stored = await rt.store.get_vectors(embedder.name, [sha256_text(q1)])
        assert set(stored) == {sha256_text(q1)}
        # History this request brings (memory lacked it) is embedded on its path, with its question.
        brought = [{"role": "user", "content": q2}, {"role": "assistant", "content": "the qzq5 cache held up under qzq9 load"}]
        before = len(embedder.calls)
        await session.prepare_turn(sent + brought + [{"role": "user", "content": q3}], budget_tokens=120)
        texts, priority = embedder.calls[before]
        assert texts[-1] == q3 and brought[1]["content"] in texts and priority == own
    finally:
        held.set()
        await rt.close()
