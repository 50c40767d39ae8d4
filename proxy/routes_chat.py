"""`POST /v1/chat/completions`: memory in front of an OpenAI or Gemini chat call.

Validate (400/413, nothing stored) -> resolve/sync/compile (fail open) -> forward through litellm
with the caller's key -> stream or return the reply, storing it (observe) before `[DONE]` / before
the response, so the next request sees it. Memory is namespaced by the caller (`proxy.identity`):
the session header, the generated session id and the transcript-matching scope all live under the
caller's principal, and the client sees its own, unprefixed id in X-Memory-Session. An upstream error keeps its status in the OpenAI envelope;
an error after streaming began becomes a final `data: {"error": ...}` event and nothing partial is
stored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .context import Prepared, prepare, record_reply
from .errors import InvalidRequestError, UpstreamError, envelope
from .guard import caller_of
from .http import error_response, header_int, json_response, read_body
from .limits import check_limits
from .reply import ReplyAssembler, first_message
from .services import Services, services
from .sse import DONE, encode_data
from .wire import parse_chat_request

__all__ = ["chat_completions"]

log = logging.getLogger("memory_runtime.chat")
MAX_SESSION_HEADER = 256


def _session_header(request: Request) -> str | None:
    value = request.headers.get("x-memory-session")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_SESSION_HEADER or any(ord(c) < 32 for c in value):
        raise InvalidRequestError(
            f"header X-Memory-Session must be 1..{MAX_SESSION_HEADER} printable characters", param="X-Memory-Session"
        )
    return value


async def chat_completions(request: Request) -> Response:
    svc = services(request)
    caller = caller_of(request.state)
    body = await read_body(request, svc.config.server.max_body_bytes)
    chat, raw = parse_chat_request(body)
    session_header = _session_header(request)
    budget = header_int(request, "x-memory-budget") or svc.config.budget_tokens
    api_key = caller.upstream_key()
    messages: list[dict[str, Any]] = raw["messages"]
    await check_limits(messages, chat.model, svc.config.limits)
    session_id = caller.storage_id(session_header) if session_header is not None else None
    prepared = await prepare(
        svc.runtime, svc.locks, messages, chat.model, budget, session_id, caller.scope(chat.user or ""), new_id=caller.new_session_id
    )
    response = await (_stream if chat.stream else _complete)(svc, raw, prepared, api_key)
    response.headers["X-Memory-Session"] = caller.client_id(prepared.session_id)
    return response


async def _complete(svc: Services, raw: dict[str, Any], prepared: Prepared, api_key: str | None) -> Response:
    headers = prepared.headers()
    try:
        response = await svc.upstream.complete(raw, prepared.messages, api_key)
    except UpstreamError as exc:
        return error_response(exc, headers=headers)
    message = first_message(response)
    if message is not None and prepared.error is None:
        problem = await record_reply(svc.runtime, svc.locks, prepared.session_id, message)
        if problem:
            headers["X-Memory-Error"] = problem
    return json_response(response, headers=headers)


async def _stream(svc: Services, raw: dict[str, Any], prepared: Prepared, api_key: str | None) -> Response:
    headers = prepared.headers()
    try:
        chunks = await svc.upstream.stream(raw, prepared.messages, api_key)
    except UpstreamError as exc:
        return error_response(exc, headers=headers)

    async def events() -> AsyncIterator[bytes]:
        assembler = ReplyAssembler()
        try:
            async for chunk in chunks:
                assembler.feed(chunk)
                yield encode_data(chunk)
        except UpstreamError as exc:
            log.warning("upstream stream broke off (%s); the partial reply is not stored", exc.status)
            yield encode_data(envelope(exc))
            return
        finally:
            # Runs on client disconnect too (the generator is closed), releasing the upstream.
            await chunks.aclose()
        if prepared.error is None:
            await record_reply(svc.runtime, svc.locks, prepared.session_id, assembler.message())
        yield DONE

    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
