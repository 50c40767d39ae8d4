"""The fake upstream of `tests.fakes`, plus fault modes the hardening tests need, chosen by model
name so concurrent tests never share a script:

    slow-<ms>-<n>        stream n content chunks, <ms> milliseconds apart (non-streaming: wait
                         n * ms, then answer); a stream the proxy abandons is counted as cancelled
    reset-<n>            stream n chunks, then drop the TCP connection without ending the response
    status-<code>        answer with that HTTP status and an OpenAI error body

Everything else is the ordinary `FakeUpstream` (echo, scripted replies, recording).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from proxy.config import ProxyConfig, load_config
from tests.fakes.server import ServedApp
from tests.fakes.upstream import FakeUpstream

__all__ = ["FaultyUpstream", "config_for", "WORDS"]

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


@dataclass
class FaultyUpstream(FakeUpstream):
    served: ServedApp | None = None
    started: int = 0
    finished: int = 0
    cancelled: int = 0
    # Set when a slow stream is abandoned, so a test can wait for it with a deadline.
    cancelled_event: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.started = self.finished = self.cancelled = 0
            self.cancelled_event.clear()

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        model = str(body.get("model", "")).removeprefix("openai/")
        kind, _, rest = model.partition("-")
        if kind == "status":
            await self._record(request)
            return JSONResponse({"error": {"message": f"fake {rest}", "type": "fake_error", "param": None, "code": "fake"}}, status_code=int(rest))
        if kind in ("slow", "reset"):
            await self._record(request)
            parts = rest.split("-")
            interval = int(parts[0]) / 1000 if kind == "slow" else 0.0
            count = int(parts[-1])
            if not body.get("stream"):
                await asyncio.sleep(interval * count)
                text = " ".join(WORDS[i % len(WORDS)] for i in range(count))
                return JSONResponse(_completion(model, text))
            return StreamingResponse(self._slow(model, interval, count, reset=kind == "reset"), media_type="text/event-stream")
        return await super().chat(request)

    async def _slow(self, model: str, interval: float, count: int, reset: bool) -> AsyncIterator[bytes]:
        with self._lock:
            self.started += 1
        done = False
        try:
            yield _chunk(model, {"role": "assistant", "content": ""})
            for i in range(count):
                if interval:
                    await asyncio.sleep(interval)
                yield _chunk(model, {"content": WORDS[i % len(WORDS)] + " "})
            if reset:
                raise ConnectionResetError("fake upstream resets the connection mid-stream")
            yield _chunk(model, {}, "stop")
            yield b"data: [DONE]\n\n"
            done = True
        finally:
            with self._lock:
                if done:
                    self.finished += 1
                elif not reset:
                    self.cancelled += 1
                    self.cancelled_event.set()


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-slow",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-slow",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def config_for(upstream: FaultyUpstream, folder: Path, yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> ProxyConfig:
    """A proxy config pointing at `upstream`, storing in `folder`, lexical-only memory."""
    cfg = folder / "config.yaml"
    cfg.write_text(yaml_text)
    values = {
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "GEMINI_API_BASE": upstream.url + "/v1beta",
        "MEMORY_RUNTIME_STORAGE_PATH": str(folder / "memory.sqlite"),
        "MEMORY_RUNTIME_EMBEDDING_MODEL": "none",
    }
    values.update(env)
    return load_config(cfg, env=values)
