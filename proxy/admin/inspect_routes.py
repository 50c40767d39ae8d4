"""Looking into memory over HTTP: what the inspector page reads, and `/metrics`.

    GET /memory/sessions/{id}/events?before=&limit=&ids=   the event log, newest first (or by id)
    GET /memory/sessions/{id}/artifacts?after=&limit=      artifact versions, oldest first
    GET /memory/sessions/{id}/artifacts/{artifact_id}      one version with its content
    GET /memory/sessions/{id}/turns                        cost of each forwarded prompt
    GET /memory/sessions/{id}/prompt                       the last prompt, item by item, with text
    GET /memory/usage?limit=                               totals and per-session cost
    GET /metrics                                           Prometheus text format

Same access rules as every `/memory/*` route (`proxy.admin.memory_routes`): `{id}` is looked up under the
caller's principal, so another caller's session is a 404 whatever its id; usage covers the caller's
own sessions, by the ids it knows; the operator sees every session with its owner. `/metrics` shows
counts only, never content or ids, and is the operator's alone when tokens are configured (a tenant
must not learn the other tenants' traffic); without tokens the proxy is bound to loopback (config
refuses otherwise) and `/metrics` is open to whoever can reach `/memory/*`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memory import inspection

from proxy.errors import ForbiddenError, InvalidRequestError, NotFoundError
from proxy.access.guard import caller_of
from proxy.http import json_response
from proxy.metrics import CONTENT_TYPE
from proxy.access.identity import owner_of
from proxy.admin.memory_routes import as_endpoint, existing_session, shown
from proxy.services import services

__all__ = ["routes", "metrics"]

log = logging.getLogger("memory_runtime.inspect")
_MAX_ID = 2**62


def _answer(request: Request, value: Any) -> Response:
    """`value` as JSON, with every storage id in it shown as this caller knows it."""
    return json_response(shown(caller_of(request.state), value))


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        raise InvalidRequestError(f"{name} must be an integer from {low} to {high}", param=name)
    return int(raw)


def _ids_param(request: Request) -> list[int] | None:
    raw = request.query_params.get("ids")
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > inspection.MAX_PAGE or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise InvalidRequestError(f"ids must be up to {inspection.MAX_PAGE} comma-separated event ids", param="ids")
    return [int(p) for p in parts]


async def events(request: Request) -> Response:
    session = await existing_session(request)
    ids = _ids_param(request)
    if ids is not None:
        return _answer(request, {"object": "list", "data": await inspection.events_by_id(session, ids)})
    limit = _int_param(request, "limit", 50, 1, inspection.MAX_PAGE)
    data = await inspection.event_page(session, _int_param(request, "before", None, 1, _MAX_ID), (limit or 50) + 1)
    page = data[: limit or 50]
    return _answer(request, {"object": "list", "data": page, "has_more": len(data) > len(page), "next_before": page[-1]["id"] if page else None})


async def artifacts(request: Request) -> Response:
    session = await existing_session(request)
    limit = _int_param(request, "limit", 200, 1, inspection.MAX_PAGE) or 200
    data = await inspection.artifact_page(session, _int_param(request, "after", 0, 0, _MAX_ID) or 0, limit + 1)
    page = data[:limit]
    return _answer(request, {"object": "list", "data": page, "has_more": len(data) > limit, "next_after": page[-1]["id"] if page else None})


async def artifact(request: Request) -> Response:
    session = await existing_session(request)
    raw = request.path_params["artifact_id"]
    found = await inspection.artifact(session, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if found is None:
        raise NotFoundError(f"no artifact {raw!r} in this session")
    return _answer(request, found)


async def turns(request: Request) -> Response:
    session = await existing_session(request)
    return _answer(request, {"object": "list", "data": await inspection.turns(session)})


async def prompt(request: Request) -> Response:
    session = await existing_session(request)
    found = await inspection.last_prompt(session)
    if found is None:
        raise NotFoundError(f"session {request.path_params['session_id']!r} has no compile manifest yet")
    return _answer(request, found)


async def usage(request: Request) -> Response:
    caller = caller_of(request.state)
    limit = _int_param(request, "limit", 100, 1, inspection.MAX_PAGE) or 100
    report = await inspection.usage_report(services(request).runtime, caller.owned_prefix(), limit=limit)
    if caller.operator:
        report["by_session"] = [{**row, "owner": owner_of(row["session_id"])} for row in report["by_session"]]
    return json_response(shown(caller, report))


async def metrics(request: Request) -> Response:
    svc = services(request)
    if svc.identities.gated and not caller_of(request.state).operator:
        raise ForbiddenError("/metrics is the operator's: send the server.access_token as X-Memory-Access-Token",
                             code="operator_only")
    try:
        await svc.runtime.open()
        stored: int | None = await svc.runtime.store.count_sessions()
    except Exception as exc:  # memory being down must not take the metrics down with it
        log.warning("cannot count sessions for /metrics: %s", exc)
        stored = None
    return Response(svc.metrics.render(stored), media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    # {session_id:path}: operator ids contain "/" (and so may clients'). These come before the
    # `/memory/sessions/{session_id:path}` catch-all of `proxy.admin.memory_routes`.
    base = "/memory/sessions/{session_id:path}"
    return [
        Route(base + "/events", as_endpoint(events), methods=["GET"]),
        Route(base + "/artifacts", as_endpoint(artifacts), methods=["GET"]),
        Route(base + "/artifacts/{artifact_id}", as_endpoint(artifact), methods=["GET"]),
        Route(base + "/turns", as_endpoint(turns), methods=["GET"]),
        Route(base + "/prompt", as_endpoint(prompt), methods=["GET"]),
        Route("/memory/usage", as_endpoint(usage), methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
