"""The front door: which requests reach a route at all, and as whom.

A proxy on 127.0.0.1 is reachable by every web page its user opens. Browsers protect it only if it
behaves: a page may send "simple" cross-origin requests (text/plain, form or multipart bodies) with
no preflight, and after DNS rebinding a page on the attacker's name talks to the proxy as its own
origin. So, in this order, for every request:

1. **Host** must be an IP literal (rebinding needs a name), `localhost`, the configured bind host,
   or one of `server.allowed_hosts` ("*" allows any); otherwise 403.
2. **Origin**, when present, must be the proxy's own origin or one of `server.allowed_origins`;
   otherwise 403 (`Origin: null` included).
3. **OPTIONS** is answered here and never relayed: 204, with CORS headers only for an allowed origin.
4. **Bodies**: the proxy's own routes take `application/json` only; relayed `/v1/*` routes also take
   multipart (file uploads) and other types, but never `text/plain` or url-encoded forms; else 415.
5. **Identity** (`proxy.access.identity`): 401 without a valid token when tokens are configured. A web
   page (Origin / Sec-Fetch-* / Referer) without its own API key cannot reach `/v1/*` (that would
   spend the proxy's environment key), nor read keyless memory unless it is the proxy's own page.

Steps 4 and 5 are skipped for `/healthz` and the `open_paths` (the inspector page's static files,
which hold no data); every data route the page reads goes through all five.

The caller is left in `scope["state"]["caller"]` for the routes. Pure ASGI, so streaming is untouched.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.config import ServerConfig
from proxy.errors import AccessDeniedError, ForbiddenError, ProxyError, UnsupportedMediaError
from proxy.http import error_response
from proxy.access.identity import Caller, Identities

__all__ = ["Guard", "caller_of", "host_allowed"]

log = logging.getLogger("memory_runtime.guard")
HEALTH_PATH = "/healthz"
_SIMPLE_BODIES = frozenset({"text/plain", "application/x-www-form-urlencoded"})
_EXPOSE = ("X-Memory-Session, X-Memory-Original-Tokens, X-Memory-Compiled-Tokens, X-Memory-Items, X-Memory-Error, X-Request-Id, "
           "X-Memory-Request-Id")
_HEADER_LIST = re.compile(r"[A-Za-z0-9-]+(?:\s*,\s*[A-Za-z0-9-]+)*")
_PREFLIGHT_METHODS = "GET, POST, PUT, PATCH, DELETE"


def caller_of(scope_state: Any) -> Caller:
    """The `Caller` the guard resolved for this request (`request.state` or `scope["state"]`)."""
    found = scope_state["caller"] if isinstance(scope_state, dict) else scope_state.caller
    assert isinstance(found, Caller)
    return found


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str | None, server: ServerConfig) -> bool:
    if host_header is None:
        return True  # HTTP/1.0 without Host: not a browser
    name = _host_name(host_header)
    try:
        ipaddress.ip_address(name)
        return True  # a page at an IP literal is not on an attacker's name
    except ValueError:
        pass
    return name == "localhost" or name == server.host.lower() or name in server.allowed_hosts or "*" in server.allowed_hosts


class Guard:
    """Pure ASGI middleware applying the checks in the module docstring."""

    def __init__(self, app: ASGIApp, server: ServerConfig, own_paths: frozenset[str], open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.server = server
        # /v1/* paths the proxy serves itself (JSON only); every other /v1/* path is relayed.
        self.own_paths = own_paths
        # Paths served to anyone past the Host and Origin checks, like /healthz: the inspector
        # page's own files, which hold no data (a browser cannot add a header to a navigation, so
        # the page could not be opened at all; every data request it then makes is checked).
        self.open_paths = open_paths | {HEALTH_PATH}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        try:
            if not host_allowed(headers.get("host"), self.server):
                raise ForbiddenError("Host header not allowed (set server.allowed_hosts to serve this name)", code="host_not_allowed")
            if origin is not None and not self._origin_allowed(origin, headers):
                raise ForbiddenError("cross-origin requests are not allowed (see server.allowed_origins)", code="origin_not_allowed")
            if scope["method"] == "OPTIONS":
                await self._preflight(origin, headers)(scope, receive, send)
                return
            if scope["path"] not in self.open_paths:
                self._check_body(scope["path"], headers)
                caller = self._caller(scope, headers)
                scope.setdefault("state", {})["caller"] = caller
                log.debug("%s %s as a %s caller%s", scope["method"], scope["path"], caller.kind, " (operator)" if caller.operator else "")
        except ProxyError as exc:
            await error_response(exc, path=scope["path"])(scope, receive, send)  # Anthropic's envelope on its routes
            return
        if origin is None or origin.lower() in self._same_origins(headers):
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
                         (b"access-control-expose-headers", _EXPOSE.encode())]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _same_origins(self, headers: Headers) -> set[str]:
        host = headers.get("host", "").lower()
        return {f"http://{host}", f"https://{host}"} if host else set()

    def _origin_allowed(self, origin: str, headers: Headers) -> bool:
        value = origin.strip().lower().rstrip("/")
        return value in self.server.allowed_origins or value in self._same_origins(headers)

    def _preflight(self, origin: str | None, headers: Headers) -> Response:
        out = {"Allow": "GET, POST, PUT, PATCH, DELETE, OPTIONS"}
        if origin is not None and origin.strip().lower().rstrip("/") in self.server.allowed_origins:
            asked = headers.get("access-control-request-headers", "")
            out.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": _PREFLIGHT_METHODS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            })
            if _HEADER_LIST.fullmatch(asked):
                out["Access-Control-Allow-Headers"] = asked
        return Response(status_code=204, headers=out)

    def _check_body(self, path: str, headers: Headers) -> None:
        length = headers.get("content-length", "0").strip()
        if "transfer-encoding" not in headers and length in ("", "0"):
            return
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        relayed = path.startswith("/v1/") and path not in self.own_paths
        if relayed and media and media not in _SIMPLE_BODIES:
            return
        if not relayed and media == "application/json":
            return
        wanted = "a JSON body (Content-Type: application/json)" if not relayed else "a Content-Type other than text/plain or a form"
        raise UnsupportedMediaError(f"{path} needs {wanted}", param="Content-Type", code="unsupported_media_type")

    def _caller(self, scope: Scope, headers: Headers) -> Caller:
        identities: Identities = scope["app"].state.services.identities
        caller = identities.caller(headers)
        if caller.browser and caller.key is None:
            if scope["path"].startswith("/v1/"):
                raise AccessDeniedError("a request from a web page must carry its own API key", code="browser_needs_own_key")
            if caller.kind == "local" and headers.get("sec-fetch-site", "none") not in ("none", "same-origin"):
                raise AccessDeniedError("a request from another web page must carry its own API key", code="browser_needs_own_key")
        return caller
