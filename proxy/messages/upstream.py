"""Calls to Anthropic's Messages API: the body posted as it is (aiohttp, no cookie jar), its JSON or
its event stream read back as sent.

Headers: every `anthropic-*` header of the request (`anthropic-version`, `anthropic-beta`, ...) is
forwarded as the client sent it, in its order (none added, dropped or reordered), with the
caller's own `x-api-key` or `Authorization`; a request with neither gets ANTHROPIC_API_KEY from
the proxy's environment as `x-api-key`. The provider's `request-id`, `anthropic-ratelimit-*` and
`retry-after` come back to the client.

Connection failures, 429, 5xx and 529 (overloaded) are retried (`upstreams.retries`) before any
byte went to the client. A stream that ends without `message_stop` (nor an `error` event) raises
`UpstreamError` (`upstream_incomplete`) after the events it did send.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any


from proxy.outbound import ModelClient, Reply, json_events, json_object, post_json
from proxy.config import UpstreamsConfig
from proxy.errors import UpstreamError
from proxy.upstream_errors import to_upstream_error

__all__ = ["AnthropicUpstream", "Opened", "StreamEvent", "forwarded_headers"]

log = logging.getLogger("memory_runtime.messages")
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_PASSED_PREFIXES = ("anthropic-ratelimit-",)
_PASSED = frozenset({"request-id", "retry-after", "anthropic-organization-id"})
_AUTH = ("x-api-key", "authorization")


@dataclass(frozen=True)
class StreamEvent:
    """One event of the stream: its name, its data exactly as sent, and that data decoded."""

    name: str
    data: str
    payload: dict[str, Any]


@dataclass
class Opened:
    """A started call: the provider headers to pass back, and the reply (raw bytes and decoded) or
    its events."""

    headers: dict[str, str]
    raw: bytes = b""
    response: dict[str, Any] | None = None
    events: AsyncGenerator[StreamEvent, None] | None = None


def forwarded_headers(raw_headers: Sequence[tuple[bytes, bytes]], env_key: str | None) -> list[tuple[bytes, bytes]]:
    """The request headers that go upstream: `anthropic-*` and the caller's key, in their order
    (the environment key when the caller sent none)."""
    out = [(k, v) for k, v in raw_headers if k.lower().startswith(b"anthropic-") or k.lower().decode("latin-1") in _AUTH]
    if env_key and not any(k.lower().decode("latin-1") in _AUTH for k, _ in out):
        out.append((b"x-api-key", env_key.encode("latin-1")))
    return out


def _passed(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() in _PASSED or k.lower().startswith(_PASSED_PREFIXES)}


def _error(status: int, raw: bytes) -> UpstreamError:
    inner = (json_object(raw) or {}).get("error")
    inner = inner if isinstance(inner, dict) else {}
    message = str(inner.get("message") or raw[:200].decode("utf-8", "replace") or f"upstream answered {status}")
    return UpstreamError(message, status=status, type=str(inner["type"]) if inner.get("type") else None)


def _incomplete() -> UpstreamError:
    return UpstreamError("the upstream stream ended before message_stop (the reply is incomplete)", status=502,
                         type="api_error", code="upstream_incomplete")


class AnthropicUpstream:
    """One instance lives on `app.state`; owns the aiohttp session (`ModelClient`) for Anthropic's API."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._config = config
        self._client = ModelClient(config.timeout_seconds, config.connect_timeout_seconds)

    @property
    def env_key(self) -> str | None:
        return self._config.anthropic.api_key

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, path: str, query: str, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> Opened:
        """POST `body` to `path`; for a stream, returns once the provider accepted the call (an
        error status raises `UpstreamError` here, before any byte went to the client)."""
        attempt = 0
        while True:
            try:
                return await self._once(path, query, body, headers)
            except UpstreamError as err:
                if attempt >= self._config.retries or not (err.status in _RETRY_STATUSES or err.code in ("upstream_unreachable",)):
                    raise
                attempt += 1
                log.info("retrying upstream messages call (%s, attempt %d)", err.status, attempt + 1)

    async def _once(self, path: str, query: str, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> Opened:
        stream = bool(body.get("stream"))
        sent = [(b"content-type", b"application/json"), (b"accept", b"text/event-stream" if stream else b"application/json"), *headers]
        url = self._config.anthropic.api_base + path + (f"?{query}" if query else "")
        response, raw = await post_json(self._client, url, sent, body, to_upstream_error)
        passed = _passed(response.headers)
        if raw is not None:
            if response.status_code >= 400:
                err = _error(response.status_code, raw)
                err.headers = passed
                raise err
            data = json_object(raw)
            if data is None:
                raise UpstreamError("the upstream sent a reply that is not JSON", status=502, type="api_error")
            return Opened(passed, raw=raw, response=data)
        return Opened(passed, events=_events(response))


async def _events(response: Reply) -> AsyncGenerator[StreamEvent, None]:
    ended = False
    async for event, payload in json_events(response, to_upstream_error):
        name = event.event or str(payload.get("type"))
        ended = ended or name in ("message_stop", "error")
        yield StreamEvent(name, event.data, payload)
    if not ended:
        raise _incomplete()
