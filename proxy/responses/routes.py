"""`POST /v1/responses`: memory in front of the Responses API (OpenAI natively, Gemini through
litellm's bridge).

Validate (400, nothing stored) -> find the conversation: `X-Memory-Session`, else the session a
known `previous_response_id` belongs to, else the transcript (as on chat) -> resolve
`item_reference` inputs from stored items -> map items to chat messages (`responses_items`) and
plan the prompt on the session's frame (`proxy.context`, fail open) -> forward with `input`
rebuilt from the original items -> return or stream the reply, committing the turn (live tail,
the reply's output items, usage, the response id) before the reply or `response.completed` goes
out, so the next request can name it. A known `previous_response_id` is served from memory: the
prompt holds the conversation up to that response and the id is not sent upstream, so chains work
with `store: false`, with Gemini and past the provider's retention. An unknown one is forwarded
unchanged, with `X-Memory-Error`. `response.failed`, `response.incomplete`, an `error` event or a
stream that stops early store nothing.

Memory is namespaced by the caller (`proxy.access.identity`), as on chat: session ids, the matching
scope and the response ids a caller can continue from all live under its principal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from memory import Runtime

from proxy.budget import request_budget
from proxy.context import Prepared, commit, prepare
from proxy.errors import UpstreamError
from proxy.access.guard import caller_of
from proxy.http import error_response, header_int, json_response, layout_policy, read_body, session_header_of
from proxy.access.limits import check_limits
from proxy.metrics import ChatMeter
from proxy.responses.items import item_ids, reply_message, rewrite, to_input, to_messages
from proxy.responses.upstream import TERMINAL_EVENTS, Opened
from proxy.services import Services, services
from proxy.sse import encode_event
from proxy.wire import parse_responses_request

__all__ = ["create_response"]

log = logging.getLogger("memory_runtime.responses")
OFF_LOOP_BYTES = 256 * 1024


def _reason(exc: BaseException) -> str:
    # A header value: ASCII, and no trailing space where the cut falls (h11 refuses one, a 500).
    text = " ".join(str(exc).encode("ascii", "replace").decode("ascii").split())[:160].rstrip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _continued(runtime: Runtime, response_id: str, scope: str, session_header: str | None) -> tuple[str, int] | None:
    """The session and transcript position a known `previous_response_id` ends at, within the
    caller's scope (another caller's ids are unknown here); it must be the named session, if any."""
    try:
        found = await runtime.find_response(response_id, scope)
    except Exception as exc:  # memory failures fail open: the id is then forwarded as unknown
        log.warning("memory failed to look up a response id: %s", _reason(exc))
        return None
    if found is None or (session_header is not None and found[0] != session_header):
        return None
    return found


async def _resolved(runtime: Runtime, session_id: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`item_reference` inputs replaced by the items memory stored under those ids (those it has)."""
    wanted = [str(i.get("id")) for i in items if i.get("type") == "item_reference" and isinstance(i.get("id"), str)]
    if not wanted or session_id is None:
        return items
    try:
        found = await runtime.session(session_id).find_items(wanted)
    except Exception as exc:
        log.warning("memory failed to resolve item references: %s", _reason(exc))
        return items
    return [found.get(str(i.get("id")), i) if i.get("type") == "item_reference" else i for i in items]


async def create_response(request: Request) -> Response:
    svc = services(request)
    caller = caller_of(request.state)
    body = await read_body(request, svc.config.server.max_body_bytes)
    # Decoding and validating megabytes of JSON takes long enough to stall every other request.
    parsed, raw = (await asyncio.to_thread(parse_responses_request, body) if len(body) > OFF_LOOP_BYTES
                   else parse_responses_request(body))
    meter = svc.metrics.chat(parsed.model, request.state)
    session_header = session_header_of(request)
    budget = request_budget(header_int(request, "x-memory-budget"), svc.config, raw)
    api_key = caller.upstream_key()
    svc.upstream.require_key(parsed.model, api_key)
    scope = caller.scope(parsed.user or "")
    named = caller.storage_id(session_header) if session_header is not None else None
    if parsed.input is None:
        # Nothing to remember (a request that only names a stored prompt, say): forward as sent.
        return await _answer(svc, raw, None, api_key, {"X-Memory-Session": caller.client_id(named or caller.new_session_id()),
                                                      "X-Memory-Error": "request has no input; forwarded unmodified"}, meter)
    items = [{"role": "user", "content": parsed.input}] if isinstance(parsed.input, str) else list(parsed.input)
    session_id, resume_at = named, None
    if parsed.previous_response_id is not None:
        found = await _continued(svc.runtime, parsed.previous_response_id, scope, named)
        if found is None:
            note = f"previous_response_id {parsed.previous_response_id[:80]} is not known to memory; forwarded unchanged"
            return await _answer(svc, raw, None, api_key, {"X-Memory-Session": caller.client_id(named or caller.new_session_id()),
                                                          "X-Memory-Error": note}, meter)
        session_id, resume_at = found
    items = await _resolved(svc.runtime, session_id, items)
    messages = to_messages(items, parsed.instructions)
    await check_limits(messages, parsed.model, svc.config.limits)
    prepared = await prepare(svc.runtime, messages, parsed.model, budget, session_id, scope, caller.new_session_id,
                             layout_policy(request, svc.config.layout_policy), resume_at, rewrite, raw.get("tools"))
    meter.prepared(prepared.mode, prepared.original_tokens, prepared.compiled_tokens, prepared.error is not None)
    forward = raw
    if prepared.plan is not None:
        new_input = to_input(prepared.messages)
        forward = {**raw, "input": parsed.input if isinstance(parsed.input, str) and new_input == items else new_input}
        forward.pop("previous_response_id", None)
    forward = svc.upstream.with_cache_key(forward, prepared.session_id)
    headers = prepared.headers()
    headers["X-Memory-Session"] = caller.client_id(prepared.session_id)
    return await _answer(svc, forward, (prepared, items), api_key, headers, meter)


