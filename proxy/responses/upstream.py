"""Responses API calls to the upstream providers.

OpenAI models: the body goes as it is to the OpenAI-compatible upstream (`proxy.direct`, the client
and connection pool the chat route uses too), and its JSON or its event stream comes back as sent. litellm's native Responses path re-encodes
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

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from proxy.chat.upstream import Upstream, close_stream, is_gemini
from proxy.config import UpstreamsConfig
from proxy.direct import Opened
from proxy.errors import UpstreamError
from proxy.responses.wire import clean_event, clean_response
from proxy.upstream_errors import retrying, to_upstream_error

__all__ = ["ResponsesUpstream", "Opened", "TERMINAL_EVENTS"]

TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
# Body fields the proxy sets itself on the litellm call for Gemini.
_OWN_FIELDS = frozenset({"model", "input", "stream", "api_key", "api_base", "base_url", "max_retries", "timeout"})


def _incomplete() -> UpstreamError:
    return UpstreamError("the upstream stream ended without a terminal event (the response is incomplete)",
                         status=502, type="upstream_error", code="upstream_incomplete")


class ResponsesUpstream:
    """One instance lives on `app.state`; OpenAI calls go through the chat upstream's direct client."""

    def __init__(self, config: UpstreamsConfig, upstream: Upstream) -> None:
        self._config = config
        self._upstream = upstream
        self._timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)

    async def call(self, body: dict[str, Any], api_key: str | None) -> Opened:
        """Send `body`; for a stream, returns once the provider accepted the call (an error status
        raises `UpstreamError` here, before any byte went to the client)."""
        if is_gemini(str(body["model"])):
            return await retrying(lambda: self._litellm(body, api_key), self._config.retries, "upstream responses call")
        return await retrying(lambda: self._upstream.direct.post("/responses", body, api_key, _terminal, "a terminal event"),
                              self._config.retries, "upstream responses call")

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


def _terminal(event: dict[str, Any]) -> bool:
    return event.get("type") in TERMINAL_EVENTS


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
