"""Chat completions and stream chunks shaped exactly as OpenAI's, from what litellm returns.

litellm's objects carry fields of their own (`provider_specific_fields` on messages, choices and
tool calls, `usage.cost`, `*_tokens_details` entries such as `text_tokens: null`), leave OpenAI's
`refusal` and `logprobs` out, and send the `include_usage` chunk with a choice in it. Strict clients
notice, and a client that appends the reply message to its history (the cookbook pattern) sends
the unknown keys back. These functions keep OpenAI's fields only, as the API reference documents
the `chat.completion` and `chat.completion.chunk` objects, and fill the ones OpenAI always sends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["completion", "chunk"]

_TOP = ("id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint")
_USAGE_DETAILS = (
    ("prompt_tokens_details", ("cached_tokens", "audio_tokens")),
    ("completion_tokens_details", ("reasoning_tokens", "audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens")),
)


def _usage(usage: Any) -> Any:
    if not isinstance(usage, dict):
        return usage
    out = {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in usage}
    for key, fields in _USAGE_DETAILS:
        details = usage.get(key)
        if isinstance(details, dict):
            out[key] = {f: details[f] for f in fields if details.get(f) is not None}
    return out


def _tool_call(call: Any, streaming: bool) -> Any:
    if not isinstance(call, dict):
        return call
    out: dict[str, Any] = {}
    if streaming and "index" in call:
        out["index"] = call["index"]
    for key in ("id", "type"):
        if call.get(key) is not None:
            out[key] = call[key]
    function = call.get("function")
    if isinstance(function, dict):
        out["function"] = {k: function[k] for k in ("name", "arguments") if function.get(k) is not None}
    return out


def _message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    out: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content"),
                           "refusal": message.get("refusal"), "annotations": message.get("annotations") or []}
    if message.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c, False) for c in message["tool_calls"]]
    for key in ("function_call", "audio"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def _delta(delta: Any) -> Any:
    if not isinstance(delta, dict):
        return delta
    out = {k: delta[k] for k in ("role", "content", "refusal", "function_call") if delta.get(k) is not None}
    if delta.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c, True) for c in delta["tool_calls"]]
    return out


def completion(response: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` object with OpenAI's fields only."""
    out: dict[str, Any] = {k: response.get(k) for k in _TOP if k in response or k in ("service_tier", "system_fingerprint")}
    out["object"] = "chat.completion"
    out["choices"] = [
        {"index": c.get("index", 0), "message": _message(c.get("message")), "logprobs": c.get("logprobs"),
         "finish_reason": c.get("finish_reason")}
        for c in response.get("choices") or [] if isinstance(c, dict)
    ]
    if "usage" in out:
        out["usage"] = _usage(out["usage"])
    return out


def chunk(data: dict[str, Any], usage_only: bool) -> dict[str, Any]:
    """A `chat.completion.chunk` with OpenAI's fields only; `usage_only` is the `include_usage`
    chunk, whose `choices` OpenAI sends empty."""
    out: dict[str, Any] = {k: data.get(k) for k in _TOP if k in data or k in ("service_tier", "system_fingerprint")}
    out["object"] = "chat.completion.chunk"
    out["choices"] = [] if usage_only else [
        {"index": c.get("index", 0), "delta": _delta(c.get("delta") or {}), "logprobs": c.get("logprobs"),
         "finish_reason": c.get("finish_reason")}
        for c in data.get("choices") or [] if isinstance(c, dict)
    ]
    if "usage" in out:
        out["usage"] = _usage(out["usage"])
    return out
