"""Whether the current message asks something of the assistant, or only tells it something.

A question ("When did Caroline move?"), a request ("Remind me of the venue", "fix the parser") or
any turn of a tool loop reaches for memory out of view; a message that shares news or reacts
("We went hiking on Sunday!", "That's lovely.") mostly continues what the prompt already shows. The
layout gives the first its full evidence block and the second a smaller one of the strongest matches
(`LayoutPolicy.statement_floor`, `statement_share`): in a chat, most turns are of the second kind,
and each turn's evidence is the uncached part of its prompt.

Deliberately lexical and language-light: a question mark anywhere, an opening interrogative or
request word, or a polite request ("can you", "please", "do you remember") marks an asking message.
A message that asks without any of these gets the smaller block, never none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["asks", "uses_tools", "tool_step", "is_tool_step", "plain_chat"]

_OPENERS = (
    "who|whom|whose|what|when|where|which|why|how|"
    "did|do|does|is|are|was|were|am|can|could|would|will|should|shall|may|might|must|have|has|had|"
    "remind|recall|tell|list|show|find|explain|summari[sz]e|describe|give|name|compare|look|search|"
    "fix|add|implement|write|update|change|remove|delete|make|create|run|check|refactor|rename|move|use|help"
)
# A sentence (start of the message, or after a sentence end or a line break) that opens with an
# interrogative or request word.
_OPENING = re.compile(rf"(?:^|[.!\n]\s*)(?:ok(?:ay)?,?\s+|so,?\s+|and\s+|but\s+|hey,?\s+|hi,?\s+)?(?:{_OPENERS})\b(?!['’]t\b)", re.I)
_POLITE = re.compile(r"\b(?:can you|could you|would you|please|do you (?:remember|recall|know)|i (?:wonder|forgot)|"
                     r"i'?d like to know|tell me|remind me)\b", re.I)
_TOOL_ROLES = frozenset({"tool", "function"})


def asks(message: str) -> bool:
    """Whether `message` asks or requests something (see the module docstring)."""
    return "?" in message or bool(_OPENING.search(message)) or bool(_POLITE.search(message))


def tool_step(role: object, tool_calls: object) -> bool:
    """Whether a message of this role with these tool calls is a tool call or a tool's result."""
    return role in _TOOL_ROLES or bool(tool_calls)


def is_tool_step(message: dict[str, Any]) -> bool:
    """Whether `message` is a tool call or a tool's result."""
    return tool_step(message.get("role"), message.get("tool_calls"))


def uses_tools(messages: Iterable[dict[str, Any]]) -> bool:
    """Whether the conversation is a tool loop (a tool call or result among `messages`): every
    message of one is work on its task, and asks for memory."""
    return any(map(is_tool_step, messages))


def plain_chat(tail: Iterable[dict[str, Any]], history_tools: bool) -> bool:
    """Whether a request is a plain chat: no tool call or result in its live tail or its history
    (`history_tools`: whether the history holds one, kept as its lines are built, so that a long
    session's lines are not walked again for it)."""
    return not history_tools and not uses_tools(tail)
