"""Where the client's fixed context goes in the prompt, and how an updated one goes up.

Agents re-send context with every call (`memory.turn.align.fixed_context`): aider's files message,
updated in place after every edit and sent after the history; Codex's environment context. Sent
as the client places it, an updated files message costs its whole size uncached on every call: it
sits after the history, past the prefix the provider's cache matched on the previous call.

`anchored` (the default, `FixedPolicy.mode == "diff"`) sends it as a diff-aware artifact instead:
the fixed context goes up in front of the conversation, as it was when last sent whole (the
*anchor*, kept per session in `FixedAnchors`), so it stays inside the cached prefix; when the
client's copy has changed since, one message right before the question carries a unified diff
from the anchor to the current text, so the model reads the current file. When the diff would be
larger than `max_share` of the text it changes (or the messages no longer line up with the
anchor's), the current text becomes the anchor and goes up whole, once. `mode == "whole"` sends
the current text whole, where the client put it (what it sent, as it sent it).

Only plain chat messages with text content are anchored (no wire items of another API behind
them); anything else goes up as sent. Anchors live in the process (a restart starts from the
client's current copy: one cache miss, never a wrong file).
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from memory.turn.stubs import STUB_MARK

__all__ = ["FixedPolicy", "FixedAnchors", "Placed", "anchored", "DIFF_HEADER"]

DIFF_HEADER = (f"{STUB_MARK}: the context above has changed since it was sent; this unified diff turns it into the "
               "current version, which is what holds now]")
_PLAIN_KEYS = frozenset({"role", "content", "name"})


@dataclass(frozen=True)
class FixedPolicy:
    """`mode`: "diff" (anchored, see the module docstring) or "whole"; `max_share`: the largest
    diff, as a share of the changed text, sent instead of re-anchoring."""

    mode: str = "diff"
    max_share: float = 0.5


class FixedAnchors:
    """The fixed context each session's prompts carry whole (bounded, least recently used first out)."""

    def __init__(self, max_sessions: int = 2_000) -> None:
        self._max = max_sessions
        self._anchors: OrderedDict[str, tuple[dict[str, Any], ...]] = OrderedDict()

    def get(self, session: str) -> tuple[dict[str, Any], ...] | None:
        found = self._anchors.get(session)
        if found is not None:
            self._anchors.move_to_end(session)
        return found

    def put(self, session: str, messages: Sequence[dict[str, Any]]) -> None:
        self._anchors[session] = tuple(messages)
        self._anchors.move_to_end(session)
        while len(self._anchors) > self._max:
            self._anchors.popitem(last=False)


@dataclass(frozen=True)
class Placed:
    """The prompt's fixed part and live tail with the fixed context placed; `added`: the messages
    memory wrote (the diff), which count as fixed context too."""

    system: list[dict[str, Any]]
    tail: list[dict[str, Any]]
    added: tuple[dict[str, Any], ...] = ()
    diffed: int = 0  # how many fixed messages went up as a diff against their anchor


def _plain_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    return content if isinstance(content, str) and set(message) <= _PLAIN_KEYS else None


def _lines(text: str) -> list[str]:
    # Every line ends with a newline, so the diff's lines never run together (a last line without one included).
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]


def _diff(old: str, new: str, n: int) -> str:
    return "".join(difflib.unified_diff(_lines(old), _lines(new), fromfile=f"context message {n} (above)",
                                        tofile=f"context message {n} (now)", n=2))


def anchored(session: str, system: Sequence[dict[str, Any]], tail: Sequence[dict[str, Any]], fixed: Collection[int],
             anchors: FixedAnchors, policy: FixedPolicy = FixedPolicy()) -> Placed:
    """The fixed context placed as `policy` says (module docstring). `system` and `tail` are the
    prompt's front (system messages and fixed context ahead of the conversation) and live tail as
    the client laid them out; `fixed` holds the ids (`id()`) of the fixed-context messages."""
    opening = 0
    while opening < len(tail) - 1 and id(tail[opening]) in fixed:
        opening += 1
    front = list(system) + list(tail[:opening])
    current = [m for m in front if id(m) in fixed]
    if policy.mode != "diff" or not current or any(_plain_text(m) is None for m in current):
        return Placed(list(system), list(tail))
    anchor = anchors.get(session)
    lined_up = anchor is not None and [m.get("role") for m in anchor] == [m.get("role") for m in current]
    diffs: list[str] = []
    changed = 0
    if anchor is not None and lined_up:
        for n, (old, new) in enumerate(zip(anchor, current, strict=True)):
            old_text, new_text = _plain_text(old), _plain_text(new)
            if old_text is None or new_text is None:
                lined_up = False
                break
            if old_text != new_text:
                diffs.append(_diff(old_text, new_text, n + 1))
                changed += len(new_text)
    if anchor is None or not lined_up or sum(map(len, diffs)) > policy.max_share * changed:
        anchors.put(session, current)
        anchor, diffs = tuple(current), []
    it = iter(anchor)
    placed = [next(it) if id(m) in fixed else m for m in front]
    if not diffs:
        return Placed(placed, list(tail[opening:]))
    note = {"role": "user", "content": DIFF_HEADER + "\n" + "".join(diffs).rstrip("\n")}
    return Placed(placed, [note, *tail[opening:]], (note,), len(diffs))
