"""The clients the proxy calls providers with: shared by every caller, so they keep no cookies.

Model calls (`post_json`, `json_events`: the direct OpenAI-compatible path and Anthropic's
Messages API) go through one aiohttp session per upstream (`ModelClient`): under 100 concurrent
calls httpx's connection pool, scanned on every request and keeping only 20 connections alive,
cost the proxy ~25% of its CPU per request. The relay, which streams arbitrary bodies both ways,
keeps an httpx client (`outbound_client`).

A provider's load balancer sets cookies (OpenAI's `__cf_bm`, say). httpx keeps a cookie jar per
client by default and sends what it stored on every later request to that host: one caller's cookie
would then ride on the next caller's call, with that caller's key. The proxy has no use for provider
cookies, so its clients store none (`set-cookie` from a provider is read by nobody and stored
nowhere) and send none of their own; a `Cookie` header a client sends on a relayed call is that
client's and passes through with its other headers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar
from typing import Any

import aiohttp
import httpx

from proxy.sse import ServerEvent, SSEDecoder

__all__ = ["NoCookies", "outbound_client", "ModelClient", "Reply", "post_json", "json_object", "json_events"]


class NoCookies(CookieJar):
    """A cookie jar that stays empty: nothing extracted from replies, nothing set."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None


def outbound_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for provider calls: no cookie jar, no redirects followed."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, cookies=NoCookies())


class ModelClient:
    """One aiohttp session (a pool of kept-alive connections, no cookie jar, no redirects
    followed), opened on first use inside the running loop and closed by the app's lifespan.
    Timeouts as httpx's were: `timeout_s` for a connection from the pool and for each read,
    `connect_s` for a new connection."""

    def __init__(self, timeout_s: float, connect_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=connect_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                                  connector=aiohttp.TCPConnector(limit=100, limit_per_host=0))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Reply:
    """A provider's reply as `post_json` opened it: status, headers, and (for a stream) its body."""

    status_code: int
    headers: Any  # a case-insensitive multidict: `.items()`, `.get()`
    response: aiohttp.ClientResponse


_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


async def post_json(client: ModelClient, url: str, headers: Any, body: dict[str, Any],
                    upstream_error: Callable[[BaseException], Exception]) -> tuple[Reply, bytes | None]:
    """POST `body` as compact JSON with the reply opened as a stream. An error reply, or any reply
    when `body` asks for no stream, is read whole and closed: (reply, its bytes); otherwise
    (reply, None), the stream left to the caller. Transport errors are raised as
    `upstream_error(exc)` (the route's mapping to its envelope). `headers`: a mapping, or (name,
    value) pairs of str or bytes (bytes are passed on as sent, latin-1)."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        response = await client.session().post(url, data=payload, headers=_str_headers(headers), allow_redirects=False)
    except _TRANSPORT_ERRORS as exc:
        raise upstream_error(exc) from None
    reply = Reply(response.status, response.headers, response)
    if response.status < 400 and body.get("stream"):
        return reply, None
    try:
        return reply, await response.read()
    except _TRANSPORT_ERRORS as exc:
        raise upstream_error(exc) from None
    finally:
        response.release()


def _str_headers(headers: Any) -> list[tuple[str, str]]:
    pairs = headers.items() if hasattr(headers, "items") else headers
    return [(k.decode("latin-1") if isinstance(k, bytes) else k, v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in pairs]


def json_object(raw: bytes | str) -> dict[str, Any] | None:
    """`raw` parsed as JSON when it is an object, else None (not JSON, or another value)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def json_events(reply: Reply,
                      upstream_error: Callable[[BaseException], Exception]) -> AsyncGenerator[tuple[ServerEvent, dict[str, Any]], None]:
    """A provider's event stream, read to its end: each server-sent event whose data is a JSON
    object, with that object (`[DONE]` and other lines that are not an event of the API are
    skipped). Transport errors are raised as `upstream_error(exc)`; the response is closed when the
    stream ends or the caller stops reading. Whether the stream was complete is the caller's rule."""
    decoder, response, finished = SSEDecoder(), reply.response, False
    try:
        async for chunk in response.content.iter_any():
            for event in decoder.feed(chunk):
                if (data := json_object(event.data)) is not None:
                    yield event, data
        for event in decoder.close():
            if (data := json_object(event.data)) is not None:
                yield event, data
        finished = True
    except _TRANSPORT_ERRORS as exc:
        raise upstream_error(exc) from None
    finally:
        # Read to its end, the connection goes back to the pool; left half-read, it is closed.
        response.release() if finished else response.close()
