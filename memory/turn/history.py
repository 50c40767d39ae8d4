"""The conversation before a turn's live tail as prompt lines, built when the layout asks for them.

A named stateless client (it sends only its new message) on a 100,000-event session has ~96,000
lines of history from memory; building each one's message dict and counting its tokens on every
request took ~0.9 s of CPU per proxied call, against ~0.1 s for the library's compile of the same
session, whose lines are lazy (`memory.prompt.window.History`). Here too a line is built only when
the layout reads it (the window, the frame's lines): a line from memory takes its token count from
the view (`memory.prompt.evidence.message_tokens`: stored at ingest, or counted once per view), and
whether it is a tool step from its unit. A line the request carries is the request's own message
(what the client sends again next turn, so the prompt's bytes stay stable), counted as it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memory.prompt.evidence import message_tokens, unit_message
from memory.prompt.need import is_tool_step, tool_step
from memory.prompt.window import History, Line
from memory.recall.index import SessionView, Unit
from memory.recall.tokens import TiktokenCounter
from memory.records import TranscriptEntry

__all__ = ["memory_unit", "turn_history"]

def memory_unit(pos: int, keep: int, transcript: list[TranscriptEntry], view: SessionView) -> Unit:
    """The stored message at transcript position `pos` (of the `keep` positions the request keeps)."""
    event_id = transcript[pos].event_id if pos < keep else None
    unit = view.units.get(f"e{event_id}")
    if unit is None:
        raise LookupError(f"transcript position {pos} has no live event")
    return unit


def _unit_is_tool_step(unit: Unit) -> bool:
    """`is_tool_step(unit_message(unit))` without building the message: its role, its tool calls,
    or (where it has none) tool calls among the extra provider fields it was sent with, as
    `memory.ingest.transcript.event_to_message` puts them back."""
    extra = unit.extra
    return tool_step(unit.role or "user", extra.get("tool_calls") or (extra.get("meta") or {}).get("tool_calls"))


def turn_history(p: int, base: int, keep: int, carried: Sequence[dict[str, Any]], roles: Sequence[str],
                 transcript: list[TranscriptEntry], view: SessionView, counter: TiktokenCounter) -> tuple[History, bool]:
    """Lines for positions [0, `p`) and whether one is a tool call or result. Positions [`base`,
    `base + len(carried)`) are the request's `carried` messages; the others are memory's, among the
    first `keep` transcript positions. `roles`: each position's role. A line's message is built when
    first read; a missing stored event raises `LookupError` here, not then."""
    end = base + len(carried)
    head = min(base, p, keep)
    tokens, first_tool = _memory_head(head, transcript, view, counter)
    tools = first_tool is not None
    for pos in range(head, p):
        if base <= pos < end:
            message = carried[pos - base]
            tokens.append(counter.message_tokens(message))
            tools = tools or is_tool_step(message)
        else:
            unit = memory_unit(pos, keep, transcript, view)
            tokens.append(message_tokens(unit, view, counter))
            tools = tools or _unit_is_tool_step(unit)

    def make(pos: int, count: int) -> Line:
        event_id = transcript[pos].event_id if pos < keep else None
        message = carried[pos - base] if base <= pos < end else unit_message(memory_unit(pos, keep, transcript, view))
        return Line(pos, message, roles[pos], event_id, count)

    return History(make=make).extended(list(range(p)), tokens), tools


def _memory_head(n: int, transcript: list[TranscriptEntry], view: SessionView, counter: TiktokenCounter) -> tuple[list[int], int | None]:
    """The token counts of memory's messages at transcript positions [0, `n`) and the first of them
    that is a tool step (None: none is). Kept on the view per encoding, under the event and the chain
    hash (the whole prefix's messages) of its last position, and extended as the transcript grows: a
    stateless client's next request walks only the turns stored since (walking 96,000 took ~90 ms)."""
    key = f"turn:{counter.encoding_name}"  # the compiler's entries are keyed by the bare encoding name
    done, kept, _ = view.history_cache.get(key, (0, None, frozenset()))
    tokens: list[int] = []
    first: int | None = None
    if kept is not None and 0 < done <= len(transcript) and kept[0] == (transcript[done - 1].event_id, transcript[done - 1].chain_hash):
        if n <= done:
            return kept[1][:n], kept[2] if kept[2] is not None and kept[2] < n else None
        tokens, first = kept[1], kept[2]
    units = [memory_unit(pos, n, transcript, view) for pos in range(len(tokens), n)]
    tokens = tokens + [message_tokens(unit, view, counter) for unit in units]  # a new list: the kept one never changes
    if first is None:
        first = next((n - len(units) + i for i, unit in enumerate(units) if _unit_is_tool_step(unit)), None)
    if n:
        view.history_cache[key] = (n, ((transcript[n - 1].event_id, transcript[n - 1].chain_hash), tokens, first), frozenset())
    return list(tokens), first
