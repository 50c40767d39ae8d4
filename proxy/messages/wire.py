"""Anthropic's Messages API at the wire: the request the proxy reads, its checks, and Anthropic's
error envelope.

Models use `extra="allow"`: fields the proxy does not read (tools, thinking, temperature, future
ones) pass through untouched; the raw dict is what is forwarded. The checks refuse what Anthropic
refuses before memory sees anything (so a bad request stores nothing): missing `model`,
`max_tokens` or `messages`, roles other than user/assistant, blocks without a type, and tool
pairing — every `tool_use` answered by a `tool_result` in the very next message, every
`tool_result` answering a `tool_use` of the message before — in Anthropic's words.

Errors leave this route as `{"type": "error", "error": {"type", "message"}}`, the type chosen by
the exception's class (`envelope`), never by its text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from proxy.errors import ANTHROPIC_TYPES, InvalidRequestError, MissingKeyError
from proxy.errors import anthropic_envelope as envelope
from proxy.wire import parse_json

__all__ = ["MessagesRequest", "parse_messages_request", "check_tool_pairing", "envelope", "NoAnthropicKeyError", "ANTHROPIC_TYPES"]

class NoAnthropicKeyError(MissingKeyError):
    """No `x-api-key` / `Authorization` on the request and no ANTHROPIC_API_KEY in the proxy's
    environment (Anthropic's own words; nothing is forwarded)."""

    def __init__(self) -> None:
        super().__init__()
        self.message = "x-api-key header is required"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Wire):
    role: Literal["user", "assistant"]
    content: StrictStr | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _typed_blocks(cls, value: Any) -> Any:
        if isinstance(value, list):
            for n, block in enumerate(value):
                if not isinstance(block.get("type"), str):
                    raise ValueError(f"content.{n}.type: Field required")
                kind = block["type"]
                if kind == "text" and not isinstance(block.get("text"), str):
                    raise ValueError(f"content.{n}.text: Field required")
                if kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                                               and isinstance(block.get("input"), dict)):
                    raise ValueError(f"content.{n}: a tool_use block needs id, name and an input object")
                if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
                    raise ValueError(f"content.{n}.tool_use_id: Field required")
        return value


class Metadata(_Wire):
    user_id: StrictStr | None = None


class MessagesRequest(_Wire):
    """`POST /v1/messages`: what the proxy reads; every other field passes through untouched."""

    model: StrictStr = Field(min_length=1)
    max_tokens: StrictInt = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: StrictStr | list[dict[str, Any]] | None = None
    stream: StrictBool | None = False
    metadata: Metadata | None = None


def _invalid(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return InvalidRequestError(f"{where}: {message}", param=where)


def _tool_ids(content: Any, kind: str, key: str) -> list[tuple[int, str]]:
    if not isinstance(content, list):
        return []
    return [(n, str(b.get(key))) for n, b in enumerate(content) if isinstance(b, dict) and b.get("type") == kind]


def check_tool_pairing(messages: list[dict[str, Any]]) -> None:
    """Anthropic's rule: each `tool_use` is answered in the very next message, by the user, and
    each `tool_result` answers a `tool_use` of the message just before it."""
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            before = messages[i - 1] if i > 0 and messages[i - 1].get("role") == "assistant" else {}
            asked = {u for _, u in _tool_ids(before.get("content"), "tool_use", "id")}
            for n, used in _tool_ids(message.get("content"), "tool_result", "tool_use_id"):
                if used not in asked:
                    raise InvalidRequestError(
                        f"messages.{i}.content.{n}: unexpected `tool_use_id` found in `tool_result` blocks: {used}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                        param=f"messages.{i}.content.{n}")
            continue
        uses = [u for _, u in _tool_ids(message.get("content"), "tool_use", "id")]
        if not uses or i + 1 == len(messages):
            continue
        after = messages[i + 1]
        answered = {u for _, u in _tool_ids(after.get("content"), "tool_result", "tool_use_id")} if after.get("role") == "user" else set()
        missing = [u for u in uses if u not in answered]
        if missing:
            raise InvalidRequestError(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(missing)}. "
                "Each `tool_use` block must have a corresponding `tool_result` block in the next message.", param=f"messages.{i}")


def parse_messages_request(body: bytes) -> tuple[MessagesRequest, dict[str, Any]]:
    """Validate a Messages API body; returns the model and the raw dict (what is forwarded)."""
    raw = parse_json(body)
    try:
        parsed = MessagesRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    check_tool_pairing(raw["messages"])
    return parsed, raw
