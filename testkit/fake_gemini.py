"""The Gemini face of the fake upstream: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`, with functionCall parts that carry a `thoughtSignature`.
Replies come from the same `Script` as the OpenAI face."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .script import Reply, Script, sse

__all__ = ["GeminiApi"]


@dataclass(frozen=True)
class GeminiApi:
    script: Script

    def routes(self) -> list[Route]:
        return [Route("/v1beta/models/{target:path}", self.generate, methods=["POST"])]

    async def generate(self, request: Request) -> Response:
        rec = await self.script.record(request)
        model, _, action = request.path_params["target"].partition(":")
        body = rec.json()
        problem = _check_function_turns(body.get("contents", []))
        if problem is not None:
            return JSONResponse({"error": {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}}, status_code=400)
        reply = self.script.next_reply(_last_user_text(body.get("contents", [])))
        if delay := reply.delay_seconds + self.script.latency_s:
            await asyncio.sleep(delay)
        if reply.error_status is not None:
            error = {"code": reply.error_status, "message": reply.error_message, "status": "FAILED_PRECONDITION"}
            return JSONResponse({"error": error}, status_code=reply.error_status)
        parts: list[dict[str, Any]] = []
        if reply.text:
            parts.append({"text": reply.text})
        for tc in reply.tool_calls:
            part: dict[str, Any] = {"functionCall": {"name": tc.name, "args": tc.arguments}}
            if tc.thought_signature:
                part["thoughtSignature"] = tc.thought_signature
            parts.append(part)
        # Implicit caching (Gemini 2.5): the same prefix rule, reported as cachedContentTokenCount.
        system = body.get("system_instruction") or body.get("systemInstruction")
        turns = ([{"role": "system", "content": system}] if system else []) + [
            {"role": c.get("role"), "content": c.get("parts")} for c in body.get("contents", []) if isinstance(c, dict)]
        key = request.headers.get("x-goog-api-key", "") or request.query_params.get("key", "")
        hit = self.script.cache.lookup(f"gemini|{key}|{model}", self.script.cache.render(turns, body.get("tools")))
        usage = {"promptTokenCount": hit.prompt_tokens, "candidatesTokenCount": 5, "totalTokenCount": hit.prompt_tokens + 5}
        if hit.cached_tokens:
            usage["cachedContentTokenCount"] = hit.cached_tokens
        if action == "generateContent":
            return JSONResponse(
                {
                    "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": usage,
                    "modelVersion": model,
                }
            )
        if action == "streamGenerateContent":
            return StreamingResponse(self._stream(model, reply, parts, usage), media_type="text/event-stream")
        return PlainTextResponse("unknown action", status_code=404)

    async def _stream(self, model: str, reply: Reply, parts: list[dict[str, Any]], usage: dict[str, Any]) -> AsyncIterator[bytes]:
        calls = [p for p in parts if "functionCall" in p]
        frames: list[dict[str, Any]] = [{"text": piece} for piece in self.script.pieces(reply.text or "")] + calls
        for n, part in enumerate(frames):
            if reply.die_after_chunks is not None and n >= reply.die_after_chunks:
                raise ConnectionAbortedError("fake upstream dies mid-stream")
            payload: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}], "modelVersion": model}
            if n == len(frames) - 1:
                payload["candidates"][0]["finishReason"] = "STOP"
                payload["usageMetadata"] = usage
            yield sse(payload, end=b"\r\n\r\n")


def _last_user_text(contents: list[dict[str, Any]]) -> str:
    for c in reversed(contents):
        if c.get("role") == "user":
            return " ".join(str(p.get("text", "")) for p in c.get("parts", []) if "text" in p)
    return ""


def _check_function_turns(contents: list[dict[str, Any]]) -> str | None:
    """Gemini refuses a function response that does not answer the function call turn right before
    it, and a function call turn not answered by as many function responses."""
    expected = 0
    for content in contents:
        parts = content.get("parts") or [] if isinstance(content, dict) else []
        # Gemini's JSON accepts both spellings of a field (protobuf JSON), and litellm sends either.
        calls = sum(1 for p in parts if isinstance(p, dict) and ("functionCall" in p or "function_call" in p))
        responses = sum(1 for p in parts if isinstance(p, dict) and ("functionResponse" in p or "function_response" in p))
        if responses != expected:
            return ("Please ensure that the number of function response parts is equal to the number of function call parts "
                    "of the function call turn.")
        expected = calls
    return None
