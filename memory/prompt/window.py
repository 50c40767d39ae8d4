"""The verbatim window: the newest messages of the conversation that a prompt shows as they were
sent, chosen newest first in groups that must stay together (a tool call with its results)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from memory.prompt.policy import LayoutPolicy

__all__ = ["Line", "History", "WINDOW_FLOOR_MESSAGES", "choose_window", "history_tokens", "lines_from"]

# A rebase's window always offers its floor share to the last exchange (two messages).
WINDOW_FLOOR_MESSAGES = 2
_TOOL_ROLES = frozenset({"tool", "function"})


@dataclass(frozen=True, slots=True)  # slots: a compile over a 100k-event session holds ~100k lines
class Line:
    """One message of the conversation before the live tail, as it goes in the prompt."""

    pos: int
    message: dict[str, Any]
    role: str
    event_id: int | None
    tokens: int

    @property
    def key(self) -> str | None:
        return f"e{self.event_id}" if self.event_id is not None else None


class History(list[Line]):
    """Lines in position order with their token total, taken once: a compile over a 100,000-event
    session asked for the total of ~96,000 lines on every compile (the compiler keeps one History
    per view, `memory.prompt.compiler.history_lines`). Not to be changed once built."""

    def __init__(self, lines: Iterable[Line] = (), tokens: int | None = None) -> None:
        super().__init__(lines)
        self.tokens = sum(line.tokens for line in self) if tokens is None else tokens

    def extended(self, lines: list[Line]) -> History:
        """A new History: these lines, then `lines`."""
        return History([*self, *lines], self.tokens + sum(line.tokens for line in lines))


def history_tokens(history: list[Line]) -> int:
    """The tokens of every line of `history`."""
    return history.tokens if isinstance(history, History) else sum(line.tokens for line in history)


def lines_from(history: list[Line], pos: int) -> list[Line]:
    """The lines at position `pos` or later (lines are in position order): found by bisection,
    not by a walk over a long session's every line."""
    return history[bisect_left(history, pos, key=_position):]


def _position(line: Line) -> int:
    return line.pos


def _groups_newest_first(history: list[Line]) -> Iterator[tuple[int, int]]:
    """(start, end) index ranges of the groups that must stay together, newest first: an assistant
    tool call with the results answering it, every other message alone. Stops at tool results whose
    call is missing: they are never shown without it. Lazy: the window stops early, and a long
    history is not walked to its start."""
    end = len(history)
    while end > 0:
        start = end - 1
        while start >= 0 and history[start].role in _TOOL_ROLES:
            start -= 1
        if start < end - 1 and (start < 0 or not history[start].message.get("tool_calls")):
            return
        yield start, end
        end = start


def choose_window(history: list[Line], room: int, policy: LayoutPolicy) -> tuple[int, int]:
    """Start (index into history) and tokens of the newest groups within the window share of
    `room`; the last exchange may take the larger floor share."""
    start, spent, kept = len(history), 0, 0
    for first, end in _groups_newest_first(history):
        cost = sum(line.tokens for line in history[first:end])
        cap = room * (policy.window_floor_share if kept < WINDOW_FLOOR_MESSAGES else policy.window_share)
        if spent + cost > cap:
            break
        start, spent, kept = first, spent + cost, kept + (end - first)
    return start, spent
