"""Chat completions to the upstream model providers, through litellm.

The model name picks the provider: `gemini-*` and `gemini/*` go to Gemini (litellm translates the
OpenAI request: system messages become `system_instruction`, tool calls become functionCall parts,
and a Gemini `thoughtSignature` rides in the tool call id so it comes back on the next turn);
everything else goes to the OpenAI-compatible upstream. Request fields the proxy does not use are
passed through untouched.

litellm (and the openai SDK under it) is imported and configured by `load_litellm` in a worker
thread that the app's start-up launches (`Upstream.start`: about 3 s on an idle machine, 6 s and more
on a busy one), never at module import; the app answers meanwhile, and a model call that comes
before it is done waits for it. Its own retries are off
(`max_retries=0`); `Upstream` retries connection failures, 429 and 5xx itself, and only before the
first byte of a reply has reached the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

from proxy.config import UpstreamsConfig, prepare_litellm_environment
from proxy.errors import MissingKeyError, UpstreamError
from proxy.logs import LITELLM_LOGGERS, adopt_loggers
from proxy.outbound import outbound_client

__all__ = ["Loaded", "Target", "Upstream", "is_gemini", "load_litellm", "to_upstream_error", "error_from_body", "provider_headers", "retryable", "close_stream"]

log = logging.getLogger("memory_runtime.upstream")

# Fields of the client's body that the proxy sets itself on the litellm call.
_OWN_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "api_key", "api_base", "base_url", "max_retries", "timeout", "client"})
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_PASSED_HEADERS = frozenset({"x-request-id", "openai-processing-ms"})
_LITELLM_PREFIX = "llm_provider-"


@dataclass(frozen=True)
class Loaded:
    """litellm, configured, and the openai SDK it is built on."""

    litellm: ModuleType
    sdk: ModuleType


def load_litellm() -> Loaded:
    """Import and configure litellm (and the openai SDK, which it imports anyway), at app start-up.
    Imported here rather than at the top of the module because litellm reads its environment during
    import (without the variable that `prepare_litellm_environment` sets, the import fetches a model
    cost map over the network) and because the two imports cost ~3 s that nothing but a running
    proxy should pay, and that it pays in a worker thread while it already answers."""
    prepare_litellm_environment()
    import litellm
    import openai

    litellm.suppress_debug_info = True
    adopt_loggers(LITELLM_LOGGERS)  # it attaches its own stderr handlers on import
    return Loaded(litellm, openai)


def _sdk_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The openai SDK's exception classes of these names (litellm's subclass them). Before the SDK
    is imported (by `load_litellm`) no exception can be one of them: then there are none."""
    sdk = sys.modules.get("openai")
    return tuple(getattr(sdk, name) for name in names) if sdk is not None else ()


def is_gemini(model: str) -> bool:
    name = model.strip().lower()
    return name.startswith("gemini-") or name.startswith("gemini/")


@dataclass(frozen=True)
class Target:
    provider: str
    litellm_model: str
    api_base: str
    api_key: str | None


def to_upstream_error(exc: BaseException) -> UpstreamError:
    """Map a litellm / openai / httpx exception to an `UpstreamError` with the upstream's status."""
    if isinstance(exc, UpstreamError):
        return exc
    # litellm reports a refused connection as a 500 "InternalServerError"; the cause chain tells the truth.
    if _caused_by(exc, (*_sdk_errors("APITimeoutError"), httpx.TimeoutException, asyncio.TimeoutError)):
        return UpstreamError("upstream timed out", status=504, type="timeout", code="upstream_timeout")
    if _caused_by(exc, (httpx.TransportError, ConnectionError)):
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


