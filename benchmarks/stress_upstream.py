"""A minimal OpenAI-compatible fake upstream for the stress benchmark, run as its own process.

    python -m benchmarks.stress_upstream --port 9001 [--latency-ms 0]

`POST /v1/chat/completions` answers `"echo: <last user text>"`, as JSON or as SSE in 32-character
chunks (with usage when `stream_options.include_usage`); `--latency-ms` delays every answer (the
first chunk, when streaming) to stand in for a real model. `GET /healthz` says ok. Loopback only.
Kept apart from `tests.fakes` so the benchmark does not import the test-suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

__all__ = ["build_app", "last_user_text"]

CHUNK = 32


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def build_app(latency_ms: float = 0.0) -> Starlette:
    delay = latency_ms / 1000

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        text = "echo: " + last_user_text(body.get("messages", []))
        model = body.get("model", "fake")
        usage = {"prompt_tokens": 10, "completion_tokens": len(text) // 4 + 1, "total_tokens": 10 + len(text) // 4 + 1}
        base = {"id": "chatcmpl-stress", "created": int(time.time()), "model": model}
        if delay:
            await asyncio.sleep(delay)
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                return b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [choice]}).encode() + b"\n\n"

            yield frame({"role": "assistant", "content": ""})
            for i in range(0, len(text), CHUNK):
                yield frame({"content": text[i : i + CHUNK]})
            yield frame({}, "stop")
            if include_usage:
                yield b"data: " + json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(build_app(args.latency_ms), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
