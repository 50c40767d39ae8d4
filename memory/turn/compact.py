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

Pure: the caller brings the tail, the room and a token counter; a `Rewrite` hook turns a rewritten
chat-form message back into the client's wire form (a Responses item, an Anthropic block).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from dataclasses import dataclass, field
from typing import Any

from memory.turn.digest import as_message, mentions, note_text, salient_lines
from memory.turn.stubs import artifact_id, call_label, diff_text, pointer_text, shorten_arguments, shorten_text, stub_text

__all__ = ["CompactPolicy", "Change", "Compaction", "CompactMemo", "Rewrite", "compact_tail", "chat_rewrite", "TOOL_ROLES"]

TOOL_ROLES = frozenset({"tool", "function"})

# (the message as the client sent it, its rewritten chat form) -> the rewritten message in the
# client's wire form, or None when that form cannot carry the rewrite (the message then stays whole).
Rewrite = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class CompactPolicy:
    """When and how far the tail is compacted (shares of the tail's room; sizes in tokens/chars)."""

    low_water: float = 0.7
    # Of a compaction's target, what the newest steps may keep verbatim before older ones are stubbed.
    verbatim_share: float = 0.5
    keep_steps: int = 2
    min_output_tokens: int = 120
    head_lines: int = 4
    tail_lines: int = 3
    diff_share: float = 0.6
    arg_chars: int = 600
    arg_keep: int = 160
    content_chars: int = 1_000
    content_keep: int = 250
    brief_chars: int = 240
    note_calls: int = 12
    note_chars: int = 80
    # Kept out of the tail's room for the earlier conversation (state, recent turns, evidence).
    memory_share: float = 0.2
    # Of a compaction's target, what the lines kept in the note for dropped steps may take (`memory.turn.digest`).
    digest_share: float = 0.6
    # Of the budget, what the excerpts of compacted outputs may take (`memory.turn.excerpts`).
    evidence_share: float = 0.05


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


class CompactMemo:
    """Bounded cache of renderings (stub, pointer, diff texts and their tokens): a request
    re-plays its tail's compactions, which render the same messages every time. It also keeps
    the last plan of each tail (`_Plan`, by the tail's first message and room), so the next
    request, which carries its predecessor's messages, resumes the replay where that one stopped."""

    def __init__(self, max_entries: int = 20_000, max_plans: int = 1_024) -> None:
        self._max = max_entries
        self._cache: dict[Any, Any] = {}
        self._max_plans = max_plans
        self._plans: dict[int, _Plan] = {}

    def plan(self, key: int) -> _Plan | None:
        return self._plans.get(key)

    def keep_plan(self, key: int, plan: _Plan) -> None:
        self._plans.pop(key, None)
        self._plans[key] = plan
        while len(self._plans) > self._max_plans:
            del self._plans[next(iter(self._plans))]

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = make()
            self._cache[key] = found
            while len(self._cache) > self._max:
                del self._cache[next(iter(self._cache))]
        return found


def chat_rewrite(original: dict[str, Any], rewritten: dict[str, Any]) -> dict[str, Any]:
    """The chat wire form: the client's message with the rewritten fields."""
    return {**original, **rewritten}


# (kind, the message in the client's wire form, its tokens, the call a pointer or diff refers to)
_Rendering = tuple[str, dict[str, Any], int, "str | None"]


@dataclass
class _Tail:
    messages: Sequence[dict[str, Any]]
    tokens: list[int]
    calls: dict[str, tuple[str, str]]  # call id -> (name, arguments)
    steps: list[int]  # indexes of the assistant messages
    texts: list[str | None]  # a tool output's text (None for other messages and non-text outputs)
    token_of: Callable[[dict[str, Any]], int]
    memo: CompactMemo
    policy: CompactPolicy
    rewrite: Rewrite

    def label(self, i: int) -> str:
        call_id = str(self.messages[i].get("tool_call_id") or "")
        name, args = self.calls.get(call_id, ("tool call", call_id))
        return call_label(name, args)

    def key(self, i: int) -> tuple[str, str] | None:
        """What makes two calls the same call: the tool and its arguments."""
        return self.calls.get(str(self.messages[i].get("tool_call_id") or ""))


def _text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("text", "input_text") for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    return None


