"""A fake OpenAI + Gemini upstream for tests: loopback only, scriptable, recording every request.

Speaks:
- OpenAI `POST /v1/chat/completions` (JSON and SSE, usage when `stream_options.include_usage`, tool
  calls), `GET /v1/models`, `POST /v1/embeddings`, and echoes any other `/v1/*` route;
- Gemini `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, with
  functionCall parts that carry a `thoughtSignature`.

Replies come from a queue of `Reply` scripts (`fake.enqueue(...)`); with the queue empty the reply is
`"echo: <last user text>"`. Every request is recorded (method, path, query, headers, body) in
`fake.requests` for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Reply", "ToolCall", "Recorded", "FakeUpstream"]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = "call_fake_1"
    thought_signature: str | None = None


@dataclass(frozen=True)
class Reply:
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # Respond with this HTTP status and an error body instead of a completion.
    error_status: int | None = None
    error_message: str = "fake upstream error"
    # Streaming only: send this many content chunks, then drop the connection.
    die_after_chunks: int | None = None
    # Wait this long before answering (for timeout tests).
    delay_seconds: float = 0.0
    # Streaming only: after the first content chunk, wait until the test sets this event.
    hold: threading.Event | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeUpstream:
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions") or ":generateContent" in r.path or ":streamGenerateContent" in r.path]

    def last_chat(self) -> Recorded:
        return self.chat_requests()[-1]

    def _next(self, default_text: str) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        return Reply(text=f"echo: {default_text}")

    async def _record(self, request: Request) -> Recorded:
        rec = Recorded(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    # ---- OpenAI -------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        rec = await self._record(request)
        body = rec.json()
        last_user = _last_user_text_openai(body.get("messages", []))
        reply = self._next(last_user)
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        if reply.error_status is not None:
            return JSONResponse(
                {"error": {"message": reply.error_message, "type": "fake_error", "param": None, "code": "fake_code"}},
                status_code=reply.error_status,
            )
        model = body.get("model", "fake")
        prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
        completion_tokens = len(reply.text or "") // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        tool_calls = [
            {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}}
            for tc in reply.tool_calls
        ]
        finish = "tool_calls" if tool_calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._openai_stream(model, reply, tool_calls, finish, usage if include_usage else None),
            media_type="text/event-stream",
        )

    async def _openai_stream(
        self, model: str, reply: Reply, tool_calls: list[dict[str, Any]], finish: str, usage: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        pieces = _pieces(reply.text or "")
        for n, piece in enumerate(pieces):
            if reply.die_after_chunks is not None and n >= reply.die_after_chunks:
                await asyncio.sleep(0)
                raise ConnectionAbortedError("fake upstream dies mid-stream")
            if n == 1 and reply.hold is not None:
                await asyncio.to_thread(reply.hold.wait, 10)
            yield chunk({"content": piece})
        for i, tc in enumerate(tool_calls):
            args = tc["function"]["arguments"]
            half = len(args) // 2
            yield chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": args[:half]}}]})
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
        yield chunk({}, finish)
        if usage is not None:
            yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "fake"}]})

    async def embeddings(self, request: Request) -> Response:
        rec = await self._record(request)
        inputs = rec.json().get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(items)],
                "model": rec.json().get("model"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    async def echo(self, request: Request) -> Response:
        rec = await self._record(request)
        if rec.query and "stream=1" in rec.query:
            async def gen() -> AsyncIterator[bytes]:
                for i in range(3):
                    yield f"part{i};".encode()
            return StreamingResponse(gen(), media_type="text/plain", status_code=200)
        return JSONResponse(
            {"method": rec.method, "path": rec.path, "query": rec.query, "authorization": rec.headers.get("authorization"), "body": rec.body.decode("utf-8", "replace")},
            status_code=201 if rec.method == "POST" else 200,
            # Like OpenAI's API, a permissive CORS answer: the proxy must not pass it on.
            headers={"x-fake-header": "yes", "access-control-allow-origin": "*", "access-control-allow-headers": "*"},
        )

    # ---- Gemini -------------------------------------------------------------------------------

    async def gemini(self, request: Request) -> Response:
        rec = await self._record(request)
        target = request.path_params["target"]
        model, _, action = target.partition(":")
        body = rec.json()
        reply = self._next(_last_user_text_gemini(body.get("contents", [])))
        if reply.error_status is not None:
            return JSONResponse(
                {"error": {"code": reply.error_status, "message": reply.error_message, "status": "FAILED_PRECONDITION"}},
                status_code=reply.error_status,
            )
        parts: list[dict[str, Any]] = []
        if reply.text:
            parts.append({"text": reply.text})
        for tc in reply.tool_calls:
            part: dict[str, Any] = {"functionCall": {"name": tc.name, "args": tc.arguments}}
            if tc.thought_signature:
                part["thoughtSignature"] = tc.thought_signature
            parts.append(part)
        usage = {"promptTokenCount": len(rec.body) // 4, "candidatesTokenCount": 5, "totalTokenCount": len(rec.body) // 4 + 5}
        if action == "generateContent":
            return JSONResponse(
                {
                    "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": usage,
                    "modelVersion": model,
                }
            )
        if action == "streamGenerateContent":
            return StreamingResponse(self._gemini_stream(model, reply, parts, usage), media_type="text/event-stream")
        return PlainTextResponse("unknown action", status_code=404)

    async def _gemini_stream(self, model: str, reply: Reply, parts: list[dict[str, Any]], usage: dict[str, Any]) -> AsyncIterator[bytes]:
        text_pieces = _pieces(reply.text or "")
        calls = [p for p in parts if "functionCall" in p]
        frames: list[dict[str, Any]] = [{"text": piece} for piece in text_pieces] + calls
        for n, part in enumerate(frames):
            if reply.die_after_chunks is not None and n >= reply.die_after_chunks:
                raise ConnectionAbortedError("fake upstream dies mid-stream")
            last = n == len(frames) - 1
            payload: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}], "modelVersion": model}
            if last:
                payload["candidates"][0]["finishReason"] = "STOP"
                payload["usageMetadata"] = usage
            yield b"data: " + json.dumps(payload).encode() + b"\r\n\r\n"

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1beta/models/{target:path}", self.gemini, methods=["POST"]),
                Route("/v1/{rest:path}", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _last_user_text_openai(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _last_user_text_gemini(contents: list[dict[str, Any]]) -> str:
    for c in reversed(contents):
        if c.get("role") == "user":
            return " ".join(str(p.get("text", "")) for p in c.get("parts", []) if "text" in p)
    return ""
