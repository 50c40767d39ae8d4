"""The prompt layout: what goes where, and when the stable top of the prompt is rebuilt.

    the app's system message(s), verbatim
    base: the state block (decisions, constraints, open questions, glossary)   } the stable
    the verbatim window: the conversation from the window's start on            } part
    evidence retrieved for the current question (one context message)
    the live tail, verbatim: the last user message and the tool calls and results after it

A *frame* (base + where the window starts) is built at a rebase and reused while the budget allows:
each turn appends its messages to the window, so consecutive prompts share a byte-identical prefix
and the provider's prompt cache keeps hitting. Evidence is chosen per question and sits after the
stable part, so it never breaks the next turn's cache. On a frame, the evidence is sized by the
question's need: the candidates out of view, best first, down to a share of the best one's score
and within a share of the room (see `memory.prompt.policy`); nothing the prompt already shows is
repeated.
A rebase happens only when the budget forces it (the stable part no longer fits) or that block
does not fit in the room the stable part leaves. A rebase *is* the library's fresh compile: state,
the most recent turns, and evidence filling the rest of the budget.

Pure: the caller brings the stored frame, the ranked chunks and the conversation; nothing here
touches storage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from memory.errors import MemoryRuntimeError
from memory.prompt.frames import base_keys, frame_serves
from memory.prompt.evidence import (EVIDENCE_HEADER, MAX_DROPPED_LISTED, Evidence, chronological, evidence_item, evidence_message,
                       redactions, select_evidence)
from memory.recall.index import SessionView
from memory.prompt.need import asks, plain_chat, uses_tools
from memory.prompt.policy import LayoutPolicy
from memory.prompt.pricing import priced_fill, priced_policy
from memory.prompt.state_fit import state_message
from memory.prompt.window import Line, choose_window, history_tokens, lines_from, window_messages
from memory.records import FrameRecord, StateItem
from memory.ingest.redact import redacted
from memory.recall.retrieval import Scored
from memory.recall.tokens import REPLY_PRIMING_TOKENS, TiktokenCounter

__all__ = ["Line", "LayoutInput", "Layout", "build_layout", "needs_memory", "fixed_over_budget", "OVER_BUDGET_FLOOR"]

@dataclass(frozen=True)
class LayoutInput:
    session_id: str
    model: str
    budget: int
    system: list[dict[str, Any]]
    history: Sequence[Line]
    tail: list[dict[str, Any]]
    query: str
    state: list[StateItem]
    ranked: list[Scored]
    # Chain hash of the conversation's first n messages: what a frame is anchored to.
    anchor: Callable[[int], str]
    # Units that must never come back as evidence (stored copies of the live tail, a reply being
    # regenerated): the live tail goes upstream exactly once.
    hidden: frozenset[str] = frozenset()
    frame: FrameRecord | None = None
    # The evidence message an identical earlier request (a retry), or the request that opened this
    # turn (a later step of a tool loop), was sent with: reused, so the prefix stays the same.
    reuse_evidence: dict[str, Any] | None = None
    # The request is identical to one laid out on this frame (a retry): its evidence goes again,
    # and so does its lack of evidence (a retry forwards the prompt it repeats).
    retry: bool = False
    # Standalone artifacts (library-ingested files, docs) shown in full when everything fits.
    artifacts_block: dict[str, Any] | None = None
    # A one-off compile (the library's `compile`): its rebase is reported as "compiled".
    fresh: bool = False
    policy: LayoutPolicy = LayoutPolicy()
    # Whether `history` holds a tool call or result, when its builder kept that (None: look).
    history_tools: bool | None = None


@dataclass(frozen=True)
class Layout:
    messages: list[dict[str, Any]]
    tokens: int
    mode: str  # over_budget | full_history | frame | rebased (compiled, for a one-off compile)
    frame: FrameRecord | None
    evidence: dict[str, Any] | None
    items: int
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def over_budget(self) -> bool:
        return self.mode == "over_budget"


@dataclass
class _Plan:
    """A rebase: the base messages, the window's start, and the tokens both take."""

    base: list[dict[str, Any]]
    base_items: list[dict[str, Any]]
    window_start: int
    base_tokens: int
    window_tokens: int


