"""Relay every other `/v1/*` route to the OpenAI-compatible upstream, unchanged.

Method, path, query, headers (Authorization included) and body go through as sent; the response
streams back as it arrives, with its status and headers (hop-by-hop and CORS ones aside) and the raw,
possibly compressed, bytes. A request without Authorization gets the configured OPENAI_API_KEY (the
guard has already refused web pages without a key of their own).

The path must stay under `/v1/`: dot segments, empty segments, backslashes, control characters
(NUL...) and percent-encoded dots, slashes or backslashes are refused (400) instead of being
resolved by the URL library, which would turn `/v1/../../x` into `/x` on the upstream host, with the
operator's key attached. The check runs on every level of percent-decoding (`%252e` is `%2e` is
`.`), since a server behind the upstream may decode again; and the path goes on exactly as it
arrived and was checked, never re-encoded from a decoded form.

Hop-by-hop headers stay on their hop both ways: the fixed list below plus every header a
`Connection` header names. The upstream's CORS headers are dropped (a permissive answer from it must
not unlock cross-origin reads of the proxy), and so are its `date` and `server`: the proxy's server
sends its own, and a reply with two of each is malformed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from urllib.parse import unquote_to_bytes

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from proxy.config import UpstreamConfig, UpstreamsConfig
from proxy.errors import InvalidRequestError, UpstreamError
from proxy.upstream_errors import to_upstream_error
from proxy.outbound import outbound_client

__all__ = ["Relay", "relay_path"]

_ENCODED_SEPARATOR = re.compile(r"%(?:2e|2f|5c)", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A path still decoding after this many rounds is refused rather than decoded further.
_MAX_DECODING = 4

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length"}
)
# Reply headers the proxy's own server writes.
_SERVERS_OWN = frozenset({"date", "server"})


def _escapes(path: str) -> bool:
    """Whether one decoded form of a relayed path could leave `/v1/`."""
    segments = path.split("/")[2:]
    return (
        not path.startswith("/v1/")
        or bool(_ENCODED_SEPARATOR.search(path) or _CONTROL.search(path))
        or "\\" in path
        or any(s in ("", ".", "..") for s in segments[:-1])
        or segments[-1] in (".", "..")
    )


def relay_path(raw_path: bytes, path: str) -> str:
    """The path to forward: `raw_path` as it arrived, when it and every percent-decoding of it (and
    the server's decoded `path`) is a plain path under /v1/ (see the module docstring); else
    InvalidRequestError."""
    raw = raw_path.decode("latin-1")
    forms, current = [raw, path], raw
    for _ in range(_MAX_DECODING):
        decoded = unquote_to_bytes(current).decode("latin-1")
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    else:
        forms.append("%")  # still decoding: refused
    if any(_escapes(form) for form in forms):
        raise InvalidRequestError("relayed paths must stay under /v1/ (no dot or empty segments, no encoded separators or control "
                                  "characters, at any level of percent-encoding)", code="invalid_path")
    return raw


def _named_in_connection(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """The headers a message's `Connection` headers declare hop-by-hop (RFC 9110 7.6.1)."""
    return {token.strip().lower() for name, value in pairs if name.lower() == "connection" for token in value.split(",") if token.strip()}


def _forward_headers(request: Request, upstream: UpstreamConfig) -> list[tuple[bytes, bytes]]:
    # Raw bytes both ways: a header value outside ASCII is passed on as sent, not re-encoded (which
    # failed with a 500).
    raw = [(k.decode("latin-1").lower(), v) for k, v in request.headers.raw]
    hop = _HOP_BY_HOP | _named_in_connection((k, v.decode("latin-1")) for k, v in raw)
    headers = [(k.encode("latin-1"), v) for k, v in raw if k not in hop and not k.startswith("x-memory-")]
    if upstream.api_key and "authorization" not in request.headers:
        headers.append((b"authorization", f"Bearer {upstream.api_key}".encode()))
    return headers


def _reply_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    # multi_items keeps repeated headers (set-cookie...) apart instead of comma-joining them.
    pairs = response.headers.multi_items()
    dropped = _HOP_BY_HOP | _SERVERS_OWN | _named_in_connection(pairs)
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs
            if k.lower() not in dropped and not k.lower().startswith("access-control-")]


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
        relayed.raw_headers = _reply_headers(response)
        return relayed
