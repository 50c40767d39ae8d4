"""Where a request's messages stand against the stored transcript.

Clients send their conversation in different shapes: the whole history every call, only the newest
message (stateless), a sliding window of the last few messages, the same request twice (a retry or a
"regenerate"), or an edited history. `align` maps the request onto the stored transcript so that
every message is stored once and the prompt built from it is an exact continuation of the
conversation. It works on message hashes and roles only and is pure.

The result reads: the request's messages `request[:offset]` are already stored, at transcript
positions `base .. base+offset`; `request[offset:]` are new and belong after `transcript[:keep]`
(`keep == base + offset`). What the transcript holds beyond `keep` is the stored continuation of
this request: with new messages it is an abandoned branch (an edit); without, the request is a
retry and that continuation is the reply being regenerated.

`fixed_context` picks out, before alignment, what an agent re-sends every call that is not a
turn of the conversation (see its docstring): those messages go up in their place each call and
are never stored as turns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from memory.ingest.transcript import message_text

__all__ = ["Alignment", "align", "tail_start", "fixed_context", "leading_context", "is_observation", "is_tagged_context",
           "FIXED_HEAD_MAX", "StoredHead", "stored_head"]

# How many leading messages may be a client's fixed head (few-shot pairs, context messages) that
# precedes the stored conversation; bounds the extra lookups of a request matched by content.
FIXED_HEAD_MAX = 12


@dataclass(frozen=True)
class Alignment:
    kind: str  # extend | retry | edit | window | append
    base: int
    offset: int

    @property
    def keep(self) -> int:
        return self.base + self.offset


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _reply_start(roles: Sequence[str]) -> int:
    """Index where the transcript's trailing reply segment (everything after its last user message)
    begins; len(roles) when it ends with a user message or has none."""
    for i in range(len(roles) - 1, -1, -1):
        if roles[i] == "user":
            return i + 1
    return len(roles)


def align(stored: Sequence[str], roles: Sequence[str], request: Sequence[str], named: bool,
          request_roles: Sequence[str] = ()) -> Alignment:
    """Align the request's message hashes with the stored transcript's (`roles` are the stored
    messages' roles, `request_roles` the request's). `named` says the session was named by the
    caller (a session header): the request may then be the whole conversation, its last few
    messages (a sliding window) or only what is new (a stateless client). Where several readings
    fit — identical messages recur in real chats — the one that explains more of the request wins,
    and on a tie the one that takes nothing out of the transcript."""
    common = _common_prefix(stored, request)
    if common == len(stored):
        return Alignment("extend", 0, common)
    n = len(request)
    last_turn_retry = common == n and _reply_start(roles) <= common
    if not named:
        # Matched by content: only the last turn may be retried (a new chat that opens like an old
        # one must never rewind the old one).
        return Alignment("retry", 0, common) if last_turn_retry else Alignment("edit", 0, common)
    if last_turn_retry:
        return Alignment("retry", 0, common)
    partial = _partial(stored, roles, request)
    if partial is not None and partial.offset >= common:
        return partial
    if common == n:
        # A rewind to an earlier point of the conversation; a lone message is rather a stateless
        # client's next one.
        return Alignment("retry", 0, common) if n >= 2 else Alignment("append", len(stored), 0)
    if common > 0:
        return Alignment("edit", 0, common)
    # A whole conversation (a user message first, a reply in it) sharing nothing with what is stored:
    # a client that resends everything and edited its first message. A stateless client sends only
    # what is new (never a reply of the model's, which it got from here).
    if n >= 2 and list(request_roles[:1]) == ["user"] and "assistant" in request_roles:
        return Alignment("edit", 0, 0)
    return Alignment("append", len(stored), 0)


def _partial(stored: Sequence[str], roles: Sequence[str], request: Sequence[str]) -> Alignment | None:
    """The request read as the end of the conversation: a retry of the last turn by a client that
    sends only part of it (the request stored as a block followed only by the model's reply, no
    user message after it), or a sliding window (the longest stored suffix the request starts with).
    Only positions holding the request's first message can start either, so this is linear in the
    request, not the transcript."""
    n = len(request)
    reply = _reply_start(roles)
    for start in range(len(stored) - n - 1, max(reply - n, 0) - 1, -1):
        if list(stored[start : start + n]) == list(request):
            return Alignment("retry", start, n)
    for start in range(max(0, len(stored) - n), len(stored)):
        if stored[start] == request[0] and list(stored[start:]) == list(request[: len(stored) - start]):
            return Alignment("window", start, len(stored) - start)
    return None


# A tool's output sent back as a user message, the ReAct way: it starts "Observation:" (the
# convention's word, which smolagents and LangChain's ReAct agents keep), or it names the call it
# answers on its first line ("Call id: call_x") and then is the call's observation or error.
_OBSERVATION = re.compile(r"\A(?:Observation:|Call id: [^\n]*\n(?:Observation|Error):)")


def is_observation(message: dict[str, Any]) -> bool:
    """Whether a user message is a tool's output in a text-protocol agent loop, not a new request."""
    if message.get("role") != "user":
        return False
    content = message.get("content")
    return isinstance(content, (str, list)) and bool(_OBSERVATION.match(message_text(content).lstrip()))


