"""Relay every other `/v1/*` route to the OpenAI-compatible upstream, unchanged.

Method, path, query, headers (Authorization included) and body go through as sent; the response
streams back as it arrives, with its status and headers (hop-by-hop ones aside) and the raw,
possibly compressed, bytes. A request without Authorization gets the configured OPENAI_API_KEY.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from .config import UpstreamConfig, UpstreamsConfig
from .errors import UpstreamError
from .upstream import to_upstream_error

__all__ = ["Relay"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
)


def _forward_headers(request: Request, upstream: UpstreamConfig) -> list[tuple[str, str]]:
    headers = [
        (k, v)
        for k, v in request.headers.items()
        if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("x-memory-")
    ]
    if upstream.api_key and "authorization" not in request.headers:
        headers.append(("authorization", f"Bearer {upstream.api_key}"))
    return headers


class Relay:
    """Owns the httpx client used for relaying; created and closed by the app's lifespan."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._upstream = config.openai
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def url_for(self, path: str, query: str) -> str:
        """`/v1/embeddings?x=1` -> `{api_base}/embeddings?x=1` (api_base already ends in /v1)."""
        rest = path[len("/v1") :] if path.startswith("/v1") else path
        url = self._upstream.api_base + rest
        return f"{url}?{query}" if query else url

    async def forward(self, request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                yield chunk

        outgoing = self._client.build_request(
            request.method,
            self.url_for(request.url.path, request.url.query),
            headers=_forward_headers(request, self._upstream),
            content=body() if request.method not in ("GET", "HEAD") else None,
        )
        try:
            response = await self._client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise to_upstream_error(exc) from None

        async def relay_body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx.HTTPError as exc:
                # Headers are gone already: the only honest signal left is to cut the stream.
                raise UpstreamError(f"upstream broke off the response: {exc}") from None

        relayed = StreamingResponse(relay_body(), status_code=response.status_code, background=BackgroundTask(response.aclose))
        # multi_items keeps repeated headers (set-cookie...) apart instead of comma-joining them.
        relayed.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in _HOP_BY_HOP
        ]
        return relayed
