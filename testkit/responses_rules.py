"""What OpenAI's Responses API rejects, for the fake upstream to reject the same way.

`check_request` returns the error OpenAI would send (status, message, param, code) or None. Rules,
from the API reference and the API's observed answers:

- `model` is required; unknown top-level fields are refused ("Unknown parameter: 'x'.");
  (`client_metadata` is accepted: the Codex CLI sends it to OpenAI on every call);
- `input` is a string or a list of items; a message item has a role (user, assistant, system,
  developer) and a string or a list of content parts of the kinds its role may send; a
  function_call has call_id, name and string arguments; a function_call_output has call_id and
  output; an item_reference names an item the API stored;
- in the whole conversation (the chain of `previous_response_id`, then `input`), every
  function_call_output answers a function_call with its call_id that comes before it, and every
  function_call is answered ("No tool output found for function call call_x.");
- `previous_response_id` must name a stored response (one created with `store` not false).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .openai_rules import Rejection

__all__ = ["RESPONSES_FIELDS", "check_request", "check_conversation", "check_items"]

RESPONSES_FIELDS = frozenset(
    "background client_metadata conversation include input instructions max_output_tokens max_tool_calls metadata model parallel_tool_calls "
    "previous_response_id prompt prompt_cache_key prompt_cache_retention reasoning safety_identifier service_tier store "
    "stream stream_options temperature text tool_choice tools top_logprobs top_p truncation user".split()
)
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_INPUT_PARTS = frozenset({"input_text", "input_image", "input_file", "input_audio"})
_OUTPUT_PARTS = frozenset({"output_text", "refusal"})


def check_request(body: Any) -> Rejection | None:
    if not isinstance(body, dict):
        return Rejection("We could not parse the JSON body of your request.")
    for key in body:
        if key not in RESPONSES_FIELDS:
            return Rejection(f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return Rejection("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        return Rejection("Invalid type for 'input': expected one of a string or an array of input items.", param="input",
                         code="invalid_type")
    if body.get("stream_options") is not None and not body.get("stream"):
        return Rejection("The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options")
    if isinstance(value, list):
        return check_items(value)
    return None


def check_items(items: list[Any]) -> Rejection | None:
    for i, item in enumerate(items):
        problem = _check_item(i, item)
        if problem is not None:
            return problem
    return None


def _check_item(i: int, item: Any) -> Rejection | None:
    where = f"input[{i}]"
    if not isinstance(item, dict):
        return Rejection(f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            return Rejection(f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and 'user'.",
                             param=f"{where}.role", code="invalid_value")
        content = item.get("content")
        if isinstance(content, str):
            return None
        if not isinstance(content, list):
            return Rejection(f"Invalid type for '{where}.content': expected one of a string or array of input content items.",
                             param=f"{where}.content", code="invalid_type")
        allowed = _OUTPUT_PARTS if role == "assistant" else _INPUT_PARTS
        for n, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in allowed:
                got = part.get("type") if isinstance(part, dict) else type(part).__name__
                return Rejection(f"Invalid value: '{got}'. Supported values are: {', '.join(sorted(allowed))}.",
                                 param=f"{where}.content[{n}].type", code="invalid_value")
        return None
    if kind == "function_call":
        if not all(isinstance(item.get(k), str) for k in ("call_id", "name", "arguments")):
            return Rejection(f"Missing required parameter: '{where}.call_id', '{where}.name' and '{where}.arguments' must be strings.",
                             param=where, code="missing_required_parameter")
        return None
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str) or "output" not in item:
            return Rejection(f"Missing required parameter: '{where}.call_id'.", param=f"{where}.call_id", code="missing_required_parameter")
        return None
    if kind in ("reasoning", "item_reference"):
        if not isinstance(item.get("id"), str):
            return Rejection(f"Missing required parameter: '{where}.id'.", param=f"{where}.id", code="missing_required_parameter")
        return None
    if not isinstance(kind, str):
        return Rejection(f"Missing required parameter: '{where}.type'.", param=f"{where}.type", code="missing_required_parameter")
    return None


def check_conversation(items: list[dict[str, Any]], resolve: Callable[[str], dict[str, Any] | None]) -> tuple[list[dict[str, Any]], Rejection | None]:
    """The conversation with item references resolved, or the rejection of its tool-call order."""
    resolved: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") == "item_reference":
            found = resolve(str(item.get("id")))
            if found is None:
                return resolved, Rejection(f"Item with id '{item.get('id')}' not found.", param="input", status=404)
            item = found
        resolved.append(item)
    calls: set[str] = set()
    answered: set[str] = set()
    for item in resolved:
        if item.get("type") == "function_call":
            calls.add(str(item.get("call_id")))
        elif item.get("type") == "function_call_output":
            call_id = str(item.get("call_id"))
            if call_id not in calls:
                return resolved, Rejection(f"No tool call found for function call output with call_id {call_id}.", param="input")
            answered.add(call_id)
    missing = sorted(calls - answered)
    if missing:
        return resolved, Rejection(f"No tool output found for function call {missing[0]}.", param="input")
    return resolved, None