def tail_start(roles: Sequence[str], observations: Collection[int] = ()) -> int:
    """Index where the live tail starts: the last user message and everything after it (a tool loop
    in progress; a user message at a position in `observations` is a tool's output and belongs to
    the loop). Without a user message, the last assistant tool call with its results, or the last
    message."""
    for i in range(len(roles) - 1, -1, -1):
        if roles[i] == "user" and i not in observations:
            return i
    start = len(roles) - 1
    while start > 0 and roles[start] in ("tool", "function"):
        start -= 1
    return max(start, 0)


# Context an agent writes for the model, not a person's words: one tagged block, perhaps under a
# heading line (Codex: "<environment_context>...</environment_context>", "# AGENTS.md instructions
# for /repo\n\n<INSTRUCTIONS>...</INSTRUCTIONS>").
_TAGGED = re.compile(r"\A(?:[^\n<]*\n\s*)?<([A-Za-z][\w.-]*)(?:\s[^>]*)?>.*</\1>\Z", re.S)


def is_tagged_context(message: dict[str, Any]) -> bool:
    """Whether a user message is context an agent generated: one tagged block (see `_TAGGED`)."""
    if message.get("role") != "user":
        return False
    content = message.get("content")
    return isinstance(content, (str, list)) and bool(_TAGGED.match(message_text(content).strip()))


def leading_context(roles: Sequence[str], tagged: Collection[int]) -> int:
    """How many user messages open the conversation, each a tagged context block (positions in
    `tagged`, see `is_tagged_context`) followed by another user message: context an agent sends
    ahead of the first question (Codex's `<environment_context>`, its AGENTS.md message). A person's
    message re-sent ahead of the next one (a retry after a failed call) is conversation."""
    n = 0
    while n + 1 < len(roles) and n in tagged and roles[n] == "user" and roles[n + 1] == "user":
        n += 1
    return n


