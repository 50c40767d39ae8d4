"""The model lane: one call at a time, the small calls that wait meanwhile go together in the next
one, each caller gets its own rows, a large call runs on its own, and close leaves nothing running."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from memory.recall.model_lane import LANE_CHARS, ModelLane
from memory.runtime import Runtime
from testkit.embedders import HashEmbedder

DEADLINE_S = 30.0


class GatedRecorder:
    """Hash vectors; records each call's texts; its first call blocks in its thread until `gate`."""

    name = "gated-lane-embedder"
    dim = 8

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if len(self.calls) == 1:
            self.entered.set()
            self.gate.wait(DEADLINE_S)
        return HashEmbedder(self.name, self.dim).embed(texts)


async def _until(flag: threading.Event) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not flag.is_set():
        assert time.monotonic() < deadline, "the first call never reached the model"
        await asyncio.sleep(0.005)  # poll, bounded by the deadline


def _rows(texts: Sequence[str]) -> np.ndarray:
    return HashEmbedder(GatedRecorder.name, GatedRecorder.dim).embed(texts)


async def test_calls_waiting_behind_a_running_call_go_together_and_each_gets_its_rows() -> None:
    lane, model = ModelLane(), GatedRecorder()
    try:
        first = lane.embed(model, ["q0"])
        await _until(model.entered)
        waiting = [lane.embed(model, [f"q{i}", f"chunk {i}"]) for i in range(1, 4)]
        cancelled = lane.embed(model, ["dropped"])
        cancelled.cancel()
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *waiting), DEADLINE_S)
        assert model.calls == [["q0"], ["q1", "chunk 1", "q2", "chunk 2", "q3", "chunk 3"]]  # one call for the three
        assert np.allclose(results[0], _rows(["q0"]))
        for i, rows in enumerate(results[1:], start=1):
            assert np.allclose(rows, _rows([f"q{i}", f"chunk {i}"]))
        assert len(model.threads) == 1 and lane.running is None
    finally:
        model.gate.set()
        await lane.close()


async def test_a_coalesced_call_is_bounded_and_the_rest_goes_next() -> None:
    lane, model = ModelLane(max_texts=4), GatedRecorder()
    try:
        first = lane.embed(model, ["q0"])
        await _until(model.entered)
        waiting = [lane.embed(model, [f"q{i}"]) for i in range(1, 7)]
        model.gate.set()
        await asyncio.wait_for(asyncio.gather(first, *waiting), DEADLINE_S)
        assert model.calls == [["q0"], ["q1", "q2", "q3", "q4"], ["q5", "q6"]]
    finally:
        model.gate.set()
        await lane.close()


async def test_a_failed_call_fails_every_caller_in_it_and_the_lane_goes_on() -> None:
    class Failing(GatedRecorder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if "bad" in texts:
                raise RuntimeError("model failed")
            return super().embed(texts)

    lane, model = ModelLane(), Failing()
    model.gate.set()
    try:
        with pytest.raises(RuntimeError, match="model failed"):
            await asyncio.wait_for(lane.embed(model, ["bad"]), DEADLINE_S)
        assert np.allclose(await asyncio.wait_for(lane.embed(model, ["good"]), DEADLINE_S), _rows(["good"]))
    finally:
        await lane.close()


def test_a_lane_left_running_by_an_ended_loop_serves_the_next_one() -> None:
    lane, model = ModelLane(), GatedRecorder()

    async def leave_running() -> None:
        lane.embed(model, ["left behind"])
        await _until(model.entered)  # the loop ends with the call still in the model

    asyncio.run(leave_running())
    model.gate.set()

    async def next_loop() -> np.ndarray:
        try:
            return await asyncio.wait_for(lane.embed(model, ["next"]), DEADLINE_S)
        finally:
            await lane.close()

    assert np.allclose(asyncio.run(next_loop()), _rows(["next"]))


def test_only_small_calls_join_the_lane() -> None:
    assert ModelLane.fits(["a question", "x" * (LANE_CHARS - 20)])
    assert not ModelLane.fits(["a question", "x" * LANE_CHARS])


async def test_close_waits_for_the_running_call_and_cancels_the_waiting_ones() -> None:
    lane, model = ModelLane(), GatedRecorder()
    first = lane.embed(model, ["q0"])
    await _until(model.entered)
    waiting = lane.embed(model, ["q1"])
    closing = asyncio.create_task(lane.close())
    done, _ = await asyncio.wait({closing}, timeout=0.2)
    assert not done, "close returned while the lane's call was still running"
    model.gate.set()
    await asyncio.wait_for(closing, DEADLINE_S)
    assert first.done() and waiting.cancelled() and model.calls == [["q0"]]


async def test_concurrent_turns_questions_share_one_model_call(tmp_path: Path) -> None:
    """Through the runtime: questions of turns planned at once, while the lane is busy, are
    embedded in one call, and each turn ranks with its own question's vector."""
    model = GatedRecorder()
    rt = Runtime(tmp_path / "l.sqlite", embedder=model)
    held = asyncio.Event()
    rt._embeddings._quiet = held.wait  # no background batch in this test
    try:
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} about the qzq{i} parser"} for i in range(12)]
        for s in ("a", "b", "c"):
            await rt.session(s).sync_messages(history)
        blocker = rt._embeddings._lane.embed(model, ["occupies the lane"])
        await _until(model.entered)
        questions = {s: f"what did session {s} say about qzq{n}?" for n, s in enumerate("abc")}
        plans = [asyncio.create_task(rt.session(s).prepare_turn(history + [{"role": "user", "content": q}], budget_tokens=60))
                 for s, q in questions.items()]
        deadline = time.monotonic() + DEADLINE_S
        while len(rt._embeddings._lane._waiting) < 3:
            assert time.monotonic() < deadline, "the turns never asked for their questions' vectors"
            await asyncio.sleep(0.005)  # poll, bounded by the deadline
        model.gate.set()
        await asyncio.wait_for(asyncio.gather(blocker, *plans), DEADLINE_S)
        assert sorted(model.calls[1]) == sorted(questions.values()) and len(model.calls) == 2
        for q in questions.values():
            vector = rt._embeddings.recent(q)
            assert vector is not None and np.allclose(vector, _rows([q])[0])
    finally:
        model.gate.set()
        held.set()
        await rt.close()
