"""Prompt caching the Anthropic way: explicit `cache_control` breakpoints, at most four.

Anthropic caches a prompt prefix (tools, then system, then messages) only up to a block that
carries `cache_control`; a request may carry four such breakpoints. Memory keeps a stable frame
(the client's system, memory's base, the verbatim window) in front of each question's evidence and
the live tail, so the frame is what should be cached. The rule, applied to a compiled prompt:

- the client's breakpoints stay where they are: in `tools` and `system` (memory never changes
  those), in the live tail and in window messages the client sent this time (they still mark a
  stable prefix); `blocks.to_anthropic` already dropped the ones of earlier turns;
- one breakpoint goes on the last block of the frame that can carry one (not a thinking block,
  not an empty text block), unless one is already there;
- never more than four: when the client already uses four, the last of its breakpoints inside the
  compiled part (before the frame's end) moves to the frame's end; when none of them is inside
  (all in tools, system or the tail, which cache the frame with them), none is added;
- its TTL is one hour when a later breakpoint asks for one hour (Anthropic wants longer TTLs
  first), else the default five minutes;
- then, when a slot is left and the client marked nothing in `tools` or `system`, one more goes on
  the last system block (else the last tool): the part no rebase changes. Without it a client that
  only marks its last message (the usual "moving breakpoint") has every rebuilt frame write its
  system prompt and tools again, since a read only finds prefixes cached at a breakpoint. It
  costs nothing: the later breakpoints write that prefix anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_BREAKPOINTS", "breakpoints", "mark_frame_end", "mark_stable_top"]

MAX_BREAKPOINTS = 4
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})

# A breakpoint's place: ("tools" | "system" | "messages", top index, the block holding it).
Place = tuple[str, int, dict[str, Any]]


def _blocks(value: Any) -> Iterator[dict[str, Any]]:
    """Every block of a content list, depth first (tool_result content included)."""
    if isinstance(value, list):
        for block in value:
            if isinstance(block, dict):
                yield block
                if isinstance(block.get("content"), list):
                    yield from _blocks(block["content"])


def breakpoints(body: dict[str, Any]) -> list[Place]:
    """The blocks carrying `cache_control` in `body`, in prompt order."""
    found: list[Place] = []
    for n, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and tool.get("cache_control"):
            found.append(("tools", n, tool))
    for block in _blocks(body.get("system")):
        if block.get("cache_control"):
            found.append(("system", 0, block))
    for n, message in enumerate(body.get("messages") or []):
        for block in _blocks(message.get("content") if isinstance(message, dict) else None):
            if block.get("cache_control"):
                found.append(("messages", n, block))
    return found


def _target(messages: list[dict[str, Any]], last: int) -> dict[str, Any] | None:
    """The last block of messages[:last + 1] that can carry a breakpoint (a string content is
    turned into one text block for it)."""
    for n in range(last, -1, -1):
        message = messages[n]
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                continue
            message["content"] = content = [{"type": "text", "text": content}]
        for block in reversed(content if isinstance(content, list) else []):
            if not isinstance(block, dict) or block.get("type") in _UNCACHEABLE:
                continue
            if block.get("type") == "text" and not block.get("text"):
                continue
            return block
    return None


def mark_frame_end(body: dict[str, Any], frame_last: int | None) -> bool:
    """Put a breakpoint at the end of the frame (messages[:frame_last + 1]) in `body`, in place,
    by the rule in the module docstring. Returns whether the body changed."""
    if frame_last is None:
        return False
    messages = body.get("messages") or []
    target = _target(messages, frame_last)
    if target is None or target.get("cache_control"):
        return False
    places = breakpoints(body)
    if len(places) >= MAX_BREAKPOINTS:
        inside = [p for p in places if p[0] == "messages" and p[1] <= frame_last]
        if not inside:
            return False
        del inside[-1][2]["cache_control"]
        places = breakpoints(body)
    later = _after(messages, target)
    one_hour = any((p[2].get("cache_control") or {}).get("ttl") == "1h" for p in places if id(p[2]) in later)
    target["cache_control"] = {"type": "ephemeral", "ttl": "1h"} if one_hour else {"type": "ephemeral"}
    return True


def _after(messages: list[dict[str, Any]], target: dict[str, Any]) -> set[int]:
    """The `id()` of the blocks carrying a breakpoint after `target` in the prompt."""
    seen = False
    found: set[int] = set()
    for message in messages:
        for block in _blocks(message.get("content")):
            if seen and block.get("cache_control"):
                found.add(id(block))
            if block is target:
                seen = True
    return found


def _ttl(places: list[Place]) -> dict[str, str]:
    one_hour = any((p[2].get("cache_control") or {}).get("ttl") == "1h" for p in places)
    return {"type": "ephemeral", "ttl": "1h"} if one_hour else {"type": "ephemeral"}


def mark_stable_top(body: dict[str, Any]) -> bool:
    """Put a breakpoint on the last system block (else the last tool) of a compiled `body`, in
    place, by the rule in the module docstring. Returns whether the body changed."""
    places = breakpoints(body)
    if len(places) >= MAX_BREAKPOINTS or any(p[0] in ("tools", "system") for p in places):
        return False
    system = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = system = [{"type": "text", "text": system}]
    texts = [b for b in system if isinstance(b, dict) and b.get("type") == "text" and b.get("text")] if isinstance(system, list) else []
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    target = texts[-1] if texts else tools[-1] if tools else None
    if target is None:
        return False
    target["cache_control"] = _ttl(places)  # every other breakpoint comes later: one hour if any of them is
    return True