async def _answer(svc: Services, body: dict[str, Any], turn: tuple[Prepared, list[dict[str, Any]]] | None, api_key: str | None,
                  headers: dict[str, str], meter: ChatMeter) -> Response:
    meter.calling()
    try:
        opened = await svc.responses.call(body, api_key)
    except UpstreamError as exc:
        meter.upstream_done(None)
        return error_response(exc, headers={**exc.headers, **headers})
    headers = {**opened.headers, **headers}
    if opened.events is None:
        return await _complete(svc, opened, turn, headers, meter)
    return _stream(svc, opened, turn, headers, meter)


async def _record(svc: Services, turn: tuple[Prepared, list[dict[str, Any]]] | None, response: dict[str, Any]) -> str | None:
    """Commit a completed response's turn; returns a memory problem instead of raising."""
    if turn is None:
        return None
    prepared, items = turn
    output = [o for o in response.get("output") or [] if isinstance(o, dict)]
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
    response_id = response.get("id") if isinstance(response.get("id"), str) else None
    # Items with ids of this turn (the live tail and the reply): earlier ones were kept by earlier turns.
    users = [n for n, item in enumerate(items) if item.get("role") == "user"]
    tail = items[users[-1]:] if users else items
    return await commit(svc.runtime, prepared, reply_message(output), usage, response_id, item_ids(tail + output))


async def _complete(svc: Services, opened: Opened, turn: tuple[Prepared, list[dict[str, Any]]] | None,
                    headers: dict[str, str], meter: ChatMeter) -> Response:
    response = opened.response or {}
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
    cached = meter.upstream_done(usage).cached_tokens
    if cached is not None and turn is not None:
        headers["X-Memory-Cached-Tokens"] = str(cached)
    if response.get("status", "completed") == "completed":
        problem = await _record(svc, turn, response)
        meter.committed(problem)
        if problem:
            headers["X-Memory-Error"] = problem
    meter.finished()
    return json_response(response, headers=headers)


def _stream(svc: Services, opened: Opened, turn: tuple[Prepared, list[dict[str, Any]]] | None, headers: dict[str, str],
            meter: ChatMeter) -> Response:
    events = opened.events
    assert events is not None

    async def body() -> AsyncIterator[bytes]:
        sequence = -1
        try:
            async for event in events:
                kind = str(event.get("type"))
                if sequence < 0:
                    meter.first_chunk()
                sequence = event.get("sequence_number", sequence + 1) if isinstance(event.get("sequence_number"), int) else sequence + 1
                if kind in TERMINAL_EVENTS:
                    done = response if isinstance(response := event.get("response"), dict) else {}
                    meter.upstream_done(done.get("usage") if isinstance(done.get("usage"), dict) else None)
                if kind == "response.completed" and isinstance(event.get("response"), dict):
                    # Stored before the client learns the response id, so its next request finds it.
                    meter.committed(await _record(svc, turn, event["response"]))
                if kind in TERMINAL_EVENTS:
                    meter.finished()
                yield encode_event(kind, event)
        except UpstreamError as exc:
            log.warning("upstream responses stream broke off (%s); the partial reply is not stored", exc.status)
            meter.upstream_done(None)
            meter.stream_failed(exc.status)
            yield encode_event("error", {"type": "error", "code": exc.code, "message": exc.message, "param": exc.param,
                                         "sequence_number": sequence + 1})
        finally:
            # Runs on client disconnect too (the generator is closed), releasing the upstream.
            await events.aclose()

    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
