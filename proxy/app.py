"""`create_app(config)`: the Starlette app, with everything it owns built in its lifespan.

The memory runtime (SQLite or PostgreSQL store + embedding model), the litellm upstream, the relay's httpx client
and the caller identities live on `app.state.services`; nothing is module-global, so tests build as
many independent apps as they like. Every request first passes the `Guard` (Host, Origin, OPTIONS,
content type, caller identity).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from memory import MemoryRuntimeError, create_runtime

from proxy.config import ProxyConfig
from proxy.errors import InvalidRequestError, MemoryUnavailableError, NotFoundError, ProxyError
from proxy.access.guard import Guard
from proxy.http import error_response
from proxy.access.identity import Identities, identity_secret
from proxy.admin.inspector import UI_PATHS, inspector_routes
from proxy.logs import RequestIdMiddleware
from proxy.metrics import Metrics, MetricsMiddleware
from proxy.admin.retention import Sweeper
from proxy.relay import Relay
from proxy.responses.upstream import ResponsesUpstream
from proxy.messages.upstream import AnthropicUpstream
from proxy.messages.routes import count_tokens, create_message
from proxy.chat.routes import chat_completions
from proxy.admin.inspect_routes import routes as inspect_routes
from proxy.responses.routes import create_response
from proxy.admin.memory_routes import routes as memory_routes
from proxy.services import Services, services
from proxy.chat.upstream import Upstream

__all__ = ["create_app"]

log = logging.getLogger("memory_runtime.app")


async def healthz(request: Request) -> Response:
    """200 "ok" while memory can store what it is given ("ok (embedding model loading, ranking
    lexically ...)" while the model loads after start, or if it failed to); 503 with the reason
    otherwise (the database file was deleted or replaced, the last write failed, the store cannot
    open)."""
    runtime = services(request).runtime
    problem = await runtime.health()
    if problem is not None:
        return error_response(MemoryUnavailableError(f"memory unavailable: {problem}", code="memory_unavailable"))
    note = runtime.model_note  # the model loading (or failed): memory works, ranking by words meanwhile
    return PlainTextResponse("ok" if note is None else f"ok ({note})")


async def relay(request: Request) -> Response:
    return await services(request).relay.forward(request)


async def _proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return error_response(exc, path=request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route {request.method} {request.url.path}"), path=request.url.path)
    err = InvalidRequestError(str(exc.detail))
    err.status = exc.status_code
    return error_response(err, headers=dict(exc.headers or {}), path=request.url.path)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(ProxyError("internal proxy error"), path=request.url.path)


def create_app(config: ProxyConfig) -> Starlette:
    """Build the proxy app for `config`. Storage and the embedding model open when the app starts."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = create_runtime(
            storage_path=config.storage_path,
            storage_url=config.storage_url,
            embedding_model=config.embedding.model,
            embedding_model_dir=config.embedding.model_dir,
            # Answer from the first second: the model loads in a worker thread, ranking is lexical meanwhile.
            model_in_background=True,
            store_images=config.store_images,
        )
        try:
            await runtime.open()
        except MemoryRuntimeError as exc:
            # Fail open from the start (a corrupt file, a missing model): forward requests
            # unmodified with X-Memory-Error; every memory call retries opening, so fixing the
            # file or the model needs no restart.
            log.error("memory unavailable, forwarding requests unmodified until it opens: %s", exc)
        # With a shared PostgreSQL memory the identity secret lives in the database: a proxy that
        # cannot reach it at start stops here rather than name callers differently from the others.
        secret = await identity_secret(config, runtime.store)
        relay_client = Relay(config.upstreams)
        upstream = Upstream(config.upstreams)
        if config.upstreams.gemini.api_key:
            # Only Gemini goes through litellm: its import (~2.7 s of CPU, ~130 MiB) starts now, in
            # a worker thread while the proxy already answers, when the operator set a Gemini key;
            # otherwise at the first Gemini call, which waits for it.
            upstream.start()
        responses_client = ResponsesUpstream(config.upstreams, upstream)
        anthropic_client = AnthropicUpstream(config.upstreams)
        app.state.services = Services(
            config=config, runtime=runtime, upstream=upstream, relay=relay_client,
            identities=Identities(secret, config.server.access_token, config.tenants), responses=responses_client, metrics=metrics,
            anthropic=anthropic_client,
        )
        sweeper = Sweeper(runtime, config.retention)
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await anthropic_client.aclose()
            await relay_client.aclose()
            await upstream.aclose()
            await runtime.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        *inspect_routes(),
        *memory_routes(),
        *inspector_routes(),
        Route("/v1/{path:path}", relay, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    ]
    own = frozenset(r.path for r in routes if isinstance(r, Route) and r.path.startswith("/v1/") and "{" not in r.path)
    # Outermost first: every response, a 401 or 403 included, carries its X-Request-Id and is
    # counted; the inspector page's files pass the guard without credentials (they hold no data).
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(Guard, server=config.server, own_paths=own, open_paths=UI_PATHS),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={ProxyError: _proxy_error, HTTPException: _http_error, Exception: _unexpected},
    )
