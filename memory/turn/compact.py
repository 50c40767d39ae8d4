"""Compaction of the live tail: a coding agent's tool loop inside one user turn.

An agent works inside one user turn (one task, then 30-300 tool calls and outputs), so the live
tail is the whole conversation and it outgrows any budget. When the tail would exceed its room,
older tool outputs are replaced by short deterministic stubs (`memory.turn.stubs`: tool, arguments,
size, artifact id, first and last lines, "re-run the tool"), an output identical to a later one
becomes a pointer to it, a re-run whose output changed goes up as a diff against the earlier output
(only while that one is verbatim), and long arguments of older tool calls keep their head and tail.
The task, every non-tool message and the newest `keep_steps` steps always go verbatim; a tool call
always keeps its answer right after it, with its id and name.

Cache-aware batching, in the manner of Anthropic's `clear_tool_uses` (a trigger, then clear at
least a batch): a compaction brings the tail down to `low_water` of its room; later steps are
appended untouched until the room is reached again, so the prompt's prefix is byte-identical
between compactions. The compaction points are not stored: they are a deterministic function of the
messages, found by replaying the tail's growth (every point where a request can end) against the
room. A request sees the same points its predecessors saw, because it carries their messages; so
the replay resumes where the previous request of the tail stopped (`CompactMemo` keeps that, in
memory only) and a step costs its new messages, not the tail's whole growth.

How far each older step goes at one compaction is `memory.turn.levels`; the policy, the memo, the
tail's view and the records both pass (a compaction's renderings, a replay's plan) are `memory.turn.tail`.

Pure: the caller brings the tail, the room and a token counter; a `Rewrite` hook turns a rewritten
chat-form message back into the client's wire form (a Responses item, an Anthropic block).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from memory.turn.levels import compact
from memory.turn.stubs import artifact_id
from memory.turn.tail import TOOL_ROLES, CompactMemo, CompactPolicy, Decided, Plan, Rewrite, Tail, chat_rewrite, output_text, tool_calls

__all__ = ["CompactPolicy", "Change", "Compaction", "CompactMemo", "Rewrite", "compact_tail", "chat_rewrite", "TOOL_ROLES"]


@dataclass(frozen=True)
class Change:
    """One rewritten message of the tail, for the manifest."""

    index: int
    kind: str  # stub | pointer | diff | arguments | dropped
    call_id: str
    tool: str
    artifact: str
    tokens_before: int
    tokens_after: int
    target: str | None = None  # the call a pointer or a diff refers to

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "call_id": self.call_id, "tool": self.tool, "artifact": self.artifact,
                "tokens_before": self.tokens_before, "tokens_after": self.tokens_after, "saved": self.tokens_before - self.tokens_after,
                "target": self.target}


@dataclass(frozen=True)
class Compaction:
    """The tail as it goes up. `point`: the tail index of the last compaction (messages from there
    on are verbatim); `stubbed`: (index, label, original text) of outputs no longer shown whole."""

    messages: list[dict[str, Any]]
    changes: tuple[Change, ...] = ()
    point: int = 0
    compactions: int = 0
    tokens: int = 0
    original_tokens: int = 0
    stubbed: tuple[tuple[int, str, str], ...] = ()
    # Identifies the last compaction (its messages and room) within this process.
    key: int = 0
    # Per message sent: (its index in the tail, or None for the note; verbatim or how it was rewritten).
    origin: tuple[tuple[int | None, str], ...] = ()

    @property
    def compacted(self) -> bool:
        return bool(self.changes)

    @property
    def saved(self) -> int:
        return self.original_tokens - self.tokens

    def manifest(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for c in self.changes:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return {"compactions": self.compactions, "point": self.point, "tokens_before": self.original_tokens,
                "tokens_after": self.tokens, "saved": self.saved, "counts": kinds, "changes": [c.as_dict() for c in self.changes]}



def compact_tail(tail: Sequence[dict[str, Any]], room: int, token_of: Callable[[dict[str, Any]], int],
                 policy: CompactPolicy = CompactPolicy(), rewrite: Rewrite | None = None, memo: CompactMemo | None = None) -> Compaction:
    """The tail compacted to fit `room` tokens as described in the module docstring (unchanged
    when it fits). `token_of` counts one chat message; `rewrite` maps a rewritten message back to
    the client's wire form (default: the chat form)."""
    tokens = [token_of(m) for m in tail]
    total = sum(tokens)
    if total <= room:
        return Compaction(list(tail), tokens=total, original_tokens=total)
    t = Tail(tail, tokens, tool_calls(tail), [i for i, m in enumerate(tail) if m.get("role") == "assistant"],
             [output_text(m) if m.get("role") in TOOL_ROLES else None for m in tail], token_of, memo or CompactMemo(), policy,
             rewrite or chat_rewrite)
    prefix = [0]
    for n in tokens:
        prefix.append(prefix[-1] + n)
    chain = [hash((room, policy))]
    for m in tail:
        chain.append(hash((chain[-1], _fingerprint(m))))
    # Resume after the points the previous request of this tail replayed (its last one is looked
    # at again: whether a request may end there depends on the message after it).
    found = t.memo.plan(chain[1])
    start, plan = (found.end, found) if found is not None and found.end <= len(tail) and chain[found.end] == found.chain else (1, Plan())
    decided, point, compactions, saved = plan.decided, plan.point, plan.compactions, plan.saved
    for j in range(start, len(tail) + 1):
        if j == len(tail):
            t.memo.keep_plan(chain[1], Plan(j, chain[j], decided, point, compactions, saved))
        if j < len(tail) and tail[j].get("role") in TOOL_ROLES:
            continue  # a request never ends between a call and its answers
        if prefix[j] - saved <= room:
            continue
        # The same messages compact the same way: a request replays its predecessors' compactions.
        decided = t.memo.get(("compact", chain[j], j), partial(compact, t, j, int(room * policy.low_water), room))
        saved = decided.saved(t)
        point, compactions = j, compactions + 1
    return _result(t, decided, point, compactions, total, chain[point])


