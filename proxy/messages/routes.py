"""`POST /v1/messages` (Anthropic's Messages API, Claude Code's and the `anthropic` SDKs'): memory in
front of it, as on chat; and `POST /v1/messages/count_tokens`, relayed.

Validate (400 in Anthropic's envelope, nothing stored) -> the conversation: `X-Memory-Session`,
else the transcript (matched within the caller's scope and `metadata.user_id`) -> map the blocks
to chat messages (`blocks`) and plan the prompt on the session's frame at Anthropic's cache prices
(`proxy.context`, `memory.prompt.pricing`; fail open) -> rebuild `system` and `messages` from the
original blocks, the question's evidence after the client's last message, put a breakpoint at the
frame's end and one on the stable system / tools when the client marked none (`cache`) -> post it with
the caller's key and the client's `anthropic-*` headers -> return the reply as the provider sent it, or relay its events one by one, committing the turn (live tail,
reply, usage) before the reply or `message_stop` goes out. A prompt that fits whole is forwarded
exactly as sent. An upstream error, an `error` event, or a stream that stops before
`message_stop` (which then ends with an `error` event) store nothing.

The caller is its `x-api-key` or `Authorization` (`proxy.access.identity`), and memory is
namespaced by it as on chat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from memory.prompt.policy import get_policy
from memory.prompt.pricing import ANTHROPIC_CACHE

from proxy.budget import request_budget
from proxy.access.guard import caller_of
from proxy.access.limits import check_limits
from proxy.context import Prepared, commit, prepare
from proxy.errors import ProxyError, UpstreamError
from proxy.http import header_int, json_response, layout_policy, read_body, session_header_of
from proxy.messages import wire
from proxy.messages.blocks import reply_message, rewrite, to_anthropic, to_messages
from proxy.messages.cache import mark_frame_end, mark_stable_top
from proxy.messages.reply import Assembler, cache_figures, memory_usage
from proxy.messages.upstream import Opened, forwarded_headers
from proxy.metrics import ChatMeter
from proxy.services import Services, services
from proxy.wire import parse_json

__all__ = ["create_message", "count_tokens"]

log = logging.getLogger("memory_runtime.messages")
OFF_LOOP_BYTES = 256 * 1024


def _error(exc: ProxyError, headers: dict[str, str] | None = None) -> Response:
    return json_response(wire.envelope(exc), status=exc.status, headers=headers)


async def create_message(request: Request) -> Response:
    try:
        return await _create(request)
    except ProxyError as exc:
        return _error(exc)


async def count_tokens(request: Request) -> Response:
    """Relayed to Anthropic as sent (the count of the client's own prompt, which is what it asks)."""
    try:
        svc = services(request)
        caller_of(request.state).upstream_key()
        raw = parse_json(await read_body(request, svc.config.server.max_body_bytes))
        headers = _auth_headers(request, svc)
        opened = await svc.anthropic.call("/v1/messages/count_tokens", request.url.query, raw, headers)
    except ProxyError as exc:
        return _error(exc, headers=getattr(exc, "headers", None) or None)
    return Response(opened.raw, media_type="application/json", headers=opened.headers)


def _auth_headers(request: Request, svc: Services) -> list[tuple[bytes, bytes]]:
    headers = forwarded_headers(request.headers.raw, svc.anthropic.env_key)
    if not any(k.lower() in (b"x-api-key", b"authorization") for k, _ in headers):
        raise wire.NoAnthropicKeyError()
    return headers


_TAIL_REASONS = frozenset({"live_tail", "compaction_note", "excerpts"})


def _frame_end(prepared: Prepared) -> int:
    """How many of the laid-out chat messages form the stable frame (system, base, window)."""
    assert prepared.plan is not None
    layout = prepared.plan.layout
    # The compacted tail's note and its excerpts (`memory.turn.turns`) are tail messages too: left
    # out, the frame ran two messages into the tail and its breakpoint landed on the note.
    tail = sum(1 for item in layout.manifest.get("included", []) if item.get("reason") in _TAIL_REASONS)
    return len(prepared.messages) - tail - (1 if layout.evidence is not None else 0)


def _evidence_last(prepared: Prepared, frame_end: int) -> list[dict[str, Any]]:
    """The laid-out chat messages with the question's evidence moved from just after the frame to
    the very end, when the live tail ends with the user's turn (not an assistant prefill).
    Anthropic writes a cached prefix at 1.25x: between the frame and the live tail, the evidence
    would make the provider cache the turn's messages behind it and write them all again at the
    next turn, when they join the frame; after the tail (and after the client's breakpoint on its
    last message) the turn's messages are written once and the evidence goes uncached."""
    laid = prepared.messages
    assert prepared.plan is not None
    if prepared.plan.layout.evidence is None or frame_end >= len(laid) - 1 or laid[-1].get("role") == "assistant":
        return laid
    return laid[:frame_end] + laid[frame_end + 1:] + [laid[frame_end]]


def _compiled_body(raw: dict[str, Any], prepared: Prepared, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The body to forward: as sent when memory changed nothing, else rebuilt from the layout."""
    if prepared.plan is None or prepared.messages is messages:
        return raw
    frame_end = _frame_end(prepared)
    rebuilt = to_anthropic(_evidence_last(prepared, frame_end), {id(m) for m in messages}, frame_end)
    body = {k: v for k, v in raw.items() if k not in ("system", "messages")}
    if rebuilt.system is not None:
        body["system"] = rebuilt.system
    body["messages"] = rebuilt.messages
    mark_frame_end(body, rebuilt.frame_last)
    mark_stable_top(body)
    return body


async def _create(request: Request) -> Response:
    svc = services(request)
    caller = caller_of(request.state)
    body = await read_body(request, svc.config.server.max_body_bytes)
    parse = wire.parse_messages_request
    parsed, raw = await asyncio.to_thread(parse, body) if len(body) > OFF_LOOP_BYTES else parse(body)
    meter = svc.metrics.chat(parsed.model, request.state)
    session_header = session_header_of(request)
    budget = request_budget(header_int(request, "x-memory-budget"), svc.config, raw)
    caller.upstream_key()  # a web page must bring its own key
    headers = _auth_headers(request, svc)
    messages = to_messages(raw.get("system"), raw["messages"])
    await check_limits(messages, parsed.model, svc.config.limits)
    user = parsed.metadata.user_id if parsed.metadata is not None and parsed.metadata.user_id else ""
    session_id = caller.storage_id(session_header) if session_header is not None else None
    policy = replace(get_policy(layout_policy(request, svc.config.layout_policy)), prices=ANTHROPIC_CACHE)  # priced: `memory.prompt.pricing`
    prepared = await prepare(svc.runtime, messages, parsed.model, budget, session_id, caller.scope(user), caller.new_session_id, policy,
                             rewrite=rewrite, tools=raw.get("tools"))
    meter.prepared(prepared.mode, prepared.original_tokens, prepared.compiled_tokens, prepared.error is not None)
    forward = _compiled_body(raw, prepared, messages)
    memory_headers = prepared.headers()
    memory_headers["X-Memory-Session"] = caller.client_id(prepared.session_id)
    try:
        opened = await svc.anthropic.call("/v1/messages", request.url.query, forward, headers)
    except UpstreamError as exc:
        meter.upstream_done(None)
        return _error(exc, headers={**exc.headers, **memory_headers})
    if opened.events is None:
        return await _complete(svc, opened, prepared, {**opened.headers, **memory_headers}, meter)
    return _stream(svc, opened, prepared, {**opened.headers, **memory_headers}, meter)


def _usage_headers(headers: dict[str, str], usage: dict[str, Any] | None) -> None:
    written, read = cache_figures(usage)
    headers["X-Memory-Cached-Tokens"] = str(read)
    headers["X-Memory-Cache-Write-Tokens"] = str(written)


async def _complete(svc: Services, opened: Opened, prepared: Prepared, headers: dict[str, str], meter: ChatMeter) -> Response:
    response = opened.response or {}
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
    meter.upstream_done(memory_usage(usage))
    meter.cache_written(cache_figures(usage)[0])
    _usage_headers(headers, usage)
    if response.get("type") == "message":
        blocks = response.get("content")
        content: list[dict[str, Any]] = [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
        problem = await commit(svc.runtime, prepared, reply_message(content), memory_usage(usage))
        meter.committed(problem)
        if problem:
            headers["X-Memory-Error"] = problem
    meter.finished()
    return Response(opened.raw, media_type="application/json", headers=headers)


def _event(name: str, data: str) -> bytes:
    return b"event: " + name.encode("utf-8") + b"\ndata: " + data.encode("utf-8") + b"\n\n"


def _stream(svc: Services, opened: Opened, prepared: Prepared, headers: dict[str, str], meter: ChatMeter) -> Response:
    events = opened.events
    assert events is not None

    async def body() -> AsyncIterator[bytes]:
        assembler = Assembler()
        first = True
        try:
            async for event in events:
                if first:
                    meter.first_chunk()
                    first = False
                assembler.feed(event.name, event.payload)
                if event.name == "message_stop":
                    meter.upstream_done(memory_usage(assembler.usage))
                    meter.cache_written(cache_figures(assembler.usage)[0])
                    # Stored before the client sees the end, so its next request finds the turn.
                    message = reply_message(assembler.content)
                    meter.committed(await commit(svc.runtime, prepared, message, memory_usage(assembler.usage)))
                    meter.finished()
                elif event.name == "error":
                    meter.upstream_done(None)
                    meter.stream_failed(502)
                yield _event(event.name, event.data)
        except UpstreamError as exc:
            log.warning("upstream messages stream broke off (%s); the partial reply is not stored", exc.status)
            meter.upstream_done(None)
            meter.stream_failed(exc.status)
            yield _event("error", json.dumps(wire.envelope(exc), ensure_ascii=False, separators=(",", ":")))
        finally:
            # Runs on client disconnect too (the generator is closed), releasing the upstream.
            await events.aclose()

    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
