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
from collections.abc import Callable
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

__all__ = ["NoCookies", "outbound_client", "post_json"]


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