def _calls(messages: Sequence[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                out[str(call.get("id"))] = (str(function.get("name") or ""), str(function.get("arguments") or ""))
    return out


def compact_tail(tail: Sequence[dict[str, Any]], room: int, token_of: Callable[[dict[str, Any]], int],
                 policy: CompactPolicy = CompactPolicy(), rewrite: Rewrite | None = None, memo: CompactMemo | None = None) -> Compaction:
    """The tail compacted to fit `room` tokens as described in the module docstring (unchanged
    when it fits). `token_of` counts one chat message; `rewrite` maps a rewritten message back to
    the client's wire form (default: the chat form)."""
    tokens = [token_of(m) for m in tail]
    total = sum(tokens)
    if total <= room:
        return Compaction(list(tail), tokens=total, original_tokens=total)
    t = _Tail(tail, tokens, _calls(tail), [i for i, m in enumerate(tail) if m.get("role") == "assistant"],
              [_text(m) if m.get("role") in TOOL_ROLES else None for m in tail], token_of, memo or CompactMemo(), policy,
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
    start, plan = (found.end, found) if found is not None and found.end <= len(tail) and chain[found.end] == found.chain else (1, _Plan())
    decided, point, compactions, saved = plan.decided, plan.point, plan.compactions, plan.saved
    for j in range(start, len(tail) + 1):
        if j == len(tail):
            t.memo.keep_plan(chain[1], _Plan(j, chain[j], decided, point, compactions, saved))
        if j < len(tail) and tail[j].get("role") in TOOL_ROLES:
            continue  # a request never ends between a call and its answers
        if prefix[j] - saved <= room:
            continue
        # The same messages compact the same way: a request replays its predecessors' compactions.
        decided = t.memo.get(("compact", chain[j], j), partial(_compact, t, j, int(room * policy.low_water)))
        saved = decided.saved(t)
        point, compactions = j, compactions + 1
    return _result(t, decided, point, compactions, total, chain[point])


@dataclass(frozen=True)
class _Plan:
    """Where a replay of the tail's growth stood before it looked at tail index `end` (the tail's
    length then): valid for any tail whose first `end` messages hash to `chain`."""

    end: int = 1
    chain: int = 0
    decided: _Decided = field(default_factory=lambda: _Decided({}, None))
    point: int = 0
    compactions: int = 0
    saved: int = 0


def _fingerprint(m: dict[str, Any]) -> int:
    """What a compaction of a message depends on, hashed (within this process)."""
    content = m.get("content")
    wire = m.get("item", m.get("items"))
    return hash((m.get("role"), content if isinstance(content, str) else _dumps(content), m.get("tool_call_id"),
                 _dumps(m.get("tool_calls")) if m.get("tool_calls") else None, _dumps(wire) if wire is not None else None))


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _result(t: _Tail, decided: _Decided, point: int, compactions: int, total: int, key: int) -> Compaction:
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


@dataclass
class _Decided:
    """A compaction's renderings of tail[:j] (a dropped message renders as nothing) and the note
    standing for dropped steps: (the index it goes before, the message, its tokens)."""

    out: dict[int, _Rendering]
    note: tuple[int, dict[str, Any], int] | None

    def saved(self, t: _Tail) -> int:
        return sum(t.tokens[i] - r[2] for i, r in self.out.items()) - (self.note[2] if self.note else 0)


_NOTE_LINE = 24  # tokens a dropped step's line in the note takes, about
# A step's levels: 0 verbatim, 1 outputs stubbed with their first and last lines and long arguments
# and text shortened, 2 outputs reduced to their stub's header and the step's text to its start,
# 3 the step dropped (listed in one note).


def _steps(t: _Tail, keep_from: int) -> list[tuple[int, int]]:
    """(start, end) of the assistant steps before `keep_from`: a call and the outputs answering it."""
    out: list[tuple[int, int]] = []
    for a in t.steps:
        if a >= keep_from:
            break
        end = a + 1
        while end < keep_from and t.messages[end].get("role") in TOOL_ROLES:
            end += 1
        out.append((a, end))
    return out


def _compact(t: _Tail, j: int, target: int) -> _Decided:
    """The renderings of tail[:j] that bring it to `target` tokens or as near as the rules allow:
    pointers and diffs (they lose nothing); then the newest steps within `verbatim_share` of the
    target stay whole and the older ones are stubbed; then the oldest go further, level by level.
    When steps must be dropped, `digest_share` of the target is kept for their note's lines."""
    keep_from = _protected(t, j)
    steps = _steps(t, keep_from)
    first = _render(t, j, keep_from, steps, [0] * len(steps))
    if sum(t.tokens[:j]) - first.saved(t) <= target:
        return first
    levels, decided = _levels(t, j, keep_from, steps, first, target, target)
    if decided.note is None:
        return decided
    digest = int(target * t.policy.digest_share)
    levels, decided = _levels(t, j, keep_from, steps, first, target - digest, target)
    return _render(t, j, keep_from, steps, levels, digest * 4)


def _levels(t: _Tail, j: int, keep_from: int, steps: list[tuple[int, int]], first: _Decided, target: int,
            window_target: int) -> tuple[list[int], _Decided]:
    """Each step's level (and the rendering) that brings tail[:j] to `target`; the verbatim window
    is `verbatim_share` of `window_target`."""
    levels = [0] * len(steps)
    cost = sum(t.tokens[:j])

    def shown(i: int) -> int:
        return first.out[i][2] if i in first.out else t.tokens[i]

    window = sum(shown(i) for i in range(keep_from, j))
    for n in range(len(steps) - 1, -1, -1):
        a, end = steps[n]
        window += sum(shown(i) for i in range(a, end))
        if window > t.policy.verbatim_share * window_target:
            levels[: n + 1] = [1] * (n + 1)
            break
    # A diff in the window keeps its base whole: the base costs about what the diff saves.
    start = next((a for (a, _), level in zip(steps, levels, strict=True) if level == 0), keep_from)
    for i, (kind, _, _, call) in first.out.items():
        if kind == "diff" and i >= start:
            base = next(n for n, (a, end) in enumerate(steps) if any(str(t.messages[b].get("tool_call_id")) == call for b in range(a, end)))
            levels[base] = 0
    decided = _render(t, j, keep_from, steps, levels)
    current = cost - decided.saved(t)
    old = [level > 0 for level in levels]
    # The older steps go further first; the window's steps only when nothing older is left to take.
    for level, among_old in ((2, True), (3, True), (1, False), (2, False), (3, False)):
        changed = True
        while current > target and changed:
            estimate, changed = current, False
            for n, (a, end) in enumerate(steps):
                if levels[n] >= level or old[n] != among_old:
                    continue
                before = sum(_alone(t, i, levels[n])[2] for i in range(a, end))
                # A dropped step still takes a line of the note.
                after = sum(_alone(t, i, level)[2] for i in range(a, end)) + (_NOTE_LINE if level == 3 else 0)
                levels[n], changed = level, True
                estimate -= before - after
                if estimate <= target:
                    break
            if changed:
                decided = _render(t, j, keep_from, steps, levels)
                current = cost - decided.saved(t)
    return levels, decided


def _alone(t: _Tail, i: int, level: int) -> _Rendering:
    """Message i at `level`, on its own (no pointer or diff); the message itself at level 0."""
    if level == 0:
        return ("verbatim", dict(t.messages[i]), t.tokens[i], None)
    if level >= 3:
        return ("dropped", {}, 0, None)
    return _stub(t, i, level) or ("verbatim", dict(t.messages[i]), t.tokens[i], None)


def _chat_tool(t: _Tail, i: int, text: str) -> dict[str, Any]:
    m = t.messages[i]
    return {"role": m.get("role"), "tool_call_id": m.get("tool_call_id"), "content": text}


def _stub(t: _Tail, i: int, level: int) -> _Rendering | None:
    """The lossy rendering of message i at level 1 or 2: a stub of a tool output, or an assistant
    step with its long arguments and text shortened; None when nothing would get shorter."""
    m, p = t.messages[i], t.policy
    if m.get("role") in TOOL_ROLES:
        text = t.texts[i]
        if text is None or (level == 1 and t.tokens[i] < p.min_output_tokens):
            return None
        label = t.label(i)
        head, tail = (p.head_lines, p.tail_lines) if level == 1 else (0, 0)
        stub = t.memo.get(("stub", text, label, head, tail), lambda: stub_text(text, label, head, tail))
        chat = _chat_tool(t, i, stub)
        return _checked(t, i, ("stub", chat, t.token_of(chat), None))
    if m.get("role") != "assistant":
        return None
    content = m.get("content")
    calls = m.get("tool_calls") or []
    text_chars, text_keep, arg_chars, arg_keep = ((p.content_chars, p.content_keep, p.arg_chars, p.arg_keep) if level == 1
                                                  else (p.brief_chars, p.brief_chars // 2, p.brief_chars, p.brief_chars // 3))
    new_content = shorten_text(content, text_keep) if isinstance(content, str) and len(content) > text_chars else content
    new_calls = []
    for call in calls:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        args = function.get("arguments")
        if isinstance(args, str) and len(args) > arg_chars:
            short = t.memo.get(("args", args, arg_chars, arg_keep), partial(shorten_arguments, args, arg_chars, arg_keep))
            call = {**call, "function": {**function, "arguments": short}}
        new_calls.append(call)
    if new_content == content and new_calls == list(calls):
        return None
    step: dict[str, Any] = {"role": "assistant", "content": new_content}
    if calls:
        step["tool_calls"] = new_calls
    return _checked(t, i, ("arguments", step, t.token_of(step), None))


def _checked(t: _Tail, i: int, rendering: _Rendering) -> _Rendering | None:
    """`rendering` with its chat form turned into the client's wire form, when it is shorter and
    that form can carry it; else None."""
    kind, chat, tokens, target = rendering
    if tokens >= t.tokens[i]:
        return None
    wire = t.rewrite(t.messages[i], chat)
    return (kind, wire, tokens, target) if wire is not None else None


def _protected(t: _Tail, j: int) -> int:
    """The first index of the newest `keep_steps` steps before `j` (everything from there on stays)."""
    steps = [s for s in t.steps if s < j]
    if not steps:
        return j
    return steps[-min(t.policy.keep_steps, len(steps))] if t.policy.keep_steps > 0 else j


def _render(t: _Tail, j: int, keep_from: int, steps: list[tuple[int, int]], levels: list[int], digest_chars: int = 0) -> _Decided:
    """Each rewritten message of tail[:j] given each step's level: an output identical to a later
    one that stays verbatim becomes a pointer to it; an output of a call made again with the same
    arguments goes up as a diff against the earlier output when that one is verbatim; the rest of
    a compacted step as its level says; dropped steps are listed in one note."""
    level_of = [0] * j
    for (a, end), level in zip(steps, levels, strict=True):
        for i in range(a, end):
            level_of[i] = level
    out: dict[int, _Rendering] = {}
    latest: dict[str, int] = {}  # text -> the newest verbatim output with it
    for i in range(j - 1, -1, -1):
        text = t.texts[i]
        if text is None or level_of[i] >= 3 or t.tokens[i] < t.policy.min_output_tokens:
            continue
        target = latest.get(text)
        if i < keep_from and target is not None:
            call = str(t.messages[target].get("tool_call_id"))
            label = t.label(i)
            chat = _chat_tool(t, i, t.memo.get(("ptr", text, label, call), partial(pointer_text, text, label, call)))
            found = _checked(t, i, ("pointer", chat, t.token_of(chat), call))
            if found is not None:
                out[i] = found
                continue
        if level_of[i] == 0:
            latest.setdefault(text, i)
    targets = {r[3] for r in out.values()}
    by_key: dict[tuple[str, str], int] = {}  # call -> its newest verbatim output so far
    for i in range(j):
        text, key = t.texts[i], t.key(i)
        if text is None or key is None or i in out or level_of[i] != 0 or t.tokens[i] < t.policy.min_output_tokens:
            continue
        base = by_key.get(key)
        if i < keep_from and str(t.messages[i].get("tool_call_id")) not in targets and base is not None:
            base_text = t.texts[base] or ""
            base_call = str(t.messages[base].get("tool_call_id"))
            label = t.label(i)
            diff = t.memo.get(("diff", base_text, text, label, base_call),
                              lambda: diff_text(base_text, text, label, base_call, t.policy.diff_share) or "")
            if diff:
                chat = _chat_tool(t, i, diff)
                found = _checked(t, i, ("diff", chat, t.token_of(chat), base_call))
                if found is not None:
                    out[i] = found
                    continue
        by_key[key] = i
    dropped: list[int] = []
    for i in range(j):
        if level_of[i] and i not in out:
            rendering = _alone(t, i, level_of[i])
            if rendering[0] != "verbatim":
                out[i] = rendering
            if rendering[0] == "dropped":
                dropped.append(i)
        elif level_of[i] >= 3:
            out[i] = ("dropped", {}, 0, None)
            dropped.append(i)
    briefed = [i for i in range(j) if level_of[i] == 2]
    return _Decided(out, _note(t, j, dropped, briefed, digest_chars))


def _note(t: _Tail, j: int, dropped: list[int], briefed: list[int], digest_chars: int) -> tuple[int, dict[str, Any], int] | None:
    """One message standing for the dropped steps (`memory.turn.digest`), where they were."""
    if not dropped:
        return None
    calls = [call_label(*t.calls.get(str(c.get("id")), ("", ""))) for i in dropped for c in t.messages[i].get("tool_calls") or ()]
    lines: list[tuple[str, list[str]]] = []
    if digest_chars > 0:
        sources = [(i, t.label(i), t.texts[i] or "") for i in sorted(dropped + briefed) if t.texts[i]]
        steps = [_step_text(t.messages[i]) for i in range(j) if t.messages[i].get("role") == "assistant"]
        lines = salient_lines(sources, mentions(steps), digest_chars)
    note = as_message(note_text(calls, t.policy.note_calls, t.policy.note_chars, lines))
    return dropped[0], note, t.token_of(note)


def _step_text(m: dict[str, Any]) -> str:
    parts = [m.get("content") if isinstance(m.get("content"), str) else ""]
    parts += [str((c.get("function") or {}).get("arguments") or "") for c in m.get("tool_calls") or () if isinstance(c, dict)]
    return "\n".join(p for p in parts if p)
