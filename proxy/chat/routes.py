"""`POST /v1/chat/completions`: memory in front of an OpenAI or Gemini chat call.

Validate (400, nothing stored) -> plan the prompt (fail open) -> forward with the caller's key
(`proxy.chat.upstream`) -> stream or return the reply, committing the turn (live tail, reply, usage) before
`[DONE]` / before the response, so the next request sees it. An upstream error keeps its status in
the OpenAI envelope and stores nothing; an error after streaming began, or a stream that ends
without the provider's finish reason, becomes a final `data: {"error": ...}` event and nothing of
the turn is stored. A request over the configured limits is a 413 before any of that.

Memory is namespaced by the caller (`proxy.access.identity`): the session header, the generated session
id and the transcript-matching scope all live under the caller's principal, and the client sees its
own, unprefixed id in X-Memory-Session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.budget import request_budget
from proxy.chat import wire as chat_wire
from proxy.context import Prepared, commit, prepare
from proxy.errors import UpstreamError, envelope
from proxy.access.guard import caller_of
from proxy.http import error_response, header_int, json_response, layout_policy, read_body, session_header_of
from proxy.access.limits import check_limits
from proxy.metrics import ChatMeter
from proxy.chat.reply import ReplyAssembler, first_message, is_usage_chunk
from proxy.services import Services, services
from proxy.sse import DONE, encode_data
from proxy.wire import parse_chat_request

__all__ = ["chat_completions"]

log = logging.getLogger("memory_runtime.chat")
OFF_LOOP_BYTES = 256 * 1024


async def chat_completions(request: Request) -> Response:
    svc = services(request)
    caller = caller_of(request.state)
    body = await read_body(request, svc.config.server.max_body_bytes)
    # Decoding and validating megabytes of JSON takes long enough to stall every other request.
    chat, raw = await asyncio.to_thread(parse_chat_request, body) if len(body) > OFF_LOOP_BYTES else parse_chat_request(body)
    meter = svc.metrics.chat(chat.model, request.state)
    session_header = session_header_of(request)
    budget = request_budget(header_int(request, "x-memory-budget"), svc.config, raw)
    api_key = caller.upstream_key()
    svc.upstream.require_key(chat.model, api_key)
    messages: list[dict[str, Any]] = raw["messages"]
    await check_limits(messages, chat.model, svc.config.limits)
    session_id = caller.storage_id(session_header) if session_header is not None else None
    prepared = await prepare(svc.runtime, messages, chat.model, budget, session_id, caller.scope(chat.user or ""), caller.new_session_id,
                             layout_policy(request, svc.config.layout_policy), tools=raw.get("tools") or raw.get("functions"))
    meter.prepared(prepared.mode, prepared.original_tokens, prepared.compiled_tokens, prepared.error is not None)
    forward = svc.upstream.with_cache_key(raw, prepared.session_id)
    response = await (_stream if chat.stream else _complete)(svc, forward, prepared, api_key, meter)
    response.headers["X-Memory-Session"] = caller.client_id(prepared.session_id)
    return response


async def _complete(svc: Services, raw: dict[str, Any], prepared: Prepared, api_key: str | None, meter: ChatMeter) -> Response:
    headers = prepared.headers()
    try:
        response, passed = await svc.upstream.complete(raw, prepared.messages, api_key)
    except UpstreamError as exc:
        meter.upstream_done(None)
        return error_response(exc, headers={**exc.headers, **headers})
    headers = {**passed, **headers}
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
    cached = meter.upstream_done(usage).cached_tokens
    if cached is not None:
        headers["X-Memory-Cached-Tokens"] = str(cached)
    problem = await commit(svc.runtime, prepared, first_message(response), usage)
    meter.committed(problem)
    if problem:
        headers["X-Memory-Error"] = problem
    meter.finished()
    return json_response(chat_wire.completion(response), headers=headers)


async def _stream(svc: Services, raw: dict[str, Any], prepared: Prepared, api_key: str | None, meter: ChatMeter) -> Response:
    headers = prepared.headers()
    client_wants_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
    try:
        chunks, passed = await svc.upstream.stream(raw, prepared.messages, api_key)
    except UpstreamError as exc:
        meter.upstream_done(None)
        return error_response(exc, headers={**exc.headers, **headers})
    headers = {**passed, **headers}
    meter.first_chunk()

    async def events() -> AsyncIterator[bytes]:
        assembler = ReplyAssembler()
        try:
            async for chunk in chunks:
                assembler.feed(chunk)
                usage_only = is_usage_chunk(chunk)
                if usage_only and not client_wants_usage:
                    continue  # asked upstream for the cost figures; the client did not ask for them
                yield encode_data(chat_wire.chunk(chunk, usage_only))
        except UpstreamError as exc:
            log.warning("upstream stream broke off (%s); the partial reply is not stored", exc.status)
            meter.upstream_done(assembler.usage)
            meter.stream_failed(exc.status)
            yield encode_data(envelope(exc))
            return
        finally:
            # Runs on client disconnect too (the generator is closed), releasing the upstream.
            await chunks.aclose()
        meter.upstream_done(assembler.usage)
        meter.committed(await commit(svc.runtime, prepared, assembler.message(), assembler.usage))
        meter.finished()
        yield DONE

    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
