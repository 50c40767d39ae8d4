"""Validation and normalisation of ingested events.

Every public event is a dict `{"type": ..., "payload": {...}}`; `parse_event` turns it into a frozen
`Event` or raises `InvalidEventError` before anything touches storage.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

from memory.errors import InvalidEventError
from memory.ingest.redact import redact, redact_value
from memory.ingest.transcript import event_to_message, message_hash

__all__ = ["Event", "parse_event", "MESSAGE_TYPES", "ARTIFACT_TYPES", "EVENT_TYPES", "ROLE_OF"]

MESSAGE_TYPES = frozenset({"user_message", "assistant_message", "tool_message"})
ARTIFACT_TYPES = frozenset({"snippet", "file", "repo_diff", "doc_chunk", "tool_output"})
EVENT_TYPES = MESSAGE_TYPES | ARTIFACT_TYPES
ALIASES = {"assistant_response": "assistant_message"}
ROLE_OF = {"user_message": "user", "assistant_message": "assistant", "tool_message": "tool"}
MAX_CONTENT_CHARS = 4_000_000


@dataclass(frozen=True)
class Event:
    """A validated event ready to store. `extra` keeps message fields that must round-trip to the
    provider (tool_calls, tool_call_id, name, content parts, provider-specific fields)."""

    type: str
    content: str
    source: str | None = None
    pinned: bool = False
    timestamp: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Transcript hash of the message as the client sent it (before redaction), for prefix matching.
    message_hash: str | None = None

    @property
    def role(self) -> str | None:
        return ROLE_OF.get(self.type)

    @property
    def is_message(self) -> bool:
        return self.type in MESSAGE_TYPES

    def payload_json(self) -> str:
        return json.dumps(self.extra, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _opt_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"payload.{key} must be a string, got {type(value).__name__}")
    return value


def parse_event(raw: Any) -> Event:
    """Validate one public event dict and return the normalised `Event`."""
    if not isinstance(raw, Mapping):
        raise InvalidEventError(f"an event must be a dict with 'type' and 'payload', got {type(raw).__name__}")
    etype = raw.get("type")
    if not isinstance(etype, str):
        raise InvalidEventError("event 'type' must be a string")
    etype = ALIASES.get(etype, etype)
    if etype not in EVENT_TYPES:
        raise InvalidEventError(f"unknown event type {etype!r}; expected one of {sorted(EVENT_TYPES | set(ALIASES))}")
    payload = raw.get("payload")
    if not isinstance(payload, Mapping):
        raise InvalidEventError("event 'payload' must be a dict")
    if "content" not in payload or payload["content"] is None:
        if not (etype == "assistant_message" and payload.get("tool_calls")):
            raise InvalidEventError(f"{etype} payload is missing 'content'")
    content = payload.get("content") or ""
    if not isinstance(content, str):
        raise InvalidEventError(f"payload.content must be a string, got {type(content).__name__}")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidEventError(f"payload.content is {len(content)} characters; the limit is {MAX_CONTENT_CHARS}")
    if "\x00" in content:
        raise InvalidEventError("payload.content must not contain NUL characters")
    pinned = payload.get("pinned", False)
    if not isinstance(pinned, bool):
        raise InvalidEventError("payload.pinned must be true or false")
    source = _opt_str(payload, "source")
    if etype in ("file", "repo_diff") and not source:
        source = _opt_str(payload, "path")
    if etype == "file" and not source:
        raise InvalidEventError("a file event needs payload.source (the file path)")
    timestamp = _opt_str(payload, "timestamp")
    extra: dict[str, Any] = {}
    tool_calls = payload.get("tool_calls")
    if tool_calls is not None:
        if etype != "assistant_message" or not isinstance(tool_calls, list) or not all(isinstance(t, Mapping) for t in tool_calls):
            raise InvalidEventError("payload.tool_calls must be a list of dicts on an assistant_message")
        extra["tool_calls"] = [dict(t) for t in tool_calls]
    for key in ("tool_call_id", "name"):
        value = _opt_str(payload, key)
        if value is not None:
            extra[key] = value
    if etype == "tool_message" and "tool_call_id" not in extra:
        raise InvalidEventError("a tool_message needs payload.tool_call_id")
    parts = payload.get("parts")
    if parts is not None:
        if not isinstance(parts, list) or not all(isinstance(p, Mapping) for p in parts):
            raise InvalidEventError("payload.parts must be a list of content-part dicts")
        extra["parts"] = [dict(p) for p in parts]
    meta = payload.get("meta")
    if meta is not None:
        if not isinstance(meta, Mapping):
            raise InvalidEventError("payload.meta must be a dict")
        extra["meta"] = dict(meta)
    try:
        json.dumps(extra, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"payload is not JSON-serialisable: {exc}") from exc
    role = ROLE_OF.get(etype)
    original_hash = message_hash(event_to_message(role, content, extra)) if role else None
    # Secrets never reach storage: every stored string is redacted here (content, tool calls and
    # their ids, content parts and their URLs, names, extra provider fields, source and timestamp).
    found: Counter[str] = Counter()
    content, counts = redact(content)
    found.update(counts)
    for key in ("tool_calls", "parts", "meta", "name", "tool_call_id"):
        if key in extra:
            extra[key] = redact_value(extra[key], found)
    source, timestamp = redact_value(source, found), redact_value(timestamp, found)
    if found:
        extra["redactions"] = dict(sorted(found.items()))
    return Event(type=etype, content=content, source=source, pinned=pinned, timestamp=timestamp, extra=extra,
                 message_hash=original_hash)
