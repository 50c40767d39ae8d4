"""Assertions helpers shared by the proxy tests."""

from __future__ import annotations

from typing import Any

__all__ = ["orphan_problems"]


def orphan_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Tool-call pairing problems OpenAI would reject: tool results without a preceding call, and
    calls without results."""
    problems: list[str] = []
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        if m.get("role") == "assistant" and m.get("tool_calls"):
            ids = [c["id"] for c in m["tool_calls"]]
            answered = {x.get("tool_call_id") for x in messages[i + 1 :] if x.get("role") == "tool"}
            problems += [f"call {cid} unanswered" for cid in ids if cid not in answered]
            open_ids.update(ids)
        elif m.get("role") == "tool" and m.get("tool_call_id") not in open_ids:
            problems.append(f"tool result {m.get('tool_call_id')} without a call")
    return problems
