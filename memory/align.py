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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Alignment", "align", "tail_start"]


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
    caller (a session header), so a request that does not start where the transcript starts is a
    continuation (a stateless or sliding-window client), not a new conversation."""
    common = _common_prefix(stored, request)
    if common == len(stored):
        return Alignment("extend", 0, common)
    if common == len(request):
        # The request is a strict prefix of what is stored: a retry. Unnamed sessions are matched
        # by content, so only a retry of the last turn is taken as one (a new chat that happens to
        # open like an old one must never rewind the old one).
        if named or _reply_start(roles) <= common:
            return Alignment("retry", 0, common)
        return Alignment("edit", 0, common)
    if common > 0 or not named:
        return Alignment("edit", 0, common)
    # A named session and a request that does not start at the transcript's start. A retry of the
    # last turn by a client that sends part of the conversation: the request is stored as a block
    # followed only by the model's reply (no user message after it).
    reply = _reply_start(roles)
    n = len(request)
    for start in range(len(stored) - n - 1, max(reply - n, 0) - 1, -1):
        if list(stored[start : start + n]) == list(request):
            return Alignment("retry", start, n)
    # Sliding window: the longest stored suffix the request starts with. Only positions holding the
    # request's first message can start one, so this is linear in the request, not the transcript.
    for start in range(max(0, len(stored) - n), len(stored)):
        if stored[start] == request[0] and list(stored[start:]) == list(request[: len(stored) - start]):
            return Alignment("window", start, len(stored) - start)
    # A whole conversation (a user message first, a reply in it) sharing nothing with what is stored:
    # a client that resends everything and edited its first message. A stateless client sends only
    # what is new (never a reply of the model's, which it got from here).
    if n >= 2 and request_roles[:1] == ["user"] and "assistant" in request_roles:
        return Alignment("edit", 0, 0)
    return Alignment("append", len(stored), 0)


def tail_start(roles: Sequence[str]) -> int:
    """Index where the live tail starts: the last user message and everything after it (a tool loop
    in progress). Without a user message, the last assistant tool call with its results, or the last
    message."""
    for i in range(len(roles) - 1, -1, -1):
        if roles[i] == "user":
            return i
    start = len(roles) - 1
    while start > 0 and roles[start] in ("tool", "function"):
        start -= 1
    return max(start, 0)
