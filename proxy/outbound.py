"""The httpx clients the proxy calls providers with: shared by every caller, so they keep no cookies.

A provider's load balancer sets cookies (OpenAI's `__cf_bm`, say). httpx keeps a cookie jar per
client by default and sends what it stored on every later request to that host: one caller's cookie
would then ride on the next caller's call, with that caller's key. The proxy has no use for provider
cookies, so its clients store none (`set-cookie` from a provider is read by nobody and stored
nowhere) and send none of their own; a `Cookie` header a client sends on a relayed call is that
client's and passes through with its other headers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

from proxy.sse import ServerEvent, SSEDecoder

__all__ = ["NoCookies", "outbound_client", "post_json", "json_object", "json_events"]


class NoCookies(CookieJar):
    """A cookie jar that stays empty: nothing extracted from replies, nothing set."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None


def outbound_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for provider calls: no cookie jar, no redirects followed."""
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, cookies=NoCookies())


async def post_json(client: httpx.AsyncClient, url: str, headers: Any, body: dict[str, Any],
                    upstream_error: Callable[[BaseException], Exception]) -> tuple[httpx.Response, bytes | None]:
    """POST `body` as compact JSON with the reply opened as a stream. An error reply, or any reply
    when `body` asks for no stream, is read whole and closed: (response, its bytes); otherwise
    (response, None), the stream left to the caller. Transport errors are raised as
    `upstream_error(exc)` (the route's mapping to its envelope)."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        response = await client.send(client.build_request("POST", url, headers=headers, content=payload), stream=True)
    except httpx.HTTPError as exc:
        raise upstream_error(exc) from None
    if response.status_code < 400 and body.get("stream"):
        return response, None
    try:
        return response, await response.aread()
    except httpx.HTTPError as exc:
        raise upstream_error(exc) from None
    finally:
        await response.aclose()


def json_object(raw: bytes | str) -> dict[str, Any] | None:
    """`raw` parsed as JSON when it is an object, else None (not JSON, or another value)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def json_events(response: httpx.Response,
                      upstream_error: Callable[[BaseException], Exception]) -> AsyncGenerator[tuple[ServerEvent, dict[str, Any]], None]:
    """A provider's event stream, read to its end: each server-sent event whose data is a JSON
    object, with that object (`[DONE]` and other lines that are not an event of the API are
    skipped). Transport errors are raised as `upstream_error(exc)`; the response is closed when the
    stream ends or the caller stops reading. Whether the stream was complete is the caller's rule."""
    decoder = SSEDecoder()
    try:
        async for chunk in response.aiter_bytes():
            for event in decoder.feed(chunk):
                if (data := json_object(event.data)) is not None:
                    yield event, data
        for event in decoder.close():
            if (data := json_object(event.data)) is not None:
                yield event, data
    except httpx.HTTPError as exc:
        raise upstream_error(exc) from None
    finally:
        await response.aclose()
