"""The note that stands for the oldest steps of a tool loop once they are left out of the prompt.

When even stubs no longer fit, the oldest steps go whole (a call never without its answer). One
note, where they were, says how many calls were left out and which (the newest of them), and keeps
lines of their outputs, and of outputs shown as stubs whether or not a step was left out (a stub's
first and last lines rarely hold what a later step takes from the middle of an output), chosen to
cover the most names per character: each line is worth the identifiers it adds to the lines chosen
before it, a name the more the rarer it is among the lines and the more often the agent's own steps
mention it. A name the agent never wrote still counts, less (`CompactPolicy.digest_others`): on the
tuning trajectories, 93% of the names a step needed and the prompt no longer carried were names the
agent had never written, read in an output long since left out. The lines are verbatim, so the
agent keeps the context of a name, not a bare list of names. Built at a compaction only, so it is
part of the stable prefix until the next one; the caller holds it to its share of tokens
(`memory.turn.levels`).
"""

from __future__ import annotations

import heapq
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
# Characters a line costs beyond its own (its newline; the label of its group, shared), in the gain per character.
_LINE_COST = 40


def mentions(texts: Sequence[str]) -> Counter[str]:
    """In how many of `texts` (the agent's steps) each identifier appears."""
    out: Counter[str] = Counter()
    for text in texts:
        out.update(set(_IDENT.findall(text)))
    return out


def salient_lines(sources: Sequence[tuple[int, str, str]], mentioned: Counter[str], budget_chars: int,
                  others: float = 0.0, label_chars: int = 80) -> list[tuple[str, list[str]]]:
    """(label, lines) of `sources` ((tail index, call label, output)) that cover the most of what
    the outputs named within `budget_chars`, then back in their order. A line is worth the
    identifiers it adds to the lines already chosen, each by its rarity among the lines and by how
    often the agent mentioned it (`others` for one it never mentioned: the next step often takes
    a name the agent has not written yet from an output it read), per character it takes (the
    first line of an output also pays for its label, cut to `label_chars`)."""
    if budget_chars <= 0 or not (mentioned or others > 0):
        return []
    candidates: list[tuple[int, int, str, str, frozenset[str]]] = []
    seen: set[str] = set()
    for index, label, text in sources:
        for n, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if len(stripped) < _MIN_LINE or stripped in seen:
                continue
            found = set(_IDENT.findall(stripped))
            names = found if others > 0 else found & mentioned.keys()
            if names:
                seen.add(stripped)
                candidates.append((index, n, label, line.rstrip()[:_LINE_CHARS], frozenset(names)))
    if not candidates:
        return []
    frequency: Counter[str] = Counter()
    for c in candidates:
        frequency.update(c[4])
    weight = {x: math.log(1 + len(candidates) / frequency[x]) * (math.log(1 + mentioned[x]) if x in mentioned else others)
              for x in frequency}

    def gain(k: int, covered: set[str]) -> float:
        # In a fixed order: a set's order follows the process's hash seed (a last-bit difference reorders ties).
        value = sum(weight[x] for x in sorted(candidates[k][4] - covered))
        return value / (len(candidates[k][3]) + _LINE_COST)

    # Greedy coverage, lazily: a line's gain only falls as others are chosen, so a stale gain on
    # top of the heap is recomputed and pushed back until the top one is current.
    heap = [(-gain(k, set()), k) for k in range(len(candidates))]
    heapq.heapify(heap)
    chosen: list[int] = []
    covered: set[str] = set()
    left = budget_chars
    opened: set[int] = set()
    while heap and left > _MIN_LINE:
        _, k = heapq.heappop(heap)
        now = gain(k, covered)
        cost = len(candidates[k][3]) + 1 + (0 if candidates[k][0] in opened else min(len(candidates[k][2]), label_chars) + 3)
        if now <= 0 or cost > left:
            continue
        if heap and -heap[0][0] > now:
            heapq.heappush(heap, (-now, k))
            continue
        chosen.append(k)
        covered |= candidates[k][4]
        opened.add(candidates[k][0])
        left -= cost
    groups: list[tuple[str, list[str]]] = []
    current: int | None = None
    for k in sorted(chosen, key=lambda k: (candidates[k][0], candidates[k][1])):
        if candidates[k][0] != current:
            groups.append((candidates[k][2], []))
            current = candidates[k][0]
        groups[-1][1].append(candidates[k][3])
    return groups


def note_text(calls: Sequence[str], shown_calls: int, call_chars: int, lines: Sequence[tuple[str, list[str]]]) -> str:
    """The note: how many calls were left out, the newest `shown_calls` of them (or, when none
    was, that outputs below are compacted), and the salient lines."""
    shown = list(calls)[-shown_calls:] if shown_calls > 0 else []
    if calls:
        parts = [f"{STUB_MARK}: {len(calls)} earlier tool calls of this task and their outputs are left out to fit the context"
                 + (f"; the last {len(shown)} of them were:" if shown else ".")]
    else:
        parts = [f"{STUB_MARK}: earlier tool outputs of this task are compacted below to fit the context."]
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
