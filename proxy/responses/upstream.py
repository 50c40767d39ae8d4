"""Responses API calls to the upstream providers.

OpenAI models: the proxy posts the body itself (httpx) to the OpenAI-compatible upstream and reads
its JSON or its event stream (`proxy.sse.SSEDecoder`). litellm's native Responses path re-encodes
what it carries: it replaces the provider's response ids with ids of its own (which the provider
then does not know on `GET /v1/responses/{id}`), drops request fields it has no parameter for,
re-serialises input items and adds fields of its own to replies, and turns a `response.failed`
event into an exception. Posting the body as it is keeps both directions exactly OpenAI's.

Gemini models: litellm's Responses API, which bridges to Gemini's chat through its own
translation (`is_gemini`); what it returns is cut down to OpenAI's Response shape
(`proxy.responses.wire`).

Both retry connection failures, 429 and 5xx (`upstreams.retries`) before the first byte went to
the client. A stream that ends without a terminal event (`response.completed`, `.failed`,
`.incomplete`, `error`) raises `UpstreamError` (`upstream_incomplete`). Known gap: a Gemini stream
that ends cleanly without a `finishReason` still gets a `response.completed` from litellm's bridge
(its Gemini reader marks every chunk finished, so nothing tells it apart; the chat route has the
same gap); a Gemini stream whose connection drops is caught.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from proxy.config import UpstreamsConfig
from proxy.errors import UpstreamError
from proxy.outbound import outbound_client, post_json
from proxy.responses.wire import clean_event, clean_response
from proxy.sse import SSEDecoder
from proxy.chat.upstream import Upstream, close_stream, error_from_body, is_gemini, provider_headers, retryable, to_upstream_error

__all__ = ["ResponsesUpstream", "Opened", "TERMINAL_EVENTS"]

log = logging.getLogger("memory_runtime.responses")
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
# Body fields the proxy sets itself on the litellm call for Gemini.
_OWN_FIELDS = frozenset({"model", "input", "stream", "api_key", "api_base", "base_url", "max_retries", "timeout"})


@dataclass
class Opened:
    """A started call: the provider headers to pass back, and the reply (a dict) or its events."""

    headers: dict[str, str]
    response: dict[str, Any] | None = None
    events: AsyncGenerator[dict[str, Any], None] | None = None


def _incomplete() -> UpstreamError:
    return UpstreamError("the upstream stream ended without a terminal event (the response is incomplete)",
                         status=502, type="upstream_error", code="upstream_incomplete")


class ResponsesUpstream:
    """One instance lives on `app.state`; owns the httpx client for OpenAI's Responses API."""

    def __init__(self, config: UpstreamsConfig, upstream: Upstream) -> None:
        self._config = config
        self._upstream = upstream
        self._timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self._client = outbound_client(self._timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, body: dict[str, Any], api_key: str | None) -> Opened:
        """Send `body`; for a stream, returns once the provider accepted the call (an error status
        raises `UpstreamError` here, before any byte went to the client)."""
        attempt = 0
        while True:
            try:
                if is_gemini(str(body["model"])):
                    return await self._litellm(body, api_key)
                return await self._openai(body, api_key)
            except UpstreamError as err:
                if attempt >= self._config.retries or not retryable(err):
                    raise
                attempt += 1
                log.info("retrying upstream responses call (%s, attempt %d)", err.status, attempt + 1)

    # -- OpenAI: the body as it is ------------------------------------------------------------------
    async def _openai(self, body: dict[str, Any], api_key: str | None) -> Opened:
        key = api_key or self._config.openai.api_key
        headers = {"content-type": "application/json", "accept": "text/event-stream" if body.get("stream") else "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        response, raw = await post_json(self._client, self._config.openai.api_base + "/responses", headers, body, to_upstream_error)
        passed = provider_headers(response.headers)
        if raw is not None:
            data = _json(raw)
            if response.status_code >= 400:
                err = error_from_body(response.status_code, data or {}, raw[:200].decode("utf-8", "replace"))
                err.headers = passed
                raise err
            if data is None:
                raise UpstreamError("the upstream sent a reply that is not JSON", status=502, type="upstream_error")
            return Opened(passed, response=data)
        return Opened(passed, events=_events(response))

    # -- Gemini: litellm's bridge to chat -----------------------------------------------------------
    async def _litellm(self, body: dict[str, Any], api_key: str | None) -> Opened:
        target = self._upstream.target(str(body["model"]), api_key)
        kwargs = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
        kwargs.update(model=target.litellm_model, input=body.get("input") or "", api_base=target.api_base,
                      api_key=target.api_key or "", max_retries=0, timeout=self._timeout, _skip_mcp_handler=True,
                      drop_params=True)
        if body.get("stream"):
            kwargs["stream"] = True
        try:
            result = await (await self._upstream.litellm()).aresponses(**kwargs)
        except Exception as exc:  # litellm raises many unrelated classes; all map to UpstreamError
            raise to_upstream_error(exc) from None
        if not body.get("stream"):
            return Opened({}, response=clean_response(_dump(result)))
        return Opened({}, events=_litellm_events(result))


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _events(response: httpx.Response) -> AsyncGenerator[dict[str, Any], None]:
    decoder = SSEDecoder()
    ended = False
    try:
        async for chunk in response.aiter_raw():
            for event in decoder.feed(chunk):
                data = _json(event.data.encode("utf-8"))
                if data is None:
                    continue  # a keep-alive or a line that is not an event of the API
                ended = ended or data.get("type") in TERMINAL_EVENTS
                yield data
        for event in decoder.close():
            data = _json(event.data.encode("utf-8"))
            if data is not None:
                ended = ended or data.get("type") in TERMINAL_EVENTS
                yield data
    except httpx.HTTPError as exc:
        raise to_upstream_error(exc) from None
    finally:
        await response.aclose()
    if not ended:
        raise _incomplete()


async def _litellm_events(stream: Any) -> AsyncGenerator[dict[str, Any], None]:
    ended = False
    try:
        async for event in stream:
            data = clean_event(_dump(event))
            ended = ended or data.get("type") in TERMINAL_EVENTS
            yield data
    except UpstreamError:
        raise
    except Exception as exc:
        raise to_upstream_error(exc) from None
    finally:
        await close_stream(stream)
    if not ended:
        raise _incomplete()


def _dump(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump(mode="json", exclude_none=False)
    return dumped
