"""`/memory/*`: look into, dry-run and erase what the proxy remembers, as the calling identity.

    GET    /memory/whoami                    the caller's principal (and whether it is the operator)
    GET    /memory/sessions?q=&limit=&after= a page of the caller's sessions, in id order (q: part of the id)
    GET    /memory/sessions/{id}             counts and state (decisions, constraints, ...)
    GET    /memory/sessions/{id}/manifest    the last compile: included, dropped, why, tokens
    POST   /memory/sessions/{id}/compile     dry run: {user_message, budget_tokens?, model?}
    GET    /memory/sessions/{id}/export      JSON of everything stored
    DELETE /memory/sessions/{id}             erase rows, index and vectors for good

A caller names and sees only its own sessions, by the ids it chose: `{id}` is looked up under the
caller's principal, so another caller's session is simply not there (404), whatever its id. The
operator (the `server.access_token`) sees every session by its storage id `<owner>/<id>`, and the
list tells it each session's `owner`.

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

from proxy.errors import InvalidRequestError, NotFoundError, ProxyError
from proxy.access.guard import caller_of
from proxy.http import json_response, read_body
from proxy.access.identity import Caller, owner_of
from proxy.services import services
from proxy.wire import parse_compile_request

__all__ = ["routes", "as_endpoint", "existing_session", "shown", "PAGE_DEFAULT", "PAGE_MAX"]

PAGE_DEFAULT = 100
PAGE_MAX = 1000


def _translate(exc: memory_errors.MemoryRuntimeError) -> ProxyError:
    if isinstance(exc, memory_errors.SessionNotFoundError):
        return NotFoundError(str(exc))
    if isinstance(exc, memory_errors.InvalidInputError):
        return InvalidRequestError(str(exc))
    return ProxyError(f"memory error: {exc}")


def as_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except memory_errors.MemoryRuntimeError as exc:
            raise _translate(exc) from None

    return endpoint


def _caller(request: Request) -> Caller:
    return caller_of(request.state)


def shown(caller: Caller, value: Any) -> Any:
    """Rewrite the storage ids inside `value` (every "session_id" / "id" key naming one) to the ids
    this caller knows."""
    prefix = caller.owned_prefix()
    if not prefix:
        return value
    if isinstance(value, list):
        return [shown(caller, v) for v in value]
    if isinstance(value, dict):
        return {
            k: (caller.shown_id(v) if k in ("session_id", "id") and isinstance(v, str) and v.startswith(prefix) else shown(caller, v))
            for k, v in value.items()
        }
    return value


async def existing_session(request: Request) -> Session:
    session = services(request).runtime.session(_caller(request).managed_id(request.path_params["session_id"]))
    if not await session.exists():
        raise NotFoundError(f"no memory session {request.path_params['session_id']!r}")
    return session


def _page_size(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_DEFAULT
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 6) or not 1 <= int(raw) <= PAGE_MAX:
        raise InvalidRequestError(f"limit must be an integer from 1 to {PAGE_MAX}", param="limit")
    return int(raw)


async def whoami(request: Request) -> Response:
    caller = _caller(request)
    return json_response({"object": "memory.identity", "principal": caller.principal, "kind": caller.kind, "operator": caller.operator})


async def list_sessions(request: Request) -> Response:
    caller = _caller(request)
    limit = _page_size(request)
    after = request.query_params.get("after")
    contains = request.query_params.get("q", "").strip()
    prefix = caller.owned_prefix()
    page = await services(request).runtime.page_sessions(prefix, None if after is None else caller.managed_id(after), limit + 1, contains)
    data: list[dict[str, Any]] = []
    for summary in page[:limit]:
        item = dataclasses.asdict(summary)
        item["id"] = caller.shown_id(summary.id)
        if caller.operator:
            item["owner"] = owner_of(summary.id)
        data.append(item)
    return json_response({
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(page) > limit,
    })


async def show_session(request: Request) -> Response:
    return json_response(shown(_caller(request), await (await existing_session(request)).info()))


async def manifest(request: Request) -> Response:
    session = await existing_session(request)
    found = await session.last_manifest()
    if found is None:
        raise NotFoundError(f"session {request.path_params['session_id']!r} has no compile manifest yet")
    return json_response(shown(_caller(request), found))


async def compile_dry_run(request: Request) -> Response:
    svc = services(request)
    session = await existing_session(request)
    req = parse_compile_request(await read_body(request, svc.config.server.max_body_bytes))
    result = await session.compile(
        user_message=req.user_message, budget_tokens=req.budget_tokens or svc.config.budget_tokens, model=req.model
    )
    return json_response(
        shown(_caller(request), {
            "session_id": session.id,
            "messages": result.messages,
            "manifest": result.manifest,
            "tokens": result.tokens,
            "budget_tokens": result.budget_tokens,
            "over_budget": result.over_budget,
            "items_included": result.items_included,
        })
    )


async def export(request: Request) -> Response:
    return json_response(shown(_caller(request), await (await existing_session(request)).export()))


async def delete(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    if not await services(request).runtime.delete_session(_caller(request).managed_id(session_id)):
        raise NotFoundError(f"no memory session {session_id!r}")
    return json_response({"id": session_id, "object": "memory.session", "deleted": True})


def routes() -> list[Route]:
    # {session_id:path}: operator ids contain "/" (and so may clients'); the suffixed routes come first.
    base = "/memory/sessions"
    return [
        Route("/memory/whoami", as_endpoint(whoami), methods=["GET"]),
        Route(base, as_endpoint(list_sessions), methods=["GET"]),
        Route(base + "/{session_id:path}/manifest", as_endpoint(manifest), methods=["GET"]),
        Route(base + "/{session_id:path}/compile", as_endpoint(compile_dry_run), methods=["POST"]),
        Route(base + "/{session_id:path}/export", as_endpoint(export), methods=["GET"]),
        Route(base + "/{session_id:path}", as_endpoint(show_session), methods=["GET"]),
        Route(base + "/{session_id:path}", as_endpoint(delete), methods=["DELETE"]),
    ]