def fixed_context(stored: Sequence[str], request: Sequence[str], request_roles: Sequence[str], named: bool,
                  observations: Collection[int] = (), tagged: Collection[int] = ()) -> list[int]:
    """Positions of the request's conversation messages that are the client's fixed context, sent
    every call and never a turn: the user messages ahead of the first question (`leading_context`);
    and, for a session matched by its content (no session header), everything the request carries
    besides the stored conversation and the live tail: on the first call,
    the history the client brings when it is `FIXED_HEAD_MAX` messages or fewer (a few-shot
    exchange, aider's files and repository map; a longer one is a conversation from before the
    proxy, stored as such); on later calls, the messages ahead of the stored conversation (found
    among the first `FIXED_HEAD_MAX`, none of them a stored message: a stateless or sliding-window
    client's request never has messages ahead of the conversation's start, so only a fixed head
    can, and a window that repeats the conversation's first messages is not read as one) and those
    between its end and the live tail (aider sends its files message after the history).
    A named session stores what its client sends as the conversation on its first call: a request
    that brings turns memory failed to store (a reply cut off, a store that refused a write) or a
    conversation from before the proxy must be caught up, never taken for fixed context. On later
    calls the same head rule holds, where the head is more than the tagged context: a catch-up
    grows at the end of the stored conversation, never ahead of it (the head a first call stored
    is found by `stored_head`).
    `observations`: positions of user messages that are tool outputs (`is_observation`); `tagged`:
    those that are tagged context blocks (`is_tagged_context`)."""
    head = leading_context(request_roles, tagged)
    if named and not stored:
        return list(range(head))
    tail = tail_start(request_roles, observations)
    if not stored:
        return list(range(tail)) if tail <= FIXED_HEAD_MAX else list(range(head))
    if named and head < len(request) and request[head] == stored[0]:
        return list(range(head))  # the request starts where the conversation starts: nothing ahead of it
    known: set[str] | None = None  # built only when a head is looked for (a long session's every hash)
    # A named session's head must be more than its tagged context: with nothing ahead of the stored
    # conversation, what follows its end is turns memory failed to store, to be caught up.
    for k in range(head + (1 if named else 0), min(len(request), FIXED_HEAD_MAX + 1)):
        known = set(stored) if known is None and k > head else known
        if known is not None and request[k - 1] in known:
            break  # a head is what the client sends and memory never stored (a window's start is conversation)
        common = _common_prefix(stored, request[k:])
        if common == len(stored):
            return list(range(k)) + list(range(k + common, max(tail, k + common)))
        if common and common == len(request) - k:
            return list(range(k))  # a retry of the stored conversation's last turn
        live = len(request) - tail
        if common and k + common < tail and list(stored[common : common + live]) == list(request[tail:]):
            return list(range(k)) + list(range(k + common, tail))  # the same, with context before the live tail
    return list(range(head))


@dataclass(frozen=True)
class StoredHead:
    """A named session's fixed head that memory stored as turns on its first call (see
    `stored_head`): `fixed` are the request's positions that are fixed context, `leaves` how many
    of the stored transcript's first positions leave the conversation."""

    fixed: list[int]
    leaves: int


def stored_head(stored: Sequence[str], stored_role: Callable[[int], str], request: Sequence[str], request_roles: Sequence[str],
                observations: Collection[int] = (), tagged: Collection[int] = ()) -> StoredHead | None:
    """A named session's first call stores all it brings (it may be a conversation from before the
    proxy, or turns memory failed to store); a later call shows which of it was the client's fixed
    layout. That call sends the stored transcript's first `k` messages byte-identical at its head
    (after its tagged context), then the stored conversation from position `j > k` to its end,
    then, right before the live tail, as many messages in the same roles as the `k..j` it skipped:
    the head stays where it was, the turns memory relayed since come after it, and what the first
    call had between the head and its question moved behind them (aider: few-shot exchange,
    history, files message, question). The head and the moved messages are fixed context, and the
    stored `0..j` leave the conversation. A caught-up history grows at its end (an extension of
    the stored transcript), so it never reads this way, nor does a stateless or sliding-window
    request (nothing ahead of the stored conversation) or an edit (nothing moved behind it).
    `j` is at most `FIXED_HEAD_MAX`; `stored_role(i)` is the role at stored position `i`. Pure;
    None when the request does not read so. Constant time unless the request opens with the
    stored transcript's first message and does not end like it (a long session's requests)."""
    head = leading_context(request_roles, tagged)
    body = request[head:]
    if not body or body[0] != stored[0] or (len(body) >= len(stored) and body[len(stored) - 1] == stored[-1]):
        return None  # no stored head comes back; or the stored conversation, extended: a catch-up grows at its end
    tail = tail_start(request_roles, observations) - head
    for k in range(1, min(len(stored), FIXED_HEAD_MAX)):
        if k > len(body) or stored[k - 1] != body[k - 1]:
            break
        for j in range(k + 1, min(len(stored), FIXED_HEAD_MAX + 1)):
            rest = len(stored) - j
            moved = k + rest
            if (moved + (j - k) == tail and body[k] == stored[j] and list(body[k:moved]) == list(stored[j:])
                    and list(request_roles[head + moved : head + tail]) == [stored_role(i) for i in range(k, j)]):
                return StoredHead(list(range(head + k)) + list(range(head + moved, head + tail)), j)
    return None
