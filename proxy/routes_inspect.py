"""Looking into memory over HTTP: what the inspector page reads, and `/metrics`.

    GET /memory/sessions/{id}/events?before=&limit=&ids=   the event log, newest first (or by id)
    GET /memory/sessions/{id}/artifacts?after=&limit=      artifact versions, oldest first
    GET /memory/sessions/{id}/artifacts/{artifact_id}      one version with its content
    GET /memory/sessions/{id}/turns                        cost of each forwarded prompt
    GET /memory/sessions/{id}/prompt                       the last prompt, item by item, with text
    GET /memory/usage?limit=                               totals and per-session cost
    GET /metrics                                           Prometheus text format

Same access rules as every `/memory/*` route (the session is looked up as the other routes look it
up); `/metrics` shows counts only, never content or ids.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memory import inspection

from .errors import InvalidRequestError, NotFoundError
from .http import json_response
from .metrics import CONTENT_TYPE
from .routes_memory import _endpoint, _existing
from .services import services

__all__ = ["routes", "metrics"]

log = logging.getLogger("memory_runtime.inspect")
_MAX_ID = 2**62


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
    session = await _existing(request)
    ids = _ids_param(request)
    if ids is not None:
        return json_response({"object": "list", "data": await inspection.events_by_id(session, ids)})
    limit = _int_param(request, "limit", 50, 1, inspection.MAX_PAGE)
    data = await inspection.event_page(session, _int_param(request, "before", None, 1, _MAX_ID), (limit or 50) + 1)
    page = data[: limit or 50]
    return json_response({"object": "list", "data": page, "has_more": len(data) > len(page),
                          "next_before": page[-1]["id"] if page else None})


async def artifacts(request: Request) -> Response:
    session = await _existing(request)
    limit = _int_param(request, "limit", 200, 1, inspection.MAX_PAGE) or 200
    data = await inspection.artifact_page(session, _int_param(request, "after", 0, 0, _MAX_ID) or 0, limit + 1)
    page = data[:limit]
    return json_response({"object": "list", "data": page, "has_more": len(data) > limit, "next_after": page[-1]["id"] if page else None})


async def artifact(request: Request) -> Response:
    session = await _existing(request)
    raw = request.path_params["artifact_id"]
    found = await inspection.artifact(session, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
    if found is None:
        raise NotFoundError(f"no artifact {raw!r} in this session")
    return json_response(found)


async def turns(request: Request) -> Response:
    session = await _existing(request)
    return json_response({"object": "list", "data": await inspection.turns(session)})


async def prompt(request: Request) -> Response:
    session = await _existing(request)
    found = await inspection.last_prompt(session)
    if found is None:
        raise NotFoundError(f"session {request.path_params['session_id']!r} has no compile manifest yet")
    return json_response(found)


async def usage(request: Request) -> Response:
    limit = _int_param(request, "limit", 100, 1, inspection.MAX_PAGE) or 100
    return json_response(await inspection.usage_report(services(request).runtime, limit=limit))


async def metrics(request: Request) -> Response:
    svc = services(request)
    try:
        await svc.runtime.open()
        stored: int | None = await svc.runtime.store.count_sessions()
    except Exception as exc:  # memory being down must not take the metrics down with it
        log.warning("cannot count sessions for /metrics: %s", exc)
        stored = None
    return Response(svc.metrics.render(stored), media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    base = "/memory/sessions/{session_id}"
    return [
        Route(base + "/events", _endpoint(events), methods=["GET"]),
        Route(base + "/artifacts", _endpoint(artifacts), methods=["GET"]),
        Route(base + "/artifacts/{artifact_id}", _endpoint(artifact), methods=["GET"]),
        Route(base + "/turns", _endpoint(turns), methods=["GET"]),
        Route(base + "/prompt", _endpoint(prompt), methods=["GET"]),
        Route("/memory/usage", _endpoint(usage), methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
