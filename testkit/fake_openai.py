"""The OpenAI face of the fake upstream.

`POST /v1/chat/completions` (JSON, or SSE with usage when `stream_options.include_usage`, tool calls
split across chunks), `GET /v1/models`, `POST /v1/embeddings`, and a catch-all that echoes any other
`/v1/*` route (for the proxy's relay). Replies come from the shared `Script`; a model name that
names a fault (see `faults`) gets that fault instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .faults import Faults
from .fake_responses import PROVIDER_HEADERS
from .openai_rules import check_chat
from .script import HOLD_LIMIT_S, Reply, Script, sse

__all__ = ["OpenAIApi", "last_user_text"]


@dataclass(frozen=True)
class OpenAIApi:
    script: Script
    faults: Faults

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
        ]

    def catch_all(self) -> Route:
        """Goes after every other `/v1/` route (it matches them all)."""
        return Route("/v1/{rest:path}", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])

    async def chat(self, request: Request) -> Response:
        rec = await self.script.record(request)
        try:
            body = rec.json()
        except ValueError:
            body = None
        rejected = check_chat(body)
        if rejected is not None:
            return JSONResponse(rejected.body(), status_code=rejected.status)
        model = str(body.get("model", "fake"))
        faulty = await self.faults.answer(model, bool(body.get("stream")))
        if faulty is not None:
            return faulty
        reply = self.script.next_reply(last_user_text(body.get("messages", [])))
        if delay := reply.delay_seconds + self.script.latency_s:
            await asyncio.sleep(delay)
        headers = {"x-request-id": f"req_chat{len(self.script.requests):06d}", **PROVIDER_HEADERS}
        if reply.error_status is not None:
            error = {"message": reply.error_message, "type": "fake_error", "param": None, "code": "fake_code"}
            return JSONResponse({"error": error}, status_code=reply.error_status, headers=headers)
        namespace = f"{rec.headers.get('authorization', '')}|{body.get('prompt_cache_key') or ''}"
        hit = self.script.cache.lookup(namespace, self.script.cache.render(body["messages"], body.get("tools")))
        completion_tokens = len(reply.text or "") // 4 + 1
        usage = {"prompt_tokens": hit.prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": hit.prompt_tokens + completion_tokens,
                 "prompt_tokens_details": {"cached_tokens": hit.cached_tokens, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        rec.reported = usage
        tool_calls = [
            {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json()}}
            for tc in reply.tool_calls
        ]
        finish = "tool_calls" if tool_calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                    "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fake",
                },
                headers=headers,
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(model, reply, tool_calls, finish, usage if include_usage else None), media_type="text/event-stream",
            headers=headers,
        )

    async def _stream(
        self, model: str, reply: Reply, tool_calls: list[dict[str, Any]], finish: str, usage: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]})

        yield chunk({"role": "assistant", "content": ""})
        for n, piece in enumerate(self.script.pieces(reply.text or "")):
            if reply.die_after_chunks is not None and n >= reply.die_after_chunks:
                await asyncio.sleep(0)
                raise ConnectionAbortedError("fake upstream dies mid-stream")
            if reply.end_after_chunks is not None and n >= reply.end_after_chunks:
                return  # a clean end of the response: no finish reason, no [DONE]
            if n == 1 and reply.stream_error is not None:
                # What OpenAI sends when a stream fails after it began: an error object, no [DONE].
                yield sse({"error": {"message": reply.stream_error, "type": "server_error", "param": None, "code": None}})
                return
            if n == 1 and reply.hold is not None:
                await asyncio.to_thread(reply.hold.wait, HOLD_LIMIT_S)
            yield chunk({"content": piece})
        for i, tc in enumerate(tool_calls):
            args = tc["function"]["arguments"]
            half = len(args) // 2
            first = {"index": i, "id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": args[:half]}}
            yield chunk({"tool_calls": [first]})
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
        yield chunk({}, finish)
        if usage is not None:
            yield sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        await self.script.record(request)
        return JSONResponse({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "fake"}]})

    async def embeddings(self, request: Request) -> Response:
        rec = await self.script.record(request)
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
        rec = await self.script.record(request)
        if rec.query and "stream=1" in rec.query:
            async def gen() -> AsyncIterator[bytes]:
                for i in range(3):
                    yield f"part{i};".encode()
            return StreamingResponse(gen(), media_type="text/plain", status_code=200)
        headers = {"x-fake-header": "yes", "access-control-allow-origin": "*", "access-control-allow-headers": "*"}
        if rec.path.endswith("/hop-reply"):
            # A header the upstream declares hop-by-hop (RFC 9110 7.6.1): meant for the proxy alone.
            headers.update({"connection": "x-upstream-hop", "x-upstream-hop": "for-the-proxy-only"})
        return JSONResponse(
            {"method": rec.method, "path": rec.path, "query": rec.query, "authorization": rec.headers.get("authorization"), "body": rec.body.decode("utf-8", "replace")},
            status_code=201 if rec.method == "POST" else 200,
            # Like OpenAI's API, a permissive CORS answer: the proxy must not pass it on.
            headers=headers,
        )


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""