def _tokens(counter: TiktokenCounter, messages: list[dict[str, Any]]) -> int:
    return sum(counter.message_tokens(m) for m in messages)


def _rebase_plan(inp: LayoutInput, counter: TiktokenCounter, available: int) -> _Plan:
    state_msg, used, state_tokens = state_message(inp.state, counter, int(available * inp.policy.state_share))
    start, window_tokens = choose_window(inp.history, available, inp.policy)
    base = [state_msg] if state_msg is not None else []
    items = [{"id": f"state:{s.label}", "kind": s.kind, "source": f"event {s.event_id}", "reason": "state", "score": None,
              "tokens": counter.count(s.text) + 4, "event_id": s.event_id} for s in used]
    window_start = inp.history[start].pos if start < len(inp.history) else (inp.history[-1].pos + 1 if inp.history else 0)
    return _Plan(base, items, window_start, state_tokens, window_tokens)


def _best_scores(inp: LayoutInput, view: SessionView, visible: set[str]) -> tuple[float, float]:
    """The question's best match out of view and in view."""
    best_in = best_out = 0.0
    for s in inp.ranked:  # best first
        key = view.chunk_unit[s.pos]
        if key in visible:
            best_in = max(best_in, s.score)
        elif key not in inp.hidden:
            best_out = max(best_out, s.score)
        if best_in and best_out:
            break
    return best_out, best_in


def _evidence(inp: LayoutInput, view: SessionView, counter: TiktokenCounter, room: int, visible: frozenset[str],
              floor: float | None = None, floor_after: int = 0) -> tuple[list[Evidence], list[dict[str, Any]], int, dict[str, Any] | None]:
    header = counter.message_tokens({"role": "system", "content": EVIDENCE_HEADER})
    if room <= header:
        return [], [], 0, None
    chosen, dropped, overflow = select_evidence(view, inp.ranked, counter, room - header, visible | inp.hidden, limit_score=floor,
                                                floor_after=floor_after)
    return chosen, dropped, overflow, _fit(chosen, view, counter, room, dropped)


