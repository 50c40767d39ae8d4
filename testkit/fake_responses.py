"""The Responses API face of the fake upstream, as strict as the real one (`responses_rules`).

`POST /v1/responses` (JSON, or the event stream: response.created, response.in_progress,
output_item / content_part / output_text / function_call_arguments events, then
response.completed, or response.failed / response.incomplete when the reply says so), and, for
responses created with `store` not false, `GET /v1/responses/{id}`, `DELETE`, and
`GET /v1/responses/{id}/input_items`. `previous_response_id` and `item_reference` resolve only
against what it stored. Usage reports `input_tokens_details.cached_tokens` from the shared
prompt cache. Replies come from the shared `Script`; provider headers (x-request-id,
openai-processing-ms, x-ratelimit-*) as OpenAI sends them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .openai_rules import Rejection
from .responses_rules import check_conversation, check_request
from .script import HOLD_LIMIT_S, Reply, Script

__all__ = ["ResponsesApi", "PROVIDER_HEADERS"]

PROVIDER_HEADERS = MappingProxyType({"openai-processing-ms": "42", "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
                                     "x-ratelimit-reset-requests": "6ms"})


def _headers(request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id, **PROVIDER_HEADERS}


def _rejected(rejection: Rejection, request_id: str) -> JSONResponse:
    return JSONResponse(rejection.body(), status_code=rejection.status, headers=_headers(request_id))


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _for_cache(instructions: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as messages for the prompt cache: what the model reads, ids aside."""
    out = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        out.append({"role": str(item.get("role") or item.get("type")),
                    "content": {k: v for k, v in item.items() if k not in ("id", "status")}})
    return out


