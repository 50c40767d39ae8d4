"""Pydantic models of what arrives over the wire, and nothing else.

Models use `extra="allow"` so OpenAI fields the proxy does not know (temperature, tools, seed,
response_format, future ones...) pass through untouched. Validation only rejects what would make the
request unusable (missing model/messages, wrong types); the raw dict is what gets forwarded.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from proxy.errors import InvalidRequestError

__all__ = ["ChatMessage", "ChatCompletionRequest", "ResponsesRequest", "CompileRequest", "parse_json", "parse_chat_request",
           "parse_responses_request", "parse_compile_request"]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(WireModel):
    role: Role
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: StrictStr | None = None

    @model_validator(mode="after")
    def _content_unless_assistant(self) -> ChatMessage:
        # OpenAI lets only an assistant message (with tool calls) go without content; litellm fails
        # locally on the others, which would surface as a misleading 502 instead of a 400.
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self


class StreamOptions(WireModel):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(WireModel):
    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None


class ResponsesRequest(WireModel):
    """`POST /v1/responses`: what the proxy reads; every other field passes through untouched."""

    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[dict[str, Any]] | None = None
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = None
    stream: StrictBool | None = False
    store: StrictBool | None = None
    user: StrictStr | None = None


class CompileRequest(WireModel):
    user_message: StrictStr | dict[str, Any] | list[dict[str, Any]]
    budget_tokens: StrictInt | None = Field(default=None, gt=0)
    model: StrictStr = Field(default="gpt-4o-mini", min_length=1)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body, raising `InvalidRequestError` for anything else: a body that is
    not strict UTF-8 (json.loads would let raw surrogate bytes through as lone surrogates), invalid
    JSON, NaN/Infinity or out-of-range numbers, lone surrogate escapes (no upstream can encode
    them) and nesting deeper than the parser's recursion limit (a RecursionError, not a 500)."""
    try:
        data = json.loads(body.decode("utf-8-sig"), parse_constant=_no_constant, parse_float=_finite)
        if _SURROGATE_ESCAPE.search(body):
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return data


def _invalid(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return InvalidRequestError(f"invalid request: {param or 'body'}: {first.get('msg', 'invalid value')}", param=param)


Parsed = TypeVar("Parsed", bound=WireModel)


def _parse(model: type[Parsed], body: bytes) -> tuple[Parsed, dict[str, Any]]:
    raw = parse_json(body)
    try:
        return model.model_validate(raw), raw
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_chat_request(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """Validate a chat completion body; returns the model and the raw dict (what is forwarded)."""
    return _parse(ChatCompletionRequest, body)


def parse_responses_request(body: bytes) -> tuple[ResponsesRequest, dict[str, Any]]:
    """Validate a Responses API body; returns the model and the raw dict (what is forwarded)."""
    return _parse(ResponsesRequest, body)


def parse_compile_request(body: bytes) -> CompileRequest:
    try:
        return CompileRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        raise _invalid(exc) from None
