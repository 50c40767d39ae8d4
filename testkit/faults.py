"""Fault modes of the fake upstream, chosen by model name so concurrent tests never share a script:

    slow-<ms>-<n>        stream n content chunks, <ms> milliseconds apart (non-streaming: wait
                         n * ms, then answer); a stream the proxy abandons is counted as cancelled
    held-<n>             stream the role chunk, then hold until the test calls `release()` (or
                         the fake is reset), then n content chunks: a long call whose end the test
                         chooses, so "was it still running?" never depends on a machine's speed
    reset-<n>            stream n chunks, then drop the TCP connection without ending the response
    status-<code>        answer with that HTTP status and an OpenAI error body

Any other model name is no fault: `Faults.answer` returns None and the ordinary API answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from .script import HOLD_LIMIT_S, sse

__all__ = ["Faults", "WORDS"]

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


@dataclass
class Faults:
    """Counts the slow streams it served, so a test can tell finished from abandoned ones."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0
    # Set when a slow stream is abandoned, so a test can wait for it with a deadline.
    cancelled_event: threading.Event = field(default_factory=threading.Event)
    # Set when a slow or held stream has begun, so a test can wait for it with a deadline.
    started_event: threading.Event = field(default_factory=threading.Event)
    _held: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> None:
        """Let the held streams go on."""
        self._held.set()

    def reset(self) -> None:
        with self._lock:
            self.started = self.finished = self.cancelled = 0
            self.cancelled_event.clear()
            self.started_event.clear()
            self._held.set()  # a stream a previous test left held ends now
            self._held = threading.Event()

    async def answer(self, model: str, stream: bool) -> Response | None:
        """The faulty answer `model` names, or None when it names no fault."""
        kind, _, rest = model.removeprefix("openai/").partition("-")
        if kind == "status":
            error = {"message": f"fake {rest}", "type": "fake_error", "param": None, "code": "fake"}
            return JSONResponse({"error": error}, status_code=int(rest))
        if kind not in ("slow", "reset", "held"):
            return None
        parts = rest.split("-")
        interval = int(parts[0]) / 1000 if kind == "slow" else 0.0
        count = int(parts[-1])
        held = self._held if kind == "held" else None
        if not stream:
            if held is not None:
                await _released(held)
            await asyncio.sleep(interval * count)
            return JSONResponse(_completion(model, " ".join(WORDS[i % len(WORDS)] for i in range(count))))
        return StreamingResponse(self._slow(model, interval, count, reset=kind == "reset", held=held), media_type="text/event-stream")

    async def _slow(self, model: str, interval: float, count: int, reset: bool, held: threading.Event | None = None) -> AsyncIterator[bytes]:
        with self._lock:
            self.started += 1
            self.started_event.set()
        done = False
        base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        try:
            yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            if held is not None:
                await _released(held)
            for i in range(count):
                if interval:
                    await asyncio.sleep(interval)
                yield sse({**base, "choices": [{"index": 0, "delta": {"content": WORDS[i % len(WORDS)] + " "}, "finish_reason": None}]})
            if reset:
                raise ConnectionResetError("fake upstream resets the connection mid-stream")
            yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            yield b"data: [DONE]\n\n"
            done = True
        finally:
            with self._lock:
                if done:
                    self.finished += 1
                elif not reset:
                    self.cancelled += 1
                    self.cancelled_event.set()


async def _released(held: threading.Event) -> None:
    """Wait (off the fake's loop) until `held` is set; bounded, so a test that fails before it
    releases leaves no thread behind for long."""
    await asyncio.to_thread(held.wait, HOLD_LIMIT_S)


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-slow",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
