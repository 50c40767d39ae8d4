"""Turn an upstream reply (a full response or a stream of chunks) into the assistant message to store.

The stored message keeps what the next turn must be able to send back: text, tool calls with their
ids (a Gemini thought signature rides in the id and in `provider_specific_fields`), and the
message-level `provider_specific_fields`. Delta fragments of a tool call are joined by `index`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ReplyAssembler", "clean_assistant_message", "first_message", "is_usage_chunk"]


def _clean_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    out: dict[str, Any] = {
        "id": call.get("id") or "",
        "type": call.get("type") or "function",
        "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""},
    }
    if call.get("provider_specific_fields"):
        out["provider_specific_fields"] = call["provider_specific_fields"]
    return out


def clean_assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    """The storable form of an assistant message from a response (litellm adds empty extras)."""
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = [_clean_tool_call(c) for c in message["tool_calls"]]
    if message.get("refusal"):
        out["refusal"] = message["refusal"]
    if message.get("provider_specific_fields"):
        fields = {k: v for k, v in message["provider_specific_fields"].items() if v is not None}
        if fields:
            out["provider_specific_fields"] = fields
    return out


def first_message(response: dict[str, Any]) -> dict[str, Any] | None:
    """The assistant message of choice 0 of a non-streaming response, cleaned; None if absent."""
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        return None
    return clean_assistant_message(choices[0]["message"])


def is_usage_chunk(chunk: dict[str, Any]) -> bool:
    """The final chunk of a stream asked for with `include_usage`: usage and no content."""
    if not isinstance(chunk.get("usage"), dict):
        return False
    return all(not (c.get("delta") or {}) and not c.get("finish_reason") for c in chunk.get("choices") or [] if isinstance(c, dict))


@dataclass
class ReplyAssembler:
    """Accumulates choice 0 of a stream of chat.completion.chunk dicts."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    provider_fields: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._tool_delta(call)
            if isinstance(delta.get("provider_specific_fields"), dict):
                self.provider_fields.update({k: v for k, v in delta["provider_specific_fields"].items() if v is not None})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _tool_delta(self, call: dict[str, Any]) -> None:
        index = int(call.get("index", len(self.tool_calls)))
        slot = self.tool_calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] += function["name"]
        if function.get("arguments"):
            slot["function"]["arguments"] += function["arguments"]
        if isinstance(call.get("provider_specific_fields"), dict):
            slot.setdefault("provider_specific_fields", {}).update(call["provider_specific_fields"])

    def message(self) -> dict[str, Any]:
        text = "".join(self.text)
        msg: dict[str, Any] = {"role": "assistant", "content": text if text or not self.tool_calls else None}
        if self.tool_calls:
            msg["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.provider_fields:
            msg["provider_specific_fields"] = dict(self.provider_fields)
        return msg
