"""OpenAI-format messages <-> events, and the transcript hash chain.

A client resends its whole history each call. Each message gets a canonical hash; the transcript of
a session is the chain of those hashes, so "which stored conversation is this request continuing?"
is one indexed lookup of the chain hash at each prefix, and "what is new?" is the first position
where the hashes differ.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from memory.errors import InvalidEventError

__all__ = ["message_text", "message_hash", "legacy_message_hash", "strip_cache_control", "chain_hashes", "message_to_event", "extract_artifacts", "event_to_message", "SYSTEM_ROLES",
           "GENESIS_CHAIN"]

SYSTEM_ROLES = frozenset({"system", "developer"})
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_DIFF_HEAD = re.compile(r"^(?:diff --git |--- \S)", re.M)
_MIN_BLOCK_LINES = 3
_GENESIS = "memory-runtime/transcript/v1"
# The chain hash of the empty conversation: every chain starts from it.
GENESIS_CHAIN = hashlib.sha256(_GENESIS.encode()).hexdigest()


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    raise InvalidEventError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def _canonical(message: dict[str, Any], normalise: bool = True) -> dict[str, Any]:
    # `item_key` tells apart messages that stand for items of another wire format (the Responses
    # API's reasoning or other opaque items) whose text alone is the same; chat messages never carry
    # it, so their hashes are what they always were.
    keep = {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "item_key"}
    out = {k: v for k, v in message.items() if k in keep and v not in (None, [], "")}
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        # Providers add or drop cosmetic fields on echo (index, empty ids); hash what identifies the call.
        out["tool_calls"] = [
            {"id": c.get("id"), "name": (c.get("function") or {}).get("name"),
             "arguments": _arguments((c.get("function") or {}).get("arguments"), normalise)}
            for c in calls
            if isinstance(c, dict)
        ]
    if normalise and "content" in out:
        out["content"] = _normalised_content(out["content"])
    return out


def _arguments(value: Any, normalise: bool) -> Any:
    """Tool-call arguments as compact JSON with sorted keys: clients re-serialise what they got
    (`{"city":"Paris"}` comes back as `{"city": "Paris"}`), and that is the same call."""
    if not normalise or not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return json.dumps(parsed, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _normalised_content(content: Any) -> Any:
    """Text with every run of whitespace read as one space: agents that rebuild their history from
    a log (aider's restored chat) change line breaks and indentation, not what was said."""
    if isinstance(content, str):
        return " ".join(content.split())
    if isinstance(content, list):
        return [{**part, "text": " ".join(part["text"].split())} if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part for part in content]
    return content


def message_hash(message: dict[str, Any]) -> str:
    """The message's identity in a transcript: whitespace-only differences in its text and the
    formatting of its tool calls' JSON arguments do not count (a message with neither hashes as
    it always did)."""
    blob = json.dumps(_canonical(message), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def strip_cache_control(value: Any) -> Any:
    """`value` without Anthropic's `cache_control` marks, at any depth (a copy; the argument is
    untouched): a client moves its breakpoints from request to request, the messages stay the same."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


def legacy_message_hash(message: dict[str, Any]) -> str:
    """The hash transcripts stored before whitespace and JSON arguments were normalised; alignment
    reads a stored entry with this hash as the request's message (a compatibility path, so a
    stored session continues after the upgrade instead of being detached and stored again)."""
    blob = json.dumps(_canonical(message, normalise=False), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chain_hashes(hashes: list[str], start: str | None = None) -> list[str]:
    """Running hash over message hashes: chain[i] identifies the transcript prefix ending at i."""
    out: list[str] = []
    prev = start or GENESIS_CHAIN
    for h in hashes:
        prev = hashlib.sha256(f"{prev}:{h}".encode()).hexdigest()
        out.append(prev)
    return out


def message_to_event(message: dict[str, Any]) -> dict[str, Any] | None:
    """The public event for one OpenAI message; None for system/developer messages (the app sends
    those verbatim every call, so they are kept in the transcript but not stored as memory)."""
    if not isinstance(message, dict):
        raise InvalidEventError("each message must be an object")
    role = message.get("role")
    if role in SYSTEM_ROLES:
        return None
    content = message.get("content")
    payload: dict[str, Any] = {"content": message_text(content)}
    if isinstance(content, list):
        payload["parts"] = content
    if role == "user":
        etype = "user_message"
    elif role == "assistant":
        etype = "assistant_message"
        if message.get("tool_calls"):
            payload["tool_calls"] = message["tool_calls"]
    elif role in ("tool", "function"):
        etype = "tool_message"
        payload["tool_call_id"] = str(message.get("tool_call_id") or message.get("name") or "")
    else:
        raise InvalidEventError(f"unsupported message role {role!r}")
    if isinstance(message.get("name"), str):
        payload["name"] = message["name"]
    meta = {k: v for k, v in message.items() if k not in {"role", "content", "name", "tool_calls", "tool_call_id"} and v is not None}
    if meta:
        payload["meta"] = meta
    return {"type": etype, "payload": payload}


def event_to_message(role: str, content: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the OpenAI message for a stored message event, exactly as it was sent."""
    message: dict[str, Any] = {"role": role, "content": extra["parts"] if "parts" in extra else content}
    if extra.get("tool_calls"):
        message["tool_calls"] = extra["tool_calls"]
        if not content and "parts" not in extra:
            message["content"] = None
    if "tool_call_id" in extra:
        message["tool_call_id"] = extra["tool_call_id"]
    if "name" in extra:
        message["name"] = extra["name"]
    for key, value in (extra.get("meta") or {}).items():
        message.setdefault(key, value)
    return message


def extract_artifacts(text: str) -> list[tuple[str, str, str]]:
    """Code blocks and unified diffs inside a message, as (kind, source label, content). A fenced
    block whose info string or first line names a path uses it as the source."""
    found: list[tuple[str, str, str]] = []
    for match in _FENCE.finditer(text):
        info, body = match.group(1).strip(), match.group(2)
        if body.count("\n") + 1 < _MIN_BLOCK_LINES:
            continue
        is_diff = info.lower() in ("diff", "patch") or bool(_DIFF_HEAD.search(body))
        source = _source_from(info, body, is_diff)
        found.append(("repo_diff" if is_diff else "snippet", source, body.rstrip("\n")))
    if not found and _DIFF_HEAD.search(text) and "\n@@ " in text:
        start = _DIFF_HEAD.search(text)
        assert start is not None
        body = text[start.start() :]
        found.append(("repo_diff", _source_from("", body, True), body.rstrip("\n")))
    return found


def _source_from(info: str, body: str, is_diff: bool) -> str:
    if is_diff:
        m = re.search(r"^\+\+\+ (?:b/)?(\S+)", body, re.M) or re.search(r"^diff --git a/(\S+)", body, re.M)
        if m:
            return m.group(1)
    for token in info.replace(":", " ").split():
        if "/" in token or "." in token:
            return token
    first = body.lstrip().split("\n", 1)[0]
    m = re.match(r"^\s*(?:#|//|--)\s*(?:file:\s*)?([\w./-]+\.\w+)\s*$", first)
    if m:
        return m.group(1)
    return "message code block"
