"""OpenAI's Response object and stream events, as the API reference documents them, for replies
the proxy did not receive from OpenAI itself (litellm's bridge to Gemini builds them, with
fields of its own: `cost`, `*_details` that OpenAI does not send, null placeholders).

`clean_response` / `clean_event` keep only OpenAI's fields, recursively, by type: a client that
appends `response.output` to its next `input` (the documented pattern) must not send back fields
OpenAI refuses. Item and event types this module does not know pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["clean_response", "clean_event", "RESPONSE_FIELDS", "USAGE_SHAPE"]

# field -> None (kept as is) | a Shape (an object) | (Shape,) (a list of objects); read-only.
Shape = Mapping[str, Any]


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


USAGE_SHAPE: Shape = _frozen({
    "input_tokens": None, "input_tokens_details": {"cached_tokens": None}, "output_tokens": None,
    "output_tokens_details": {"reasoning_tokens": None}, "total_tokens": None,
})
_PART: Shape = _frozen({"type": None, "text": None, "annotations": None, "logprobs": None, "refusal": None})
_ITEMS: Mapping[str, Shape] = _frozen({
    "message": {"id": None, "type": None, "status": None, "role": None, "content": [dict(_PART)], "phase": None},
    "function_call": {"id": None, "type": None, "status": None, "call_id": None, "name": None, "arguments": None},
    "reasoning": {"id": None, "type": None, "summary": None, "content": None, "encrypted_content": None, "status": None},
})
RESPONSE_FIELDS = tuple(
    "id object created_at status background completed_at conversation error incomplete_details instructions "
    "max_output_tokens max_tool_calls metadata model output parallel_tool_calls previous_response_id prompt "
    "prompt_cache_key prompt_cache_retention reasoning safety_identifier service_tier store temperature text "
    "tool_choice tools top_logprobs top_p truncation usage user".split()
)
_EVENT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "response.output_item.added": ("output_index", "item"),
    "response.output_item.done": ("output_index", "item"),
    "response.content_part.added": ("item_id", "output_index", "content_index", "part"),
    "response.content_part.done": ("item_id", "output_index", "content_index", "part"),
    "response.output_text.delta": ("item_id", "output_index", "content_index", "delta", "logprobs"),
    "response.output_text.done": ("item_id", "output_index", "content_index", "text", "logprobs"),
    "response.function_call_arguments.delta": ("item_id", "output_index", "delta"),
    "response.function_call_arguments.done": ("item_id", "output_index", "name", "arguments"),
    "error": ("code", "message", "param"),
})


def _shaped(value: Any, shape: Shape) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in shape.items():
        if key not in value or value[key] is None:
            continue  # inside items and parts OpenAI leaves unset fields out
        inner = value[key]
        if isinstance(sub, Mapping):
            out[key] = _shaped(inner, sub)
        elif isinstance(sub, tuple) and isinstance(inner, list):
            out[key] = [_shaped(v, sub[0]) for v in inner]
        else:
            out[key] = inner
    return out


def _item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    shape = _ITEMS.get(str(item.get("type")))
    if shape is None:
        return {k: v for k, v in item.items() if v is not None}
    out = _shaped(item, shape)
    if item.get("type") == "message":
        out.setdefault("content", [])
        for part in out["content"]:
            if part.get("type") == "output_text":
                part.setdefault("annotations", [])
                part.setdefault("logprobs", [])
    return out


def clean_response(response: dict[str, Any]) -> dict[str, Any]:
    """A Response object with OpenAI's top-level fields only (nulls kept, as OpenAI sends them)."""
    out = {k: response.get(k) for k in RESPONSE_FIELDS if k in response}
    out["object"] = "response"
    if isinstance(output := out.get("output"), list):
        out["output"] = [_item(i) for i in output]
    if isinstance(out.get("usage"), dict):
        usage = _shaped(out["usage"], USAGE_SHAPE)
        usage.setdefault("input_tokens_details", {"cached_tokens": 0})
        usage["input_tokens_details"].setdefault("cached_tokens", 0)
        usage.setdefault("output_tokens_details", {"reasoning_tokens": 0})
        usage["output_tokens_details"].setdefault("reasoning_tokens", 0)
        out["usage"] = usage
    return out


def clean_event(event: dict[str, Any]) -> dict[str, Any]:
    """A stream event with OpenAI's fields only."""
    kind = str(event.get("type"))
    if isinstance(event.get("response"), dict):
        return {"type": kind, "sequence_number": event.get("sequence_number"), "response": clean_response(event["response"])}
    fields = _EVENT_FIELDS.get(kind)
    if fields is None:
        return {k: v for k, v in event.items() if v is not None}
    out: dict[str, Any] = {"type": kind, "sequence_number": event.get("sequence_number")}
    for key in fields:
        if key in event:
            out[key] = event[key]
    if "item" in out:
        out["item"] = _item(out["item"])
    if isinstance(out.get("part"), dict):
        out["part"] = _shaped(out["part"], _PART)
    if kind.startswith("response.output_text.") and out.get("logprobs") is None:
        out["logprobs"] = []
    return out
