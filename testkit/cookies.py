"""A provider's load balancer sets cookies (OpenAI's sends `__cf_bm` on every reply): the fake
upstream does too, so a proxy that keeps a cookie jar and replays one caller's cookie on another
caller's call is caught by any test that looks at the `cookie` header the fake recorded."""

from __future__ import annotations

import itertools
import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SetsCookie", "COOKIE_NAME"]

COOKIE_NAME = "__cf_bm"


class SetsCookie:
    """ASGI middleware: every HTTP reply gets `set-cookie: __cf_bm=<n>` (a fresh value per reply)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    n = next(self._counter)
                value = f"{COOKIE_NAME}=fake-affinity-{n}; Path=/; HttpOnly".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value)]}
            await send(message)

        await self.app(scope, receive, with_cookie)
