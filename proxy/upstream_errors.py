"""What an upstream's failure becomes: one `UpstreamError`, with the provider's status, its own error
fields and the headers a client reads; and the one retry rule every model call follows.

Used by every path to a provider: the direct OpenAI-compatible calls (`proxy.direct`), litellm's
calls to Gemini (`proxy.chat.upstream`, `proxy.responses.upstream`), the relay and Anthropic's
Messages API. litellm and the openai SDK raise classes of their own; the cause chain tells what
really happened (a timeout, a refused connection, the provider's error reply).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import httpx

from proxy.errors import UpstreamError

__all__ = ["to_upstream_error", "error_from_body", "provider_headers", "retryable", "retrying"]

log = logging.getLogger("memory_runtime.upstream")
T = TypeVar("T")

_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_PASSED_HEADERS = frozenset({"x-request-id", "openai-processing-ms"})
_LITELLM_PREFIX = "llm_provider-"


def _sdk_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The openai SDK's exception classes of these names (litellm's subclass them). Before the SDK
    is imported (by `load_litellm`) no exception can be one of them: then there are none. While it
    is being imported (in its worker thread, as a direct call fails) the module exists half-built:
    the classes not there yet are left out."""
    sdk = sys.modules.get("openai")
    found = (getattr(sdk, name, None) for name in names) if sdk is not None else ()
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, BaseException))


def to_upstream_error(exc: BaseException) -> UpstreamError:
    """Map a litellm / openai / httpx / aiohttp exception to an `UpstreamError` with the upstream's status."""
    if isinstance(exc, UpstreamError):
        return exc
    # litellm reports a refused connection as a 500 "InternalServerError"; the cause chain tells the truth.
    if _caused_by(exc, (*_sdk_errors("APITimeoutError"), httpx.TimeoutException, asyncio.TimeoutError)):
        return UpstreamError("upstream timed out", status=504, type="timeout", code="upstream_timeout")
    if _caused_by(exc, (httpx.TransportError, aiohttp.ClientError, ConnectionError)):
        return UpstreamError(f"upstream connection failed: {_short(exc)}", status=502, type="upstream_error", code="upstream_unreachable")
    if _caused_by(exc, _sdk_errors("APIConnectionError")):
        # With no transport error behind it, litellm's APIConnectionError means it could not build
        # the provider's request from these messages (a Gemini tool result without its call, say):
        # nothing was sent, and retrying cannot help. The request is what is wrong.
        return UpstreamError(
            f"the request cannot be sent to this provider: {_short(exc)}", status=400, type="invalid_request_error", code="provider_rejected_request"
        )
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return UpstreamError(f"upstream call failed: {_short(exc)}", status=502)
    err = error_from_body(status, _provider_body(exc), _short(exc))
    err.headers = provider_headers(_provider_response_headers(exc))
    return err


def _provider_response_headers(exc: BaseException) -> Any:
    """The provider's response headers behind a litellm exception (its synthetic responses have none)."""
    for err in _chain(exc):
        response = getattr(err, "response", None)
        if isinstance(response, httpx.Response) and response.headers:
            return response.headers
    return {}


def error_from_body(status: int, body: dict[str, Any], fallback: str) -> UpstreamError:
    """The provider's error, with its own message, type, param and code, and its HTTP status."""
    inner = _inner(body)
    return UpstreamError(
        str(inner.get("message") or fallback),
        status=status,
        # OpenAI names the kind of error `type`; Gemini names it `status` (e.g. INVALID_ARGUMENT).
        type=str(inner.get("type") or inner.get("status")) if inner.get("type") or inner.get("status") else None,
        param=inner.get("param") if isinstance(inner.get("param"), str) else None,
        code=str(inner["code"]) if inner.get("code") is not None else None,
    )


def provider_headers(headers: Any) -> dict[str, str]:
    """The provider's response headers a client reads, to pass back: `x-request-id`,
    `openai-processing-ms` and the `x-ratelimit-*` family. litellm keeps the provider's raw headers
    under an `llm_provider-` prefix next to headers of its own; only the raw ones count."""
    out: dict[str, str] = {}
    if not hasattr(headers, "items"):
        return out
    for key, value in headers.items():
        name = str(key).lower()
        raw = name.startswith(_LITELLM_PREFIX)
        name = name[len(_LITELLM_PREFIX):] if raw else name
        if name in _PASSED_HEADERS or name.startswith("x-ratelimit-"):
            if raw or name not in out:
                out[name] = str(value)
    return out


def _inner(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI and Gemini wrap error fields in {"error": {...}}; some servers send them bare."""
    nested = body.get("error")
    return nested if isinstance(nested, dict) else body


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(e, types) for e in _chain(exc))


def _provider_body(exc: BaseException) -> dict[str, Any]:
    """The provider's own error body. litellm keeps it parsed as `.body` for some OpenAI statuses
    only, and its `.response` is a synthetic one without content; the provider's real HTTP
    response rides in the `httpx.HTTPStatusError` that litellm raised from, with its body read."""
    for err in _chain(exc):
        body = getattr(err, "body", None)
        if isinstance(body, dict):
            return body
        if isinstance(err, httpx.HTTPStatusError) and (data := _response_json(err.response)):
            return data
    return _response_json(getattr(exc, "response", None)) or {"message": _short(exc)}


def _response_json(response: Any) -> dict[str, Any] | None:
    """The upstream's own JSON error body, when litellm kept the response (it does not always)."""
    if not isinstance(response, httpx.Response):
        return None
    try:
        data = response.json()
    except Exception:  # not JSON, or a synthetic response without a body
        return None
    return data if isinstance(data, dict) else None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def retryable(err: UpstreamError) -> bool:
    return err.status in _RETRY_STATUSES


async def retrying(call: Callable[[], Awaitable[T]], retries: int, what: str) -> T:
    """`call()`, again up to `retries` times while it fails with a retryable `UpstreamError`
    (a connection failure, 408, 409, 429 or 5xx). Callers run this only before the first byte
    of a reply went to the client."""
    attempt = 0
    while True:
        try:
            return await call()
        except UpstreamError as err:
            if attempt >= retries or not retryable(err):
                raise
            attempt += 1
            log.info("retrying %s (%s, attempt %d)", what, err.status, attempt + 1)