@dataclass
class ResponsesApi:
    script: Script
    _stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # response id -> {"response", "input"}
    _items: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/responses", self.create, methods=["POST"]),
            Route("/v1/responses/{rid}", self.get, methods=["GET"]),
            Route("/v1/responses/{rid}", self.delete, methods=["DELETE"]),
            Route("/v1/responses/{rid}/input_items", self.input_items, methods=["GET"]),
        ]

    def reset(self) -> None:
        with self._lock:
            self._stored.clear()
            self._items.clear()

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_{next(self._ids):08x}fake"

    def _conversation(self, previous: str) -> list[dict[str, Any]] | None:
        with self._lock:
            found = self._stored.get(previous)
        return None if found is None else list(found["input"]) + list(found["response"]["output"])

    def _resolve(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(item_id)

    async def create(self, request: Request) -> Response:
        rec = await self.script.record(request)
        request_id = self._new_id("req")
        try:
            body = rec.json()
        except ValueError:
            body = None
        rejected = check_request(body)
        if rejected is not None:
            return _rejected(rejected, request_id)
        assert isinstance(body, dict)
        if not rec.headers.get("authorization", "").startswith("Bearer ") or rec.headers["authorization"] == "Bearer ":
            return _rejected(Rejection("You didn't provide an API key.", status=401), request_id)
        history: list[dict[str, Any]] = []
        if body.get("previous_response_id") is not None:
            found = self._conversation(str(body["previous_response_id"]))
            if found is None:
                return _rejected(Rejection(f"Previous response with id '{body['previous_response_id']}' not found.",
                                           param="previous_response_id", code="previous_response_not_found"), request_id)
            history = found
        new = [{"role": "user", "content": body["input"]}] if isinstance(body.get("input"), str) else list(body.get("input") or [])
        conversation, rejected = check_conversation(history + new, self._resolve)
        if rejected is not None:
            return _rejected(rejected, request_id)
        reply = self.script.next_reply(_last_user_text(conversation))
        if delay := reply.delay_seconds + self.script.latency_s:
            await asyncio.sleep(delay)
        if reply.error_status is not None:
            error = {"message": reply.error_message, "type": "fake_error", "param": None, "code": "fake_code"}
            return JSONResponse({"error": error}, status_code=reply.error_status, headers=_headers(request_id))
        namespace = f"responses|{rec.headers.get('authorization', '')}|{body.get('prompt_cache_key') or ''}"
        hit = self.script.cache.lookup(namespace, self.script.cache.render(_for_cache(body.get("instructions"), conversation),
                                                                           body.get("tools")))
        response = self._response(body, reply, hit.prompt_tokens, hit.cached_tokens)
        rec.reported = response["usage"]
        if body.get("store") is not False:
            self._remember(response, conversation, new)
        if not body.get("stream"):
            return JSONResponse(response, headers=_headers(request_id))
        return StreamingResponse(self._events(response, reply), media_type="text/event-stream", headers=_headers(request_id))

    def _response(self, body: dict[str, Any], reply: Reply, prompt_tokens: int, cached_tokens: int) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if reply.text is not None:
            output.append({"id": self._new_id("msg"), "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}]})
        for call in reply.tool_calls:
            output.append({"id": self._new_id("fc"), "type": "function_call", "status": "completed", "call_id": call.id,
                           "name": call.name, "arguments": call.arguments_json()})
        status = reply.responses_status or "completed"
        completion = len(reply.text or "") // 4 + 1
        return {
            "id": self._new_id("resp"), "object": "response", "created_at": int(time.time()), "status": status,
            "background": False, "error": {"code": "server_error", "message": "fake failure"} if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": None,
            "model": body["model"], "output": output, "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"), "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": None, "summary": None}, "safety_identifier": None, "service_tier": "default",
            "store": body.get("store") is not False, "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []), "top_logprobs": 0, "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached_tokens}, "output_tokens": completion,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt_tokens + completion},
            "user": body.get("user"), "metadata": body.get("metadata", {}),
        }

    def _remember(self, response: dict[str, Any], conversation: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        with self._lock:
            self._stored[response["id"]] = {"response": response, "input": conversation}
            for item in new + response["output"]:
                if isinstance(item.get("id"), str):
                    self._items[item["id"]] = item

    async def _events(self, response: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(seq), **fields})}\n\n".encode()

        shell = {**response, "status": "in_progress", "output": [], "usage": None, "error": None, "incomplete_details": None}
        yield event("response.created", response=shell)
        yield event("response.in_progress", response=shell)
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                yield event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
                for n, piece in enumerate(self.script.pieces(text)):
                    if reply.die_after_chunks is not None and n >= reply.die_after_chunks:
                        await asyncio.sleep(0)
                        raise ConnectionAbortedError("fake upstream dies mid-stream")
                    if reply.end_after_chunks is not None and n >= reply.end_after_chunks:
                        return  # a clean end of the response: no terminal event
                    if n == 1 and reply.hold is not None:
                        await asyncio.to_thread(reply.hold.wait, HOLD_LIMIT_S)
                    yield event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0, delta=piece,
                                logprobs=[])
                yield event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[])
                yield event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                            part={**part, "text": text})
            else:
                yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""})
                half = len(item["arguments"]) // 2
                for piece in (item["arguments"][:half], item["arguments"][half:]):
                    yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
                yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index, name=item["name"],
                            arguments=item["arguments"])
            yield event("response.output_item.done", output_index=index, item=item)
        yield event(f"response.{response['status']}", response=response)

    async def _stored_or_404(self, request: Request, remove: bool = False) -> tuple[str, dict[str, Any] | None]:
        await self.script.record(request)
        rid = str(request.path_params["rid"])
        with self._lock:
            found = self._stored.pop(rid, None) if remove else self._stored.get(rid)
        return rid, found

    def _missing(self, rid: str) -> Response:
        return _rejected(Rejection(f"Response with id '{rid}' not found.", status=404), self._new_id("req"))

    async def get(self, request: Request) -> Response:
        rid, found = await self._stored_or_404(request)
        if found is None:
            return self._missing(rid)
        return JSONResponse(found["response"], headers=_headers(self._new_id("req")))

    async def delete(self, request: Request) -> Response:
        rid, found = await self._stored_or_404(request, remove=True)
        if found is None:
            return self._missing(rid)
        return JSONResponse({"id": rid, "object": "response.deleted", "deleted": True}, headers=_headers(self._new_id("req")))

    async def input_items(self, request: Request) -> Response:
        rid, found = await self._stored_or_404(request)
        if found is None:
            return self._missing(rid)
        # OpenAI lists easy input messages as message items with ids of their own.
        data = [item if "type" in item else {"type": "message", "id": f"msg_in{n}", **item} for n, item in enumerate(reversed(found["input"]))]
        return JSONResponse({"object": "list", "data": data, "first_id": data[0].get("id") if data else None,
                             "last_id": data[-1].get("id") if data else None, "has_more": False}, headers=_headers(self._new_id("req")))
