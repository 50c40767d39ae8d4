"""Calls to the OpenAI-compatible upstream, made directly: the route's body posted as JSON with one
shared aiohttp session (keep-alive, no cookie jar), the reply's JSON or its event stream read back as
the provider sent it.

Both model APIs take this path for the `openai` upstream (every model that is not Gemini's, with
the configured `upstreams.openai.api_base` and key): chat completions (`proxy.chat.upstream`) and
the Responses API (`proxy.responses.upstream`); Gemini keeps litellm. The session is
`proxy.outbound.ModelClient` (aiohttp). litellm's request and response
transforms cost ~12 ms of CPU per chat call against ~2 ms for the POST itself, and changed what went
up (see `proxy.chat.upstream` for what the chat path now forwards as sent).

Sent: the body as the route built it, as compact JSON; `Content-Type: application/json`; `Accept`
(`text/event-stream` when the body asks for a stream); `Authorization: Bearer <key>` with the
caller's key, else OPENAI_API_KEY. No other header of the client's, and no SDK headers.
Read back: on a status >= 400 the provider's error fields (`error_from_body`) and the headers a
client reads (`provider_headers`), raised as `UpstreamError`; a reply that is not a JSON object is a
502; a stream yields each `data:` event that is a JSON object (`[DONE]` and keep-alive comments are
not) and, when it ends before an event that the caller's `ended` accepts, raises `UpstreamError`
(`upstream_incomplete`). Transport failures and timeouts map as everywhere (`to_upstream_error`).
Retries are the caller's (`proxy.upstream_errors.retrying`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from proxy.config import UpstreamsConfig
from proxy.errors import UpstreamError
from proxy.outbound import ModelClient, Reply, json_events, json_object, post_json
from proxy.upstream_errors import error_from_body, provider_headers, to_upstream_error

__all__ = ["DirectOpenAI", "Opened"]

Ended = Callable[[dict[str, Any]], bool]


@dataclass
class Opened:
    """A started call: the provider headers to pass back, and the reply (a dict) or its events."""

    headers: dict[str, str]
    response: dict[str, Any] | None = None
    events: AsyncGenerator[dict[str, Any], None] | None = None


class DirectOpenAI:
    """The OpenAI-compatible upstream; one instance (one connection pool) serves chat and Responses."""

    def __init__(self, config: UpstreamsConfig) -> None:
        self._base = config.openai.api_base
        self._env_key = config.openai.api_key
        self._client = ModelClient(config.timeout_seconds, config.connect_timeout_seconds)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, path: str, body: dict[str, Any], api_key: str | None, ended: Ended, unfinished: str) -> Opened:
        """POST `body` to `api_base + path`. For a stream, returns once the provider accepted the call
        (an error status raises here, before any byte went to the client); its events end with
        `UpstreamError` when none of them was one that `ended` accepts (`unfinished` says what
        was missing)."""
        stream = bool(body.get("stream"))
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        key = api_key or self._env_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        response, raw = await post_json(self._client, self._base + path, headers, body, to_upstream_error)
        passed = provider_headers(response.headers)
        if raw is None:
            return Opened(passed, events=_events(response, ended, unfinished))
        data = json_object(raw)
        if response.status_code >= 400:
            err = error_from_body(response.status_code, data or {}, raw[:200].decode("utf-8", "replace") or f"upstream answered {response.status_code}")
            err.headers = passed
            raise err
        if data is None:
            raise UpstreamError("the upstream sent a reply that is not JSON", status=502, type="upstream_error")
        return Opened(passed, response=data)


async def _events(response: Reply, ended: Ended, unfinished: str) -> AsyncGenerator[dict[str, Any], None]:
    finished = False
    async for _, data in json_events(response, to_upstream_error):
        finished = finished or ended(data)
        yield data
    if not finished:
        raise UpstreamError(f"the upstream stream ended without {unfinished} (the reply is incomplete)",
                            status=502, type="upstream_error", code="upstream_incomplete")
