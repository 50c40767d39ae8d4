"""A tool loop written as text, read as a tool loop for compaction.

Text-protocol agents send a tool's output back as a user message, the ReAct way ("Observation:
..."; smolagents under its default role conversions), and their own call as assistant text
(smolagents writes "Calling tools:\\n[{'id': ..., 'function': {...}}]" or a code block). Such
outputs are the bulk of the loop, but `memory.turn.compact` compacts only tool messages. So before
compaction the tail is read in tool form: each observation (`memory.turn.align.is_observation`,
the one rule that recognises them) that follows an assistant text step becomes a tool message
answering a call that step is given; afterwards every message goes back to the client's form (a
stub, pointer or diff of an observation as the user message's text; a shortened step as its text;
a message left whole as the client sent it, byte for byte).

The call given to a step is named by the step's last lines (its action, with any `id` fields of a
JSON or Python-literal call left out), so the same action run again is the same call (its changed
output can go up as a diff) and a stub says what produced the output. Its id is the one the
observation or the step names ("Call id: call_3", an `id` field), else `observation-<index>`.
Pure and deterministic: the same tail is read the same way on every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.ingest.transcript import message_text
from memory.turn.align import is_observation
from memory.turn.compact import Rewrite, chat_rewrite

__all__ = ["TextLoop", "text_loop", "ACTION_CHARS"]

# The step's action as a call's arguments: short enough that compaction never shortens it.
ACTION_CHARS = 240
_ACTION_LINES = 2
_ID_FIELD = re.compile(r"""['"]id['"]\s*:\s*['"]([^'"\n]+)['"]\s*,?\s*""")
_CALL_ID = re.compile(r"\A\s*Call id:\s*(\S+)")


def _text(content: Any) -> str | None:
    """The content as one string when it is text only (a string, or text parts); else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
                                                    for p in content):
        return message_text([{**p, "type": "text"} for p in content])
    return None


def _action(step: str) -> str:
    lines = [line.strip() for line in step.splitlines() if line.strip()]
    action = _ID_FIELD.sub("", " ".join(lines[-_ACTION_LINES:]))
    return action if len(action) <= ACTION_CHARS else action[: ACTION_CHARS - 1] + "…"


def _call_id(observation: str, step: str, index: int, taken: set[str]) -> str:
    found = _CALL_ID.match(observation)
    ids = _ID_FIELD.findall(step)
    call = found.group(1) if found else ids[-1] if len(ids) == 1 else f"observation-{index}"
    return call if call not in taken else f"{call}-{index}"


def _as_content(original: dict[str, Any], text: Any) -> Any:
    """`text` in the shape of the original message's content (a string, or one text part)."""
    content = original.get("content")
    if isinstance(content, list) and isinstance(text, str):
        kind = next((p.get("type") for p in content if isinstance(p, dict)), "text")
        return [{"type": kind, "text": text}]
    return text


@dataclass
class TextLoop:
    """A tail in tool form (`messages`), and the way back to the client's messages."""

    messages: list[dict[str, Any]]
    _original: dict[int, dict[str, Any]] = field(default_factory=dict)  # id(tool-form message) -> the client's

    def rewrite(self, base: Rewrite | None) -> Rewrite:
        """The compaction's hook: a rewritten tool-form message in the client's form (a user
        message for an observation, the step's text for an assistant step), then `base`'s."""
        wire = base or chat_rewrite

        def hook(message: dict[str, Any], rewritten: dict[str, Any]) -> dict[str, Any] | None:
            original = self._original.get(id(message))
            if original is None:
                return wire(message, rewritten)
            content = rewritten.get("content")
            if not isinstance(content, str):
                return None
            return wire(original, {"role": original.get("role"), "content": _as_content(original, content)})

        return hook

    def tokens(self, token_of: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], int]:
        """`token_of` that counts a tool-form message the client's message stands behind as that
        message (what goes up when it stays whole)."""
        return lambda m: token_of(self._original.get(id(m), m))

    def restore(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The compacted tail with every message left whole back as the client sent it."""
        return [self._original.get(id(m), m) for m in messages]


def text_loop(tail: Sequence[dict[str, Any]]) -> TextLoop | None:
    """The tail in tool form, or None when it holds no observation answering an assistant text step."""
    out = list(tail)
    original: dict[int, dict[str, Any]] = {}
    taken: set[str] = set()
    for i in range(1, len(tail)):
        observation, step = tail[i], tail[i - 1]
        if not is_observation(observation) or step.get("role") != "assistant" or step.get("tool_calls"):
            continue
        output, text = _text(observation.get("content")), _text(step.get("content"))
        if output is None or text is None:
            continue
        call = _call_id(output, text, i, taken)
        taken.add(call)
        calls = [{"id": call, "type": "function", "function": {"name": "", "arguments": _action(text)}}]
        out[i - 1] = {"role": "assistant", "content": text, "tool_calls": calls}
        out[i] = {"role": "tool", "tool_call_id": call, "content": output}
        original[id(out[i - 1])], original[id(out[i])] = step, observation
    return TextLoop(out, original) if original else None
