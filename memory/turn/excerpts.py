"""Excerpts of compacted tool outputs that match the current step, as one evidence message.

A compaction keeps the prompt small; it must not make the agent forget what it just read (the trap
of server-side context editing: the agent re-runs the cleared tool, and the cache is rebuilt every
turn). Each request, the lines of compacted outputs (stubbed or dropped) that share the most
identifiers with the current step — the latest assistant message and its calls, the outputs after
it, the task — come back verbatim, grouped under the call that produced them, in one message. The
message goes last, after the stable prefix, so it never breaks the provider's cache: the next
request appends its step where this message was and brings its own.

Pure and deterministic; an identifier's weight is its rarity among the candidate lines, so a line
naming the function the agent is about to change beats a line of boilerplate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.turn.stubs import STUB_MARK

__all__ = ["EXCERPTS_HEADER", "Candidates", "candidates", "excerpt_message", "step_query"]

EXCERPTS_HEADER = (f"{STUB_MARK}: lines of earlier tool outputs, compacted above, that bear on the current step; verbatim, "
                   "grouped by the call that printed them]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_MIN_LINE = 12
_LINE_CHARS = 300


def _idents(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def step_query(tail: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(the latest assistant message's text and call arguments, the text of the task and of the
    outputs after that message): what the current step is about, the first part weighing more."""
    last = max((i for i, m in enumerate(tail) if m.get("role") == "assistant"), default=-1)
    step = ""
    if last >= 0:
        m = tail[last]
        parts = [m.get("content") if isinstance(m.get("content"), str) else ""]
        parts += [str((c.get("function") or {}).get("arguments") or "") for c in m.get("tool_calls") or () if isinstance(c, dict)]
        step = "\n".join(p for p in parts if p)
    rest = [tail[0].get("content")] if tail and tail[0].get("role") == "user" else []
    rest += [m.get("content") for m in tail[last + 1:] if m.get("role") in ("tool", "function")]
    return step, "\n".join(r for r in rest if isinstance(r, str))


@dataclass(frozen=True)
class Candidates:
    """The lines of compacted outputs an excerpt may quote: (tail index, line number, call label,
    line) each, with its identifiers and how many lines have each identifier."""

    lines: list[tuple[int, int, str, str]]
    idents: list[set[str]]
    frequency: Counter[str]
    # The lines that have each identifier (ascending), so a step scores only the lines it shares an
    # identifier with; and the token counts of lines and labels, taken once per compaction (the
    # candidates live as long as it does, `memory.turn.room`) instead of at every step.
    index: dict[str, list[int]] = field(compare=False)
    tokens: dict[str, int] = field(default_factory=dict, compare=False)

    def count(self, text: str, count: Callable[[str], int]) -> int:
        found = self.tokens.get(text)
        if found is None:
            found = self.tokens[text] = count(text)
        return found


def candidates(compacted: Sequence[tuple[int, str, str]], shown: frozenset[str] = frozenset()) -> Candidates:
    """The quotable lines of `compacted` ((tail index, call label, original text) of outputs not
    shown whole), less those in `shown` (lines, right-stripped, the prompt shows already). Depends
    on the compaction only, so a caller may keep it until the next one."""
    lines: list[tuple[int, int, str, str]] = []
    seen: set[str] = set()
    for index, label, text in compacted:
        for n, line in enumerate(text.splitlines()):
            stripped = line.rstrip()
            if len(stripped.strip()) < _MIN_LINE or stripped in seen or stripped in shown:
                continue
            seen.add(stripped)
            lines.append((index, n, label, stripped[:_LINE_CHARS]))
    idents = [_idents(c[3]) for c in lines]
    frequency: Counter[str] = Counter()
    by_ident: dict[str, list[int]] = {}
    for k, ids in enumerate(idents):
        frequency.update(ids)
        for i in ids:
            by_ident.setdefault(i, []).append(k)
    return Candidates(lines, idents, frequency, by_ident)


def excerpt_message(found: Candidates, query: tuple[str, str], room: int, count: Callable[[str], int]) -> dict[str, Any] | None:
    """The evidence message (role system) within `room` tokens: the candidate lines sharing the
    most (and the rarest) identifiers with the current step; None when none matches."""
    step, rest = _idents(query[0]), _idents(query[1])
    if room <= 0 or not (step or rest) or not found.lines:
        return None
    total = len(found.lines)

    def weight(ident: str) -> float:
        return math.log(1 + total / found.frequency[ident])

    scored: list[tuple[float, int]] = []
    for k in sorted({k for i in step | rest for k in found.index.get(i, ())}):
        ids = found.idents[k]
        # Summed in a fixed order: a set's order follows the process's hash seed, and a last-bit
        # difference between two scores would reorder them after a restart.
        score = sum(2 * weight(i) for i in sorted(ids & step)) + sum(weight(i) for i in sorted(ids & rest - step))
        if score > 0:
            scored.append((score, k))
    scored.sort(key=lambda s: (-s[0], s[1]))
    budget = room - found.count(EXCERPTS_HEADER, count) - 8
    chosen: list[int] = []
    labels: set[str] = set()
    for _, k in scored:
        label = found.lines[k][2]
        cost = found.count(found.lines[k][3], count) + 1 + (0 if label in labels else found.count(label, count) + 4)
        if cost > budget:
            continue
        chosen.append(k)
        labels.add(label)
        budget -= cost
    if not chosen:
        return None
    chosen.sort(key=lambda k: (found.lines[k][0], found.lines[k][1]))
    lines = [EXCERPTS_HEADER]
    current: int | None = None
    for k in chosen:
        index, _, label, line = found.lines[k]
        if index != current:
            lines.append(f"[{label}]")
            current = index
        lines.append(line)
    return {"role": "system", "content": "\n".join(lines)}