def _fit(chosen: list[Evidence], view: SessionView, counter: TiktokenCounter, room: int,
         dropped: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The evidence message within `room` exactly: item estimates can be off by a few tokens where
    BPE merges across item boundaries, so the lowest-scored items go until the exact count fits."""
    message = evidence_message(chosen, view)
    while message is not None and counter.message_tokens(message) > room:
        worst = min(chosen, key=lambda e: (e.score, -view.chunk_ids[e.pos]))
        chosen.remove(worst)
        dropped.insert(0, evidence_item(worst, view, "budget"))
        message = evidence_message(chosen, view)
    return message


def _fixed_tokens(system: list[dict[str, Any]], tail: list[dict[str, Any]], counter: TiktokenCounter) -> int:
    return _tokens(counter, system) + _tokens(counter, tail) + REPLY_PRIMING_TOKENS


def _whole_fits(fixed_tokens: int, history: Sequence[Line], block: list[dict[str, Any]], budget: int, counter: TiktokenCounter) -> bool:
    return fixed_tokens + history_tokens(history) + _tokens(counter, block) <= budget


def needs_memory(system: list[dict[str, Any]], history: Sequence[Line], tail: list[dict[str, Any]], budget: int,
                 counter: TiktokenCounter) -> bool:
    """Whether `build_layout` will use ranked evidence, state or a stored frame for this
    conversation: not when it is over budget whatever is added, nor when the whole history fits.
    A caller that knows this early skips retrieval (and the question's embedding) altogether."""
    fixed = _fixed_tokens(system, tail, counter)
    return fixed <= budget and not _whole_fits(fixed, history, [], budget, counter)


def fixed_over_budget(system: list[dict[str, Any]], tail: list[dict[str, Any]], budget: int, counter: TiktokenCounter) -> bool:
    """Whether the app's system messages and the live tail alone exceed the budget."""
    return _fixed_tokens(system, tail, counter) > budget


def build_layout(inp: LayoutInput, view: SessionView, counter: TiktokenCounter) -> Layout:
    """The prompt for `inp` within `inp.budget`, reusing `inp.frame` when it still serves."""
    budget = inp.budget
    fixed_tokens = _fixed_tokens(inp.system, inp.tail, counter)
    if fixed_tokens > budget:
        return _over_budget(inp, counter, fixed_tokens)

    block = [inp.artifacts_block] if inp.artifacts_block else []
    if _whole_fits(fixed_tokens, inp.history, block, budget, counter):
        whole = FrameRecord(0, 0, inp.anchor(0), counter.encoding_name, budget, tuple(block), ())
        return _assemble(inp, view, counter, _Parts("full_history", whole, 0))

    available = budget - fixed_tokens
    history = history_tokens(inp.history)
    tools = inp.history_tools
    if not inp.fresh and plain_chat(inp.tail, uses_tools(line.message for line in inp.history) if tools is None else tools):
        inp = replace(inp, policy=inp.policy.for_chat(asks(inp.query)))
    inp = replace(inp, policy=priced_fill(inp.policy))
    plan = _rebase_plan(inp, counter, available)
    fresh_room = available - plan.base_tokens - plan.window_tokens
    frame, need = inp.frame, None
    if frame is not None and _serves(frame, inp, counter):
        window = lines_from(inp.history, frame.window_start)
        stable = _tokens(counter, list(frame.base)) + sum(line.tokens for line in window)
        room = available - stable
        if room >= 0:
            inp = replace(inp, policy=priced_policy(inp.policy, available, history - stable, plan.base_tokens + plan.window_tokens, stable))
            visible = _with_quoted({line.key for line in window if line.key} | base_keys(frame), view)
            if inp.retry and inp.reuse_evidence is None:
                return _assemble(inp, view, counter, _Parts("frame", frame, frame.window_start, reused=True))
            if inp.reuse_evidence is not None and counter.message_tokens(inp.reuse_evidence) <= room:
                return _assemble(inp, view, counter, _Parts("frame", frame, frame.window_start, evidence=inp.reuse_evidence, reused=True))
            best_out, best_in = _best_scores(inp, view, visible)
            found = _frame_evidence(inp, view, counter, room, fresh_room, available, frozenset(visible), best_out)
            need = {"best_out_of_view": round(best_out, 4), "best_in_view": round(best_in, 4), "room": room,
                    "block_tokens": counter.message_tokens(found[3]) if found and found[3] else 0, "fits": found is not None}
            if found is not None:
                chosen, dropped, overflow, message = found
                return _assemble(inp, view, counter, _Parts("frame", frame, frame.window_start, tuple(chosen), message, tuple(dropped),
                                                            overflow, need=need))

    window_keys = _with_quoted({line.key for line in lines_from(inp.history, plan.window_start) if line.key}, view)
    inp = replace(inp, policy=priced_policy(inp.policy, available, history - plan.window_tokens, plan.base_tokens + plan.window_tokens, 0))
    base_room = int(inp.policy.base_fill * available) - plan.base_tokens - plan.window_tokens
    evidence_room = min(fresh_room, max(base_room, 0) + int(inp.policy.rebase_evidence_share * available))
    chosen, dropped, overflow, _ = _evidence(inp, view, counter, evidence_room, frozenset(window_keys))
    # The best-ranked part of the evidence joins the frame's base (before the window: the next turns
    # find it in the provider's cache); the rest is for this question only (after the window).
    kept, extra = _split(chosen, base_room)
    base_message, message = _fit_pair(kept, extra, view, counter, fresh_room, dropped)
    base = plan.base + ([base_message] if base_message else [])
    items = plan.base_items + [{**evidence_item(e, view), "part": "base"} for e in chronological(kept, view)]
    new_frame = FrameRecord(0, plan.window_start, inp.anchor(plan.window_start), counter.encoding_name, budget, tuple(base), tuple(items))
    return _assemble(inp, view, counter, _Parts("compiled" if inp.fresh else "rebased", new_frame, plan.window_start, tuple(extra),
                                                message, tuple(dropped), overflow, need=need))


_Found = tuple[list[Evidence], list[dict[str, Any]], int, dict[str, Any] | None]


def _frame_evidence(inp: LayoutInput, view: SessionView, counter: TiktokenCounter, room: int, fresh_room: int,
                    available: int, visible: frozenset[str], best_out: float) -> _Found | None:
    """The question's own evidence on a stored frame (chosen items, dropped ones, how many more
    were dropped, the message): the candidates out of view, best first, down to the policy's
    `evidence_floor` of the best one's score, within its `evidence_share` of `available` (or a
    fresh layout's evidence room, if smaller), or its best part within `room` (what the stable part
    leaves) while that is at least the policy's `evidence_min_share` of `available`. None when the
    room is smaller: the question deserves a rebase."""
    if best_out <= 0.0:
        return [], [], 0, None
    policy = inp.policy
    floor, floor_after = policy.evidence_floor * best_out, int(policy.evidence_min_block * available)
    found = _evidence(inp, view, counter, max(min(fresh_room, int(policy.evidence_share * available)), 0), visible, floor, floor_after)
    if found[3] is None or counter.message_tokens(found[3]) <= room:
        return found
    # The whole block does not fit: its best part does while the room left is not too small.
    return _evidence(inp, view, counter, room, visible, floor, floor_after) if room >= policy.evidence_min_share * available else None


def _with_quoted(keys: set[str], view: SessionView) -> set[str]:
    """`keys` and the artifacts quoted in those messages: a code block shown in its message is not
    evidence to add again."""
    return keys.union(*(view.quoted.get(k, ()) for k in keys))


def _split(chosen: list[Evidence], cap: int) -> tuple[list[Evidence], list[Evidence]]:
    """The chosen items in selection order (best first): those within `cap` tokens, the rest."""
    kept: list[Evidence] = []
    spent = 0
    for i, ev in enumerate(chosen):
        if spent + ev.tokens > cap:
            return kept, chosen[i:]
        kept.append(ev)
        spent += ev.tokens
    return kept, []


def _fit_pair(kept: list[Evidence], extra: list[Evidence], view: SessionView, counter: TiktokenCounter, room: int,
              dropped: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The base and the per-question evidence messages within `room` together, exactly: the
    lowest-scored items go first (per-question ones before base ones) until the count fits."""
    while True:
        first, second = evidence_message(kept, view), evidence_message(extra, view)
        used = sum(counter.message_tokens(m) for m in (first, second) if m is not None)
        if used <= room or not (kept or extra):
            return first, second
        pool = extra if extra else kept
        worst = min(pool, key=lambda e: (e.score, -view.chunk_ids[e.pos]))
        pool.remove(worst)
        dropped.insert(0, evidence_item(worst, view, "budget"))


def _serves(frame: FrameRecord, inp: LayoutInput, counter: TiktokenCounter) -> bool:
    return frame_serves(frame, inp.history[-1].pos + 1 if inp.history else 0, inp.anchor, inp.budget, counter.encoding_name)


@dataclass(frozen=True)
class _Parts:
    """What one branch of `build_layout` chose, for `_assemble` to lay out and account for: the
    mode, the frame (its base and anchor), where the window starts, the evidence after the window
    (the chosen items and their message, or a retry's reused message), what was dropped, and the
    need measured on a stored frame."""

    mode: str
    frame: FrameRecord
    window_start: int
    chosen: tuple[Evidence, ...] = ()
    evidence: dict[str, Any] | None = None
    dropped: tuple[dict[str, Any], ...] = ()
    overflow: int = 0
    reused: bool = False
    need: dict[str, Any] | None = None


def _manifest_head(inp: LayoutInput, counter: TiktokenCounter) -> dict[str, Any]:
    return {"session_id": inp.session_id, "model": inp.model, "encoding": counter.encoding_name, "budget_tokens": inp.budget,
            "query": redacted(inp.query), "tail_pos": inp.history[-1].pos + 1 if inp.history else 0}


def _edge_items(inp: LayoutInput, counter: TiktokenCounter) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Manifest items of the app's system messages and of the live tail."""
    return ([{"kind": "system", "reason": "system", "tokens": counter.message_tokens(m)} for m in inp.system],
            [{"kind": str(m.get("role")), "reason": "live_tail", "tokens": counter.message_tokens(m)} for m in inp.tail])


def _window_items(window: list[Line], reason: str) -> list[dict[str, Any]]:
    return [{"id": f"event:{line.event_id}" if line.event_id else f"message:{line.pos}", "kind": line.role, "source": f"turn {line.pos + 1}",
             "reason": reason, "score": None, "tokens": line.tokens, "event_id": line.event_id, "turn": line.pos + 1} for line in window]


def _assemble(inp: LayoutInput, view: SessionView, counter: TiktokenCounter, parts: _Parts) -> Layout:
    frame, evidence = parts.frame, parts.evidence
    window = lines_from(inp.history, parts.window_start)
    shown, shown_tokens = window_messages(window, counter)
    memory_part = list(frame.base) + shown + ([evidence] if evidence is not None else [])
    messages = list(inp.system) + memory_part + list(inp.tail)
    stable = _tokens(counter, list(inp.system) + list(frame.base)) + shown_tokens
    evidence_tokens = counter.message_tokens(evidence) if evidence is not None else 0
    # Message counts add up exactly under the chat formula, so the parts' sum is the prompt's count.
    total = stable + evidence_tokens + _tokens(counter, inp.tail) + REPLY_PRIMING_TOKENS
    if total > inp.budget:  # every branch above sized its parts to fit; a check `python -O` keeps
        raise MemoryRuntimeError(f"layout over budget: {total} > {inp.budget} tokens")
    fixed_items, tail_items = _edge_items(inp, counter)
    evidence_items = [evidence_item(e, view) for e in chronological(list(parts.chosen), view)]
    if parts.reused and evidence is not None:
        evidence_items = [{"kind": "evidence", "reason": "reused", "tokens": evidence_tokens}]
    manifest = _manifest_head(inp, counter)
    if parts.need is not None:
        manifest["need"] = parts.need
    manifest.update(
        mode=parts.mode, over_budget=False, total_tokens=total,
        frame={"id": frame.id or None, "window_start": parts.window_start, "rebased": parts.mode in ("rebased", "compiled")},
        included=fixed_items + list(frame.items) + _window_items(window, "history" if parts.window_start == 0 else "window")
        + evidence_items + tail_items,
        dropped=list(parts.dropped[:MAX_DROPPED_LISTED]), dropped_count=len(parts.dropped) + parts.overflow,
        redactions=redactions(memory_part),
        totals={"stable": stable, "evidence": evidence_tokens,
                "tail": sum(i["tokens"] for i in tail_items), "history": shown_tokens},
    )
    items = len(frame.items) + len(window) + (len(parts.chosen) if not parts.reused else (1 if evidence else 0))
    return Layout(messages, total, parts.mode, frame, evidence, items, json.loads(json.dumps(manifest, default=str)))


# Over budget, memory still sends the state block and the newest turns within this share of the budget.
OVER_BUDGET_FLOOR = 0.15


def _over_budget(inp: LayoutInput, counter: TiktokenCounter, fixed_tokens: int) -> Layout:
    """The budget is a target, not a guillotine: when the app's system messages and the live tail
    alone exceed it, the prompt still carries them whole, the state block (its share of a floor,
    an oversized item shortened) and the newest turns within the rest of the floor."""
    floor = int(inp.budget * OVER_BUDGET_FLOOR)
    state_msg, used, state_tokens = state_message(inp.state, counter, floor // 2)
    start, window_tokens = choose_window(inp.history, floor - state_tokens, LayoutPolicy(window_share=1.0, window_floor_share=1.0))
    window = list(inp.history[start:])
    base = [state_msg] if state_msg is not None else []
    shown, window_tokens = window_messages(window, counter)
    messages = list(inp.system) + base + shown + list(inp.tail)
    total = fixed_tokens + state_tokens + window_tokens
    state_items = [{"id": f"state:{s.label}", "kind": s.kind, "source": f"event {s.event_id}", "reason": "state", "score": None,
                    "event_id": s.event_id} for s in used]
    fixed_items, tail_items = _edge_items(inp, counter)
    manifest = _manifest_head(inp, counter)
    manifest.update(mode="over_budget", over_budget=True, over_budget_by=total - inp.budget, total_tokens=total,
                    included=fixed_items + state_items + _window_items(window, "floor") + tail_items, dropped=[], dropped_count=0,
                    totals={"fixed": fixed_tokens, "state": state_tokens, "history": window_tokens},
                    note="the system message(s) and the live tail alone exceed the budget; the state block and the newest "
                         "turns went with them within a floor of the budget")
    return Layout(messages, total, "over_budget", None, None, len(used) + len(window), manifest)
