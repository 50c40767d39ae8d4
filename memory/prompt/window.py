"""The verbatim window: the newest messages of the conversation that a prompt shows as they were
sent, chosen newest first in groups that must stay together (a tool call with its results)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from memory.errors import MemoryRuntimeError

from memory.prompt.policy import LayoutPolicy
from memory.recall.tokens import TiktokenCounter

__all__ = ["Line", "History", "WINDOW_FLOOR_MESSAGES", "choose_window", "history_tokens", "lines_from", "window_messages",
           "UNANSWERED_MARK"]

# A rebase's window always offers its floor share to the last exchange (two messages).
WINDOW_FLOOR_MESSAGES = 2
_TOOL_ROLES = frozenset({"tool", "function"})
# How a tool call that no result answers goes up (see `window_messages`).
UNANSWERED_MARK = "[memory-runtime: this step called"


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


class History(Sequence[Line]):
    """The conversation's lines in position order, with their token total taken once. A line may
    be built only when first asked for (`make(pos, tokens)`): a compile over a 100,000-event session
    shows a window of a few lines, and building all ~96,000 (their message dicts) took ~0.4 s of the
    first compile after a restart; summing their tokens on every compile took ~15 ms. The compiler
    keeps one per view (`memory.prompt.compiler.history_lines`). Never changed once built:
    `extended` makes a new one."""

    def __init__(self, lines: Iterable[Line] = (), make: Callable[[int, int], Line] | None = None) -> None:
        built = list(lines)
        self._pos = [line.pos for line in built]
        self._tokens = [line.tokens for line in built]
        self._built: dict[int, Line] = dict(enumerate(built))
        self._make = make
        self.tokens = sum(self._tokens)

    def extended(self, positions: list[int], tokens: list[int]) -> History:
        """A new History: these lines, then a line per position with its tokens, built by `make`."""
        grown = History(make=self._make)
        grown._pos, grown._tokens = self._pos + positions, self._tokens + tokens
        grown._built = self._built  # shared: a line is the same whichever History builds it
        grown.tokens = self.tokens + sum(tokens)
        return grown

    def __len__(self) -> int:
        return len(self._pos)

    @overload
    def __getitem__(self, index: int) -> Line: ...

    @overload
    def __getitem__(self, index: slice) -> list[Line]: ...

    def __getitem__(self, index: int | slice) -> Line | list[Line]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._pos)))]
        i = index + len(self._pos) if index < 0 else index
        if not 0 <= i < len(self._pos):
            raise IndexError(index)
        line = self._built.get(i)
        if line is None:
            if self._make is None:
                raise MemoryRuntimeError("a history line without a way to build it")
            line = self._built[i] = self._make(self._pos[i], self._tokens[i])
        return line


def history_tokens(history: Sequence[Line]) -> int:
    """The tokens of every line of `history`."""
    return history.tokens if isinstance(history, History) else sum(line.tokens for line in history)


def lines_from(history: Sequence[Line], pos: int) -> list[Line]:
    """The lines at position `pos` or later (lines are in position order): found by bisection,
    not by a walk over a long session's every line."""
    return list(history[bisect_left(history, pos, key=_position):])


def _position(line: Line) -> int:
    return line.pos


def _groups_newest_first(history: Sequence[Line]) -> Iterator[tuple[int, int]]:
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


def choose_window(history: Sequence[Line], room: int, policy: LayoutPolicy) -> tuple[int, int]:
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


def window_messages(window: Sequence[Line], counter: TiktokenCounter) -> tuple[list[dict[str, Any]], int]:
    """The window's messages as they go up, and their tokens. A tool call that the tool messages
    right after it do not answer (an agent's run that ended on a call nobody answers, such as
    smolagents' `final_answer`, or a loop cut off) goes up as text saying what it called, never as
    a call: every provider refuses a call without its result. Such a message is never larger than
    the line it stands for (its arguments are cut if need be), so a window sized by its lines fits."""
    messages: list[dict[str, Any]] = []
    total = 0
    for n, line in enumerate(window):
        message = line.message
        calls = message.get("tool_calls") or []
        if calls:
            answered: set[str] = set()
            k = n + 1
            while k < len(window) and window[k].role in _TOOL_ROLES:
                answered.add(str(window[k].message.get("tool_call_id")))
                k += 1
            if any(str(c.get("id")) not in answered for c in calls):
                message = _answered_only(message, answered, line.tokens, counter)
        messages.append(message)
        total += line.tokens if message is line.message else counter.message_tokens(message)
    return messages, total


def _answered_only(message: dict[str, Any], answered: set[str], limit: int, counter: TiktokenCounter) -> dict[str, Any]:
    """`message` (an assistant tool call) with only its answered calls as calls and the others said
    in its text, within `limit` tokens: a plain chat message, since the client's wire form of it
    (blocks, items) no longer says the same."""
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or []
    kept = [c for c in calls if str(c.get("id")) in answered]
    said = [(str((c.get("function") or {}).get("name")), str((c.get("function") or {}).get("arguments") or ""))
            for c in calls if str(c.get("id")) not in answered]
    keep = max(len(arguments) for _, arguments in said)
    while True:
        notes = [f"{UNANSWERED_MARK} {name} {a if len(a) <= keep else a[:keep] + '…'}; no result of it was sent]" for name, a in said]
        out: dict[str, Any] = {"role": "assistant", "content": "\n".join([text, *notes] if text else notes)}
        if kept:
            out["tool_calls"] = kept
        if counter.message_tokens(out) <= limit or keep == 0:
            return out
        keep //= 2
