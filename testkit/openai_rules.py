"""What OpenAI's chat completions endpoint rejects, for the fake upstream to reject the same way.

A fake that accepts anything hid the proxy's worst bugs (a compiled prompt with a tool call torn
from its results went through every test and failed against the real API). `check_chat` returns
the error OpenAI would send (status 400, its message and param), or None for a valid request.
Rules, from the API reference and the API's observed answers:

- `model` and a non-empty `messages` list are required; unknown top-level fields are refused
  ("Unrecognized request argument supplied: X");
- roles are system, developer, user, assistant, tool, function; content is a string or a list of
  parts (null only for an assistant message that calls tools or a function);
- an assistant message with `tool_calls` must be followed at once by tool messages answering every
  call id (parallel calls in any order), and a tool message must answer a call of the assistant
  message right before its group;
- `stream_options` only with `stream: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Rejection", "check_chat", "CHAT_FIELDS"]

CHAT_FIELDS = frozenset(
    "messages model audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens max_tokens "
    "metadata modalities n parallel_tool_calls prediction presence_penalty prompt_cache_key prompt_cache_retention "
    "reasoning_effort response_format safety_identifier seed service_tier stop store stream stream_options temperature "
    "tool_choice tools top_logprobs top_p user verbosity web_search_options".split()
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class Rejection:
    message: str
    param: str | None = None
    code: str | None = None
    status: int = 400

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}}


def check_chat(body: Any) -> Rejection | None:
    if not isinstance(body, dict):
        return Rejection("We could not parse the JSON body of your request.")
    for key in body:
        if key not in CHAT_FIELDS:
            return Rejection(f"Unrecognized request argument supplied: {key}", code="unknown_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return Rejection("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list):
        return Rejection("Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
    if not messages:
        return Rejection("[] is too short - 'messages'", param="messages", code="empty_array")
    if body.get("stream_options") is not None and not body.get("stream"):
        return Rejection("The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options")
    for i, message in enumerate(messages):
        problem = _check_message(i, message)
        if problem is not None:
            return problem
    return _check_tool_order(messages)


def _check_message(i: int, message: Any) -> Rejection | None:
    if not isinstance(message, dict):
        return Rejection(f"Invalid type for 'messages[{i}]': expected an object.", param=f"messages[{i}]", code="invalid_type")
    role = message.get("role")
    if role not in _ROLES:
        return Rejection(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                         param=f"messages[{i}].role", code="invalid_value")
    content = message.get("content")
    calls = message.get("tool_calls") or message.get("function_call")
    if content is None and not (role == "assistant" and calls):
        return Rejection(f"Invalid value for 'content': expected a string, got null.", param=f"messages.[{i}].content", code="invalid_value")
    if content is not None and not isinstance(content, (str, list)):
        return Rejection(f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects.",
                         param=f"messages[{i}].content", code="invalid_type")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        return Rejection(f"Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
                         param=f"messages.[{i}].tool_call_id", code="missing_required_parameter")
    if "tool_calls" in message and message["tool_calls"] is not None:
        if role != "assistant" or not isinstance(message["tool_calls"], list):
            return Rejection(f"Invalid 'messages[{i}].tool_calls'.", param=f"messages[{i}].tool_calls")
        for call in message["tool_calls"]:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function" \
                    or not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                    or not isinstance(function.get("arguments"), str):
                return Rejection(f"Invalid 'messages[{i}].tool_calls': each call needs an id, type 'function' and a function "
                                 "with a name and string arguments.", param=f"messages[{i}].tool_calls")
    return None


def _check_tool_order(messages: list[dict[str, Any]]) -> Rejection | None:
    open_ids: list[str] = []
    answered: set[str] = set()
    calling = -1
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if calling < 0 or message.get("tool_call_id") not in open_ids:
                return Rejection("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                                 param=f"messages.[{i}].role")
            answered.add(str(message.get("tool_call_id")))
            continue
        if open_ids and not set(open_ids) <= answered:
            missing = ", ".join(c for c in open_ids if c not in answered)
            return Rejection("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                             f"'tool_call_id'. The following tool_call_ids did not have response messages: {missing}",
                             param=f"messages.[{calling}].role")
        open_ids, answered, calling = [], set(), -1
        if role == "assistant" and message.get("tool_calls"):
            open_ids = [str(c.get("id")) for c in message["tool_calls"]]
            calling = i
    if open_ids and not set(open_ids) <= answered:
        missing = ", ".join(c for c in open_ids if c not in answered)
        return Rejection("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                         f"'tool_call_id'. The following tool_call_ids did not have response messages: {missing}",
                         param=f"messages.[{calling}].role")
    return None