def _fingerprint(m: dict[str, Any]) -> int:
    """What a compaction of a message depends on, hashed (within this process)."""
    content = m.get("content")
    wire = m.get("item", m.get("items"))
    return hash((m.get("role"), content if isinstance(content, str) else _dumps(content), m.get("tool_call_id"),
                 _dumps(m.get("tool_calls")) if m.get("tool_calls") else None, _dumps(wire) if wire is not None else None))


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _result(t: Tail, decided: Decided, point: int, compactions: int, total: int, key: int) -> Compaction:
    messages: list[dict[str, Any]] = []
    origin: list[tuple[int | None, str]] = []
    changes: list[Change] = []
    stubbed: list[tuple[int, str, str]] = []
    for i, m in enumerate(t.messages):
        if decided.note is not None and i == decided.note[0]:
            messages.append(decided.note[1])
            origin.append((None, "note"))
        found = decided.out.get(i)
        if found is None:
            messages.append(m)
            origin.append((i, "verbatim"))
            continue
        kind, wire, after, target = found
        if kind != "dropped":
            messages.append(wire)
            origin.append((i, kind))
        call_id = str(m.get("tool_call_id") or ",".join(str(c.get("id")) for c in m.get("tool_calls") or ()))
        tool = t.calls.get(str(m.get("tool_call_id") or ""), ("", ""))[0] if m.get("role") in TOOL_ROLES else "assistant"
        text = t.texts[i]
        changes.append(Change(i, kind, call_id, tool, artifact_id(text) if text is not None else "", t.tokens[i], after, target))
        if kind in ("stub", "dropped") and text is not None:
            stubbed.append((i, t.label(i), text))
    after_total = total - decided.saved(t)
    return Compaction(messages, tuple(changes), point, compactions, after_total, total, tuple(stubbed), key, tuple(origin))

