"""Chat completions to the upstream model providers.

The model name picks the provider: `gemini-*` and `gemini/*` go to Gemini through litellm (which
translates the OpenAI request: system messages become `system_instruction`, tool calls become
functionCall parts, and a Gemini `thoughtSignature` rides in the tool call id so it comes back on
the next turn); everything else goes to the OpenAI-compatible upstream directly (`proxy.direct`).

The direct call forwards the client's body as it came, with two changes: `messages` is the prompt
memory compiled, and a stream asks for `stream_options.include_usage` (the usage chunk carries the
cached-token count memory records; the route drops that chunk when the client did not ask for it;
the client's other stream options stay). Everything else goes up as sent: `content: null` on an
assistant message that calls tools, `stream: false`, `metadata`, the `developer` role, and fields
the proxy does not know (the provider answers them; litellm dropped some, refused some with its own
400 and renamed `developer` to `system`). It sends no SDK headers, only the key (`proxy.direct`).
The chunks and the reply come back as the provider sent them, to the route's OpenAI shaping
(`proxy.chat.wire`). A stream that ends without a finish reason, or with an `error` event, raises
`UpstreamError` after what it did send.

litellm (and the openai SDK under it) is imported and configured by `load_litellm` in a worker
thread (`Upstream.start`: about 3 s on an idle machine, 6 s and more on a busy one, and ~130 MiB),
never at module import: at the app's start-up when the operator set a Gemini key, else at the first
Gemini call. The app answers meanwhile, and a Gemini call that comes before it is done waits for it
(a direct call never does). Its own retries are off
(`max_retries=0`); both paths retry connection failures, 429 and 5xx (`proxy.upstream_errors.retrying`),
and only before the first byte of a reply has reached the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

from proxy.config import UpstreamsConfig, prepare_litellm_environment
from proxy.direct import DirectOpenAI
from proxy.errors import MissingKeyError, UpstreamError
from proxy.logs import LITELLM_LOGGERS, adopt_loggers
from proxy.upstream_errors import error_from_body, provider_headers, retrying, to_upstream_error

__all__ = ["Loaded", "Target", "Upstream", "is_gemini", "load_litellm", "close_stream"]

log = logging.getLogger("memory_runtime.upstream")

# Fields of the client's body that the proxy sets itself on the litellm call.
_OWN_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "api_key", "api_base", "base_url", "max_retries", "timeout", "client"})
_CHAT_PATH = "/chat/completions"
_NO_FINISH = "a finish reason"


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


def is_gemini(model: str) -> bool:
    name = model.strip().lower()
    return name.startswith("gemini-") or name.startswith("gemini/")


@dataclass(frozen=True)
class Target:
    provider: str
    litellm_model: str
    api_base: str
    api_key: str | None


class Upstream:
    """Calls the configured OpenAI and Gemini upstreams; one instance lives on `app.state`.
    `direct` is the OpenAI-compatible upstream's client, shared with the Responses API."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._config = config
        self._loading: asyncio.Task[Loaded] | None = None
        self._timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self.direct = DirectOpenAI(config)

    def start(self) -> asyncio.Task[Loaded]:
        """Start importing litellm in a worker thread (once): at the app's start-up when a Gemini key
        is configured, else by the first Gemini call; the proxy answers (/healthz, memory routes,
        the relay, OpenAI calls) while it loads."""
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
        await self.direct.aclose()
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

    def _kwargs(self, body: dict[str, Any], messages: list[dict[str, Any]], target: Target, stream: bool) -> dict[str, Any]:
        """litellm's arguments for a Gemini call."""
        kwargs = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
        kwargs.update(
            model=target.litellm_model,
            messages=messages,
            api_base=target.api_base,
            api_key=target.api_key or "no-key",
            max_retries=0,
            timeout=self._timeout,
            # With `tools`, litellm 1.106.2 probes its MCP gateway, which imports the optional `mcp`
            # package and fails without it; we never use that gateway.
            _skip_mcp_handler=True,
            # OpenAI-only fields (user, seed, logit_bias...) would make litellm refuse the call.
            drop_params=True,
        )
        if stream:
            kwargs["stream"] = True
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
        if target.provider == "openai":
            sent = forwarded_body(body, messages)
            opened = await retrying(lambda: self.direct.post(_CHAT_PATH, sent, api_key, _finishes, _NO_FINISH),
                                    self._config.retries, "upstream call")
            return opened.response or {}, opened.headers
        loaded = await self.loaded()
        kwargs = self._kwargs(body, messages, target, stream=False)

        async def once() -> tuple[dict[str, Any], dict[str, str]]:
            try:
                response = await loaded.litellm.acompletion(**kwargs)
            except Exception as exc:  # litellm raises many unrelated classes; all map to UpstreamError
                raise to_upstream_error(exc) from None
            return _dump(response), _headers_of(response)

        return await retrying(once, self._config.retries, "upstream call")

    async def stream(self, body: dict[str, Any], messages: list[dict[str, Any]],
                     api_key: str | None) -> tuple[AsyncGenerator[dict[str, Any], None], dict[str, str]]:
        """Open a streaming completion. Returns once the first chunk has arrived (so an upstream that
        refuses the call raises `UpstreamError` here, before any header was sent to the client),
        with the provider's headers to pass back; iterating yields OpenAI chunk dicts and raises
        `UpstreamError` if the stream breaks."""
        target = self.target(str(body["model"]), api_key)
        if target.provider == "openai":
            sent = forwarded_body(body, messages, stream=True)

            async def direct() -> tuple[AsyncGenerator[dict[str, Any], None], dict[str, str]]:
                opened = await self.direct.post(_CHAT_PATH, sent, api_key, _finishes, _NO_FINISH)
                events = _checked(opened.events)
                try:
                    first = await events.__anext__()
                except BaseException:
                    await events.aclose()
                    raise
                return _prepended(first, events), opened.headers

            return await retrying(direct, self._config.retries, "upstream stream")
        loaded = await self.loaded()
        kwargs = self._kwargs(body, messages, target, stream=True)

        async def litellm() -> tuple[AsyncGenerator[dict[str, Any], None], dict[str, str]]:
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
                raise to_upstream_error(exc) from None

        return await retrying(litellm, self._config.retries, "upstream stream")


def forwarded_body(body: dict[str, Any], messages: list[dict[str, Any]], stream: bool = False) -> dict[str, Any]:
    """What the direct path sends for the client's `body`: the same fields, with memory's
    `messages` and, on a stream, `stream_options.include_usage` (see the module docstring)."""
    sent = {**body, "messages": messages}
    if stream:
        options = body.get("stream_options")
        sent["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
    return sent


def _finishes(chunk: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or [])


async def _checked(events: AsyncGenerator[dict[str, Any], None] | None) -> AsyncGenerator[dict[str, Any], None]:
    """The provider's chunks; an `error` event (OpenAI sends one when a stream fails after it
    began) raises it as `UpstreamError`."""
    if events is None:
        return
    try:
        async for chunk in events:
            if isinstance(chunk.get("error"), dict) and not chunk.get("choices"):
                raise error_from_body(502, chunk, "the upstream reported an error in the stream")
            yield chunk
    finally:
        await events.aclose()


async def _prepended(first: dict[str, Any], rest: AsyncGenerator[dict[str, Any], None]) -> AsyncGenerator[dict[str, Any], None]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


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
