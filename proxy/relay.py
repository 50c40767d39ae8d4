"""Relay every other `/v1/*` route to the OpenAI-compatible upstream, unchanged.

Method, path, query, headers (Authorization included) and body go through as sent; the response
streams back as it arrives, with its status and headers (hop-by-hop and CORS ones aside) and the raw,
possibly compressed, bytes. A request without Authorization gets the configured OPENAI_API_KEY (the
guard has already refused web pages without a key of their own).

The path must stay under `/v1/`: dot segments, empty segments, backslashes and percent-encoded
dots, slashes or backslashes are refused (400) instead of being resolved by the URL library, which
would turn `/v1/../../x` into `/x` on the upstream host, with the operator's key attached. The
upstream's CORS headers are dropped: a permissive answer from it must not unlock cross-origin reads
of the proxy.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from proxy.config import UpstreamConfig, UpstreamsConfig
from proxy.errors import InvalidRequestError, UpstreamError
from proxy.chat.upstream import to_upstream_error
from proxy.outbound import outbound_client

__all__ = ["Relay", "relay_path"]

_ENCODED_SEPARATOR = re.compile(rb"%(?:2e|2f|5c)", re.I)

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
)


def relay_path(raw_path: bytes, path: str) -> str:
    """`path` if it is a plain path under /v1/ (see the module docstring), else InvalidRequestError."""
    segments = path.split("/")[2:]
    if (
        not path.startswith("/v1/")
        or _ENCODED_SEPARATOR.search(raw_path)
        or "\\" in path
        or any(s in ("", ".", "..") for s in segments[:-1])
        or segments[-1] in (".", "..")
    ):
        raise InvalidRequestError("relayed paths must stay under /v1/ (no dot or empty segments, no encoded separators)", code="invalid_path")
    return path


def _forward_headers(request: Request, upstream: UpstreamConfig) -> list[tuple[bytes, bytes]]:
    # Raw bytes both ways: a header value outside ASCII is passed on as sent, not re-encoded (which
    # failed with a 500).
    headers = [
        (k, v)
        for k, v in request.headers.raw
        if k.lower().decode("latin-1") not in _HOP_BY_HOP and not k.lower().startswith(b"x-memory-")
    ]
    if upstream.api_key and "authorization" not in request.headers:
        headers.append((b"authorization", f"Bearer {upstream.api_key}".encode()))
    return headers


class Relay:
    """Owns the httpx client used for relaying; created and closed by the app's lifespan."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._upstream = config.openai
        self._client = outbound_client(httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds))

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

        path = relay_path(request.scope.get("raw_path") or request.url.path.encode(), request.url.path)
        outgoing = self._client.build_request(
            request.method,
            self.url_for(path, request.url.query),
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
            if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("access-control-")
        ]
        return relayed
