"""The note that stands for the oldest steps of a tool loop once they are left out of the prompt.

When even stubs no longer fit, the oldest steps go whole (a call never without its answer). One
note, where they were, says how many calls were left out and which (the newest of them), and keeps
the lines of their outputs (and of outputs reduced to a stub's header) that name what the agent has
been working with: the identifiers its own steps mention, the rarer and the more often mentioned the
better. The lines are verbatim, so the agent keeps the context of a name, not a bare list of names.
Built at a compaction only, so it is part of the stable prefix until the next one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from memory.turn.stubs import STUB_MARK

__all__ = ["mentions", "salient_lines", "note_text"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{5,}")
_MIN_LINE = 12
_LINE_CHARS = 240


def mentions(texts: Sequence[str]) -> Counter[str]:
    """In how many of `texts` (the agent's steps) each identifier appears."""
    out: Counter[str] = Counter()
    for text in texts:
        out.update(set(_IDENT.findall(text)))
    return out


def salient_lines(sources: Sequence[tuple[int, str, str]], mentioned: Counter[str], budget_chars: int) -> list[tuple[str, list[str]]]:
    """(label, lines) of `sources` ((tail index, call label, output)) whose lines name identifiers
    the agent mentioned, best first within `budget_chars`, then back in their order."""
    if budget_chars <= 0 or not mentioned:
        return []
    candidates: list[tuple[int, int, str, str, set[str]]] = []
    seen: set[str] = set()
    for index, label, text in sources:
        for n, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if len(stripped) < _MIN_LINE or stripped in seen:
                continue
            names = set(_IDENT.findall(stripped)) & mentioned.keys()
            if names:
                seen.add(stripped)
                candidates.append((index, n, label, line.rstrip()[:_LINE_CHARS], names))
    if not candidates:
        return []
    frequency: Counter[str] = Counter()
    for c in candidates:
        frequency.update(c[4])

    def score(names: set[str]) -> float:
        # In a fixed order: a set's order follows the process's hash seed (a last-bit difference reorders ties).
        return sum(math.log(1 + mentioned[x]) * math.log(1 + len(candidates) / frequency[x]) for x in sorted(names))

    ranked = sorted(range(len(candidates)), key=lambda k: (-score(candidates[k][4]), k))
    chosen: list[int] = []
    covered: set[str] = set()
    left = budget_chars
    for k in ranked:
        line, names = candidates[k][3], candidates[k][4]
        if names <= covered or len(line) + 1 > left:
            continue  # every name it has is shown already in a better line
        chosen.append(k)
        covered |= names
        left -= len(line) + 1
    groups: list[tuple[str, list[str]]] = []
    current: int | None = None
    for k in sorted(chosen, key=lambda k: (candidates[k][0], candidates[k][1])):
        if candidates[k][0] != current:
            groups.append((candidates[k][2], []))
            current = candidates[k][0]
        groups[-1][1].append(candidates[k][3])
    return groups


def note_text(calls: Sequence[str], shown_calls: int, call_chars: int, lines: Sequence[tuple[str, list[str]]]) -> str:
    """The note: how many calls were left out, the newest `shown_calls` of them, and the salient lines."""
    shown = list(calls)[-shown_calls:] if shown_calls > 0 else []
    parts = [f"{STUB_MARK}: {len(calls)} earlier tool calls of this task and their outputs are left out to fit the context"
             + (f"; the last {len(shown)} of them were:" if shown else ".")]
    parts += [f"- {c[:call_chars]}" for c in shown]
    if lines:
        parts.append("Lines of earlier outputs that name what this task has been working with (verbatim):")
        for label, group in lines:
            parts.append(f"[{label[:call_chars]}]")
            parts += group
    parts.append("Re-run a tool to see its output again.]")
    return "\n".join(parts)


def as_message(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}
