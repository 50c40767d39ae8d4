"""`/memory/*`: look into, dry-run and erase what the proxy remembers.

    GET    /memory/sessions?q=&limit=&after=  a page of sessions in id order (q: part of the id)
    GET    /memory/sessions/{id}             counts and state (decisions, constraints, ...)
    GET    /memory/sessions/{id}/manifest    the last compile: included, dropped, why, tokens
    POST   /memory/sessions/{id}/compile     dry run: {user_message, budget_tokens?, model?}
    GET    /memory/sessions/{id}/export      JSON of everything stored
    DELETE /memory/sessions/{id}             erase rows, index and vectors for good

Memory errors here are the answer, not something to fail open around: invalid input is a 400, an
unknown session a 404, anything else a 500, all in the OpenAI error envelope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memory import Session, inspection
from memory import errors as memory_errors

from .errors import InvalidRequestError, NotFoundError, ProxyError
from .http import json_response, read_body
from .services import services
from .wire import parse_compile_request

__all__ = ["routes"]


def _translate(exc: memory_errors.MemoryRuntimeError) -> ProxyError:
    if isinstance(exc, memory_errors.SessionNotFoundError):
        return NotFoundError(str(exc))
    if isinstance(exc, memory_errors.InvalidInputError):
        return InvalidRequestError(str(exc))
    return ProxyError(f"memory error: {exc}")


def _endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except memory_errors.MemoryRuntimeError as exc:
            raise _translate(exc) from None

    return endpoint


async def _existing(request: Request) -> Session:
    session = services(request).runtime.session(request.path_params["session_id"])
    if not await session.exists():
        raise NotFoundError(f"no memory session {session.id!r}")
    return session


PAGE_DEFAULT = 100


def _page_size(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_DEFAULT
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 6) or not 1 <= int(raw) <= inspection.MAX_PAGE:
        raise InvalidRequestError(f"limit must be an integer from 1 to {inspection.MAX_PAGE}", param="limit")
    return int(raw)


async def list_sessions(request: Request) -> Response:
    limit = _page_size(request)
    contains = request.query_params.get("q", "").strip()
    page = await inspection.find_sessions(services(request).runtime, "", contains, request.query_params.get("after"), limit + 1)
    data: list[dict[str, Any]] = [dataclasses.asdict(s) for s in page[:limit]]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(page) > limit})


async def show_session(request: Request) -> Response:
    return json_response(await (await _existing(request)).info())


async def manifest(request: Request) -> Response:
    session = await _existing(request)
    found = await session.last_manifest()
    if found is None:
        raise NotFoundError(f"session {session.id!r} has no compile manifest yet")
    return json_response(found)


async def compile_dry_run(request: Request) -> Response:
    svc = services(request)
    session = await _existing(request)
    req = parse_compile_request(await read_body(request, svc.config.server.max_body_bytes))
    result = await session.compile(
        user_message=req.user_message, budget_tokens=req.budget_tokens or svc.config.budget_tokens, model=req.model
    )
    return json_response(
        {
            "session_id": session.id,
            "messages": result.messages,
            "manifest": result.manifest,
            "tokens": result.tokens,
            "budget_tokens": result.budget_tokens,
            "over_budget": result.over_budget,
            "items_included": result.items_included,
        }
    )


async def export(request: Request) -> Response:
    return json_response(await (await _existing(request)).export())


async def delete(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    if not await services(request).runtime.delete_session(session_id):
        raise NotFoundError(f"no memory session {session_id!r}")
    return json_response({"id": session_id, "object": "memory.session", "deleted": True})


def routes() -> list[Route]:
    base = "/memory/sessions"
    return [
        Route(base, _endpoint(list_sessions), methods=["GET"]),
        Route(base + "/{session_id}", _endpoint(show_session), methods=["GET"]),
        Route(base + "/{session_id}", _endpoint(delete), methods=["DELETE"]),
        Route(base + "/{session_id}/manifest", _endpoint(manifest), methods=["GET"]),
        Route(base + "/{session_id}/compile", _endpoint(compile_dry_run), methods=["POST"]),
        Route(base + "/{session_id}/export", _endpoint(export), methods=["GET"]),
    ]
