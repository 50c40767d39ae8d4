"""Anthropic's Messages API face of the fake upstream, as strict as the real one (`anthropic_rules`).

`POST /v1/messages`: JSON, or the event stream exactly as Anthropic sends it (`message_start`,
`content_block_start`, `ping`, `content_block_delta` (text_delta, input_json_delta,
thinking_delta, signature_delta), `content_block_stop`, `message_delta`, `message_stop`); with
`thinking` enabled the reply starts with a thinking block the fake signs (and checks when it comes
back). `POST /v1/messages/count_tokens` answers `{"input_tokens"}`. Usage reports
`cache_creation_input_tokens` / `cache_read_input_tokens` by the breakpoint rule
(`CacheLedger`). Replies come from the shared `Script` (text, tool calls, error statuses; a
`Reply.die_after_chunks` drops the connection mid-stream, `end_after_chunks` ends it cleanly
before `message_stop`, `stream_error` sends an `error` event). Provider headers as Anthropic sends
them (`request-id`, `anthropic-ratelimit-*`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from memory.prompt.evidence import EVIDENCE_HEADER
from memory.recall.tokens import get_counter

from .anthropic_rules import Billed, CacheLedger, Refusal, check_request, prompt_tokens, sign
from .script import Reply, Script

__all__ = ["AnthropicApi", "ANTHROPIC_HEADERS", "anthropic_requests"]

ANTHROPIC_HEADERS = MappingProxyType({"anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3999"})
_STATUS_TYPES = MappingProxyType({400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                                  404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"})


def anthropic_requests(script: Script) -> list[Any]:
    """The recorded model calls to `POST /v1/messages`."""
    return [r for r in script.requests if r.method == "POST" and r.path == "/v1/messages"]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            # The client's own words: memory's evidence block, which `/v1/messages` appends after
            # the client's last message, is not what the client asked.
            texts = [str(b.get("text", "")) for b in content or [] if isinstance(b, dict) and b.get("type") == "text"
                     and not str(b.get("text", "")).startswith(EVIDENCE_HEADER)]
            if texts:
                return texts[-1]
    return ""


def _content(reply: Reply, thinking: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if thinking:
        thought = f"thinking about: {(reply.text or 'the tools')[:40]}"
        blocks.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


@dataclass
class AnthropicApi:
    script: Script
    ledger: CacheLedger = field(default_factory=CacheLedger)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.create, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"])]

    def reset(self) -> None:
        self.ledger.reset()

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_{next(self._ids):012d}fake"

    def _headers(self) -> dict[str, str]:
        return {"request-id": self._new_id("req"), **ANTHROPIC_HEADERS}

    def _refused(self, refusal: Refusal) -> JSONResponse:
        return JSONResponse(refusal.body(), status_code=refusal.status, headers=self._headers())

    async def count_tokens(self, request: Request) -> Response:
        rec = await self.script.record(request)
        try:
            body = rec.json()
        except ValueError:
            body = None
        refused = check_request({**body, "max_tokens": 1} if isinstance(body, dict) else body, rec.headers)
        if refused is not None:
            return self._refused(refused)
        return JSONResponse({"input_tokens": prompt_tokens(body)}, headers=self._headers())

    async def create(self, request: Request) -> Response:
        rec = await self.script.record(request)
        try:
            body = rec.json()
        except ValueError:
            body = None
        refused = check_request(body, rec.headers)
        if refused is not None:
            return self._refused(refused)
        reply = self.script.next_reply(_last_user_text(body["messages"]))
        if delay := reply.delay_seconds + self.script.latency_s:
            await asyncio.sleep(delay)
        if reply.error_status is not None:
            kind = _STATUS_TYPES.get(reply.error_status, "api_error")
            return self._refused(Refusal(reply.error_message, reply.error_status, kind))
        key = rec.headers.get("x-api-key") or rec.headers.get("authorization", "")
        billed = self.ledger.bill(key, body)
        thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
        content = _content(reply, thinking)
        counter = get_counter(str(body["model"]))
        output = max(1, sum(counter.count(json.dumps(b)) for b in content))
        message = {"id": self._new_id("msg"), "type": "message", "role": "assistant", "model": body["model"], "content": content,
                   "stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None, "usage": billed.usage(output)}
        rec.reported = message["usage"]
        if not body.get("stream"):
            return JSONResponse(message, headers=self._headers())
        return StreamingResponse(self._stream(message, billed, reply), media_type="text/event-stream", headers=self._headers())

    async def _stream(self, message: dict[str, Any], billed: Billed, reply: Reply) -> AsyncIterator[bytes]:
        start = {**message, "content": [], "stop_reason": None, "usage": billed.usage(1)}
        yield _event("message_start", {"type": "message_start", "message": start})
        yield _event("ping", {"type": "ping"})
        sent = 0
        for index, block in enumerate(message["content"]):
            kind = block["type"]
            empty = {"text": {"type": "text", "text": ""}, "thinking": {"type": "thinking", "thinking": ""},
                     "tool_use": {**block, "input": {}}}[kind]
            yield _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
            if kind == "text":
                deltas = [{"type": "text_delta", "text": p} for p in self.script.pieces(block["text"])]
            elif kind == "thinking":
                deltas = [{"type": "thinking_delta", "thinking": p} for p in self.script.pieces(block["thinking"])]
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
            else:
                text = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": text[i:i + 9]} for i in range(0, len(text), 9)]
            for delta in deltas:
                if reply.die_after_chunks is not None and sent >= reply.die_after_chunks:
                    await asyncio.sleep(0)
                    raise ConnectionAbortedError("fake upstream dies mid-stream")
                if reply.end_after_chunks is not None and sent >= reply.end_after_chunks:
                    return  # a clean end of the response, without message_stop
                if reply.stream_error is not None and sent >= 1:
                    yield _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": reply.stream_error}})
                    return
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                sent += 1
            yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                       "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        yield _event("message_stop", {"type": "message_stop"})