class Upstream:
    """Calls the configured OpenAI and Gemini upstreams; one instance lives on `app.state`."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._config = config
        self._loading: asyncio.Task[Loaded] | None = None
        self._timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        # litellm's OpenAI clients (one per key, shared by every caller with that key: tenants on the
        # environment key, say) keep httpx's cookie jar; ours keeps none (`proxy.outbound`).
        self._http = outbound_client(self._timeout)

    def start(self) -> asyncio.Task[Loaded]:
        """Start importing litellm in a worker thread (once); called by the app's start-up, so that
        the proxy answers (/healthz, memory routes, the relay) while it loads."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(asyncio.to_thread(load_litellm))
        return self._loading

    async def loaded(self) -> Loaded:
        """litellm and the openai SDK, once their import has finished."""
        return await asyncio.shield(self.start())

    async def litellm(self) -> ModuleType:
        """The configured litellm module, once its import has finished."""
        return (await self.loaded()).litellm

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()  # the import finishes in its thread; nobody waits for it

    def require_key(self, model: str, api_key: str | None) -> None:
        """Raise `MissingKeyError` (OpenAI's 401) when neither the request nor the proxy's
        environment has a key for the model's provider: the call is not sent at all."""
        if not self.target(model, api_key).api_key:
            raise MissingKeyError()

    def target(self, model: str, api_key: str | None) -> Target:
        if is_gemini(model):
            name = model.split("/", 1)[1] if model.lower().startswith("gemini/") else model
            return Target("gemini", f"gemini/{name}", self._config.gemini.api_base, api_key or self._config.gemini.api_key)
        return Target("openai", f"openai/{model}", self._config.openai.api_base, api_key or self._config.openai.api_key)

    def _kwargs(self, sdk: ModuleType, body: dict[str, Any], messages: list[dict[str, Any]], target: Target, stream: bool) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
        kwargs.update(
            model=target.litellm_model,
            messages=messages,
            api_base=target.api_base,
            # litellm insists on some key; a keyless local upstream gets a placeholder, never stored.
            api_key=target.api_key or "no-key",
            max_retries=0,
            timeout=self._timeout,
            # With `tools`, litellm 1.106.2 probes its MCP gateway, which imports the optional `mcp`
            # package and fails without it; we never use that gateway.
            _skip_mcp_handler=True,
        )
        if target.provider == "openai":
            kwargs["client"] = sdk.AsyncOpenAI(api_key=target.api_key or "no-key", base_url=target.api_base, http_client=self._http,
                                                  max_retries=0, timeout=self._timeout)
        if target.provider == "gemini":
            # OpenAI-only fields (user, seed, logit_bias...) would make litellm refuse the call.
            kwargs["drop_params"] = True
        if stream:
            kwargs["stream"] = True
            # Always: the usage chunk carries the provider's cached-token count, which memory records
            # (the route drops that chunk when the client did not ask for it).
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    def with_cache_key(self, body: dict[str, Any], session_id: str) -> dict[str, Any]:
        """The body with a per-session `prompt_cache_key` for OpenAI when the client set none (and
        the operator left it on): one session's prompts then reach the same cache. A client's own
        key passes through untouched."""
        if not self._config.openai.prompt_cache_key or is_gemini(str(body.get("model", ""))) or "prompt_cache_key" in body:
            return body
        digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:32]
        return {**body, "prompt_cache_key": f"memory-runtime-{digest}"}

    async def complete(self, body: dict[str, Any], messages: list[dict[str, Any]],
                       api_key: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        """One non-streaming completion; returns the OpenAI-format response as a dict, and the
        provider's headers to pass back (`provider_headers`)."""
        target = self.target(str(body["model"]), api_key)
        loaded = await self.loaded()
        kwargs = self._kwargs(loaded.sdk, body, messages, target, stream=False)
        attempt = 0
        while True:
            try:
                response = await loaded.litellm.acompletion(**kwargs)
                return _dump(response), _headers_of(response)
            except Exception as exc:  # litellm raises many unrelated classes; all map to UpstreamError
                err = to_upstream_error(exc)
                if attempt >= self._config.retries or not retryable(err):
                    raise err from None
                attempt += 1
                log.info("retrying upstream call (%s, attempt %d)", err.status, attempt + 1)

    async def stream(self, body: dict[str, Any], messages: list[dict[str, Any]],
                     api_key: str | None) -> tuple[AsyncGenerator[dict[str, Any], None], dict[str, str]]:
        """Open a streaming completion. Returns once the first chunk has arrived (so an upstream that
        refuses the call raises `UpstreamError` here, before any header was sent to the client),
        with the provider's headers to pass back; iterating yields OpenAI chunk dicts and raises
        `UpstreamError` if the stream breaks."""
        target = self.target(str(body["model"]), api_key)
        loaded = await self.loaded()
        kwargs = self._kwargs(loaded.sdk, body, messages, target, stream=True)
        attempt = 0
        while True:
            wrapper: Any = None
            try:
                wrapper = await loaded.litellm.acompletion(**kwargs)
                first = await wrapper.__anext__()
                return _chunks(wrapper, first), _headers_of(wrapper)
            except StopAsyncIteration:
                await close_stream(wrapper)
                return _chunks(None, None), _headers_of(wrapper)
            except Exception as exc:
                await close_stream(wrapper)
                err = to_upstream_error(exc)
                if attempt >= self._config.retries or not retryable(err):
                    raise err from None
                attempt += 1
                log.info("retrying upstream stream (%s, attempt %d)", err.status, attempt + 1)


async def close_stream(wrapper: Any) -> None:
    """Release the upstream connection of a litellm stream (also when the client went away)."""
    close = getattr(wrapper, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a broken stream may fail again; nothing left to save
            log.debug("closing an upstream stream failed", exc_info=True)


def _truncated(wrapper: Any, chunk: dict[str, Any]) -> bool:
    """A finish reason that litellm made up: when a provider's stream simply stops (no finish reason,
    no [DONE]), litellm still ends it with finish_reason "stop". Its own record of what the provider
    sent tells the two apart."""
    finishing = any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or [])
    received = getattr(wrapper, "received_finish_reason", None) or getattr(wrapper, "intermittent_finish_reason", None)
    return finishing and received is None


async def _chunks(wrapper: Any, first: Any) -> AsyncGenerator[dict[str, Any], None]:
    if wrapper is None:
        return
    try:
        chunk = _dump(first, exclude_none=True)
        while True:
            if _truncated(wrapper, chunk):
                raise UpstreamError("the upstream stream ended without a finish reason (the reply is incomplete)",
                                    status=502, type="upstream_error", code="upstream_incomplete")
            yield chunk
            try:
                chunk = _dump(await wrapper.__anext__(), exclude_none=True)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise to_upstream_error(exc) from None
    finally:
        await close_stream(wrapper)


def _headers_of(obj: Any) -> dict[str, str]:
    """The provider's headers litellm kept with a response or a stream."""
    hidden = getattr(obj, "_hidden_params", None)
    return provider_headers(hidden.get("additional_headers") or {}) if isinstance(hidden, dict) else {}


def _dump(obj: Any, exclude_none: bool = False) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump(exclude_none=exclude_none)
    return dumped
