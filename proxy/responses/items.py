"""Responses API items <-> the chat messages memory aligns, stores and lays out.

Memory speaks OpenAI chat messages. A Responses request's `input` is a list of items; each becomes
a chat message that carries the original item(s), so the `input` forwarded upstream is rebuilt from
the items exactly as the client sent them (or as the provider returned them, for stored replies):

    message (user / system / developer)      -> that role, its text; the item under "item"
    assistant-side items in a row            -> one assistant message under "items": the text of
      (assistant message, function_call,        its output_text parts, a tool call per item with a
       reasoning, web_search_call, any          call_id (function_call, custom_tool_call, ...),
       other item kind, unresolved refs)        and the items in order (a reply is one message, as
                                                on chat; parallel calls stay together)
    *_output items (function_call_output...) -> a tool message answering its call_id
    instructions                             -> the system message in front (sent back as
                                                `instructions`, never as an input item)

Items whose meaning is not in their text (reasoning, images, other opaque kinds) add an
`item_key` (a digest of what identifies them) so that two of them never hash the same in the
transcript. Messages memory wrote itself (the state block, evidence) and messages stored from the
chat route have no item and become easy input messages (`{"role", "content"}`), function_call or
function_call_output items.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["to_messages", "to_input", "reply_message", "item_ids", "rewrite", "INSTRUCTIONS_KEY", "is_assistant_side"]

# Marks the system message that stands for the request's `instructions`.
INSTRUCTIONS_KEY = "x_memory_instructions"
_INPUT_ROLES = frozenset({"user", "system", "developer"})
_VOLATILE = frozenset({"status"})


def _text_of_parts(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") in kinds]
    return "\n".join(texts)


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _identity(item: dict[str, Any]) -> dict[str, Any]:
    """What identifies an opaque item: everything but its status and unset fields (a client that
    sends a reply's items back may drop those)."""
    return {k: v for k, v in item.items() if k not in _VOLATILE and v is not None}


def _kind(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return str(kind)


def is_assistant_side(item: dict[str, Any]) -> bool:
    """Items the model produced (or that stand with them): everything but input messages and tool outputs."""
    kind = _kind(item)
    if kind == "message":
        return item.get("role") == "assistant"
    return not kind.endswith("_output")


def _user_side(item: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(item)
    if kind == "message":
        content = item.get("content")
        message: dict[str, Any] = {"role": str(item.get("role")), "content": _text_of_parts(content, ("input_text", "output_text", "text")),
                                   "item": item}
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in ("input_text", "text") for p in content):
            message["item_key"] = _digest([_identity(p) for p in content if isinstance(p, dict)])
        return message
    # A tool output: function_call_output, custom_tool_call_output, computer_call_output, ...
    output = item.get("output")
    text = output if isinstance(output, str) else _text_of_parts(output, ("input_text", "output_text", "text")) or json.dumps(output, ensure_ascii=False)
    call_id = item.get("call_id") or item.get("approval_request_id") or item.get("id") or ""
    message = {"role": "tool", "tool_call_id": str(call_id), "content": text, "item": item}
    if kind != "function_call_output" or not isinstance(output, str):
        message["item_key"] = _digest(_identity(item))
    return message


def _assistant(items: list[dict[str, Any]]) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    opaque: list[dict[str, Any]] = []
    for item in items:
        kind = _kind(item)
        if kind == "message":
            texts.append(_text_of_parts(item.get("content"), ("output_text", "input_text", "text")))
        elif item.get("call_id") is not None:
            arguments = item.get("arguments", item.get("input", item.get("action")))
            calls.append({"id": str(item["call_id"]), "type": "function",
                          "function": {"name": str(item.get("name") or kind),
                                       "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)}})
            if kind != "function_call":
                opaque.append(item)
        else:
            opaque.append(item)
    text = "\n".join(t for t in texts if t)
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    message["items"] = list(items)
    if opaque:
        message["item_key"] = _digest([_identity(i) for i in opaque])
    return message


def to_messages(items: list[dict[str, Any]], instructions: str | None = None) -> list[dict[str, Any]]:
    """The chat messages standing for `instructions` and the input items, in order."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions, INSTRUCTIONS_KEY: True})
    run: list[dict[str, Any]] = []
    for item in items:
        if is_assistant_side(item):
            run.append(item)
            continue
        if run:
            messages.append(_assistant(run))
            run = []
        messages.append(_user_side(item))
    if run:
        messages.append(_assistant(run))
    return messages


def reply_message(output: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The assistant message storing a response's output items (None for an empty output)."""
    items = [o for o in output if isinstance(o, dict)]
    return _assistant(items) if items else None


def item_ids(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(id, item) of the items that have an id, for `item_reference` lookups later."""
    return [(str(i["id"]), i) for i in items if isinstance(i, dict) and isinstance(i.get("id"), str) and _kind(i) != "item_reference"]


def _chat_to_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat message with no item of its own (memory's context, a turn stored from the chat route)."""
    role = message.get("role")
    content = message.get("content")
    text = content if isinstance(content, str) else _text_of_parts(content, ("text", "input_text", "output_text"))
    if role == "assistant":
        out: list[dict[str, Any]] = [{"role": "assistant", "content": text}] if text else []
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            out.append({"type": "function_call", "call_id": call.get("id"), "name": function.get("name"),
                        "arguments": function.get("arguments") or ""})
        return out
    if role in ("tool", "function"):
        return [{"type": "function_call_output", "call_id": message.get("tool_call_id") or message.get("name") or "", "output": text}]
    return [{"role": role if role in _INPUT_ROLES else "user", "content": text}]


def to_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `input` items for a laid-out prompt: each message's original items, verbatim."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get(INSTRUCTIONS_KEY):
            continue
        if isinstance(message.get("items"), list):
            out.extend(message["items"])
        elif isinstance(message.get("item"), dict):
            out.append(message["item"])
        else:
            out.extend(_chat_to_items(message))
    return out


def rewrite(original: dict[str, Any], rewritten: dict[str, Any]) -> dict[str, Any] | None:
    """A message memory compacted (`memory.turn.compact`), back in Responses form: a tool output
    item with its output replaced (same kind, same call_id), an assistant run with its calls'
    arguments (a custom tool's input) and its one text message replaced, every other item (reasoning
    with its `encrypted_content`) untouched. None where the items cannot carry the change."""
    item = original.get("item")
    if isinstance(item, dict):
        if not _kind(item).endswith("_output") or not isinstance(rewritten.get("content"), str):
            return None
        text = rewritten["content"]
        output = item.get("output")
        if isinstance(output, list) and output and all(isinstance(o, dict) and "stdout" in o for o in output):
            new_output: Any = [{**output[0], "stdout": text, "stderr": ""}]  # a shell call's output
        elif isinstance(output, str):
            new_output = text
        else:
            return None
        return {**original, **rewritten, "item": {**item, "output": new_output}}
    items = original.get("items")
    if not isinstance(items, list):
        return {**original, **rewritten}
    before = {str(c.get("id")): (c.get("function") or {}).get("arguments") for c in original.get("tool_calls") or ()}
    arguments = {k: v for k, v in ((str(c.get("id")), (c.get("function") or {}).get("arguments")) for c in rewritten.get("tool_calls") or ())
                 if v != before.get(k)}
    texts = [n for n, i in enumerate(items) if _kind(i) == "message"]
    if rewritten.get("content") != original.get("content") and len(texts) != 1:
        return None
    out: list[dict[str, Any]] = []
    for n, i in enumerate(items):
        kind = _kind(i)
        call_id = str(i.get("call_id")) if i.get("call_id") is not None else None
        if n in texts and rewritten.get("content") != original.get("content"):
            i = {**i, "content": [{"type": "output_text", "text": rewritten.get("content") or "", "annotations": []}]}
        elif call_id in arguments and kind == "function_call" and isinstance(i.get("arguments"), str):
            i = {**i, "arguments": arguments[call_id]}
        elif call_id in arguments and kind == "custom_tool_call" and isinstance(i.get("input"), str):
            i = {**i, "input": arguments[call_id]}
        elif call_id in arguments:
            return None  # a call whose arguments live elsewhere (an action object): left whole
        out.append(i)
    return {**original, **rewritten, "items": out}
