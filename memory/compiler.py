"""The budget compiler: from a ranked session view to OpenAI messages that never exceed the budget.

Layout, most stable first so provider prompt caches keep hitting:
    the app's system message(s) verbatim
    the state block (decisions, constraints, open questions, glossary)
    retrieved evidence, chronological, each item labelled with its turn or file location
    the most recent turns verbatim (tool-call groups kept whole)
    the new user message (the live tail) verbatim
State and recent turns get bounded shares; evidence fills the rest by score. After assembly the
exact count is taken once more and, should BPE merges at item boundaries push it over, the
lowest-scored evidence goes first — the invariant holds whatever the estimates said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterator

import numpy as np

from .index import SessionView, Unit, dot
from .records import StateItem
from .redact import count_markers
from .retrieval import Scored
from .state import render_state_block
from .tokens import TiktokenCounter
from .transcript import event_to_message

__all__ = ["CompileResult", "CompileInput", "assemble"]

STATE_SHARE = 0.15
# Recent turns: the newest groups up to RECENT_SHARE of the room; the very last exchange may take up
# to RECENT_FLOOR_SHARE so the model always sees where the conversation stands.
RECENT_SHARE = 0.15
RECENT_FLOOR_SHARE = 0.30
RECENT_FLOOR_MESSAGES = 2
NEAR_DUPLICATE = 0.97
MAX_DROPPED_LISTED = 50
EVIDENCE_HEADER = "Relevant context retrieved from earlier in this session (chronological; labels give turn or file location):"


@dataclass(frozen=True)
class CompileResult:
    """The compiled prompt: `messages` ready to send, `manifest` saying what went in and why."""

    messages: list[dict[str, Any]]
    manifest: dict[str, Any]
    tokens: int
    budget_tokens: int
    over_budget: bool
    items_included: int


@dataclass(frozen=True)
class CompileInput:
    session_id: str
    model: str
    budget: int
    system: list[dict[str, Any]]
    tail: list[dict[str, Any]]
    query: str
    state: list[StateItem]
    ranked: list[Scored]


@dataclass
class _Evidence:
    pos: int
    unit: Unit
    text: str
    tokens: int
    score: float
    reason: str


def _unit_message(unit: Unit) -> dict[str, Any]:
    return event_to_message(unit.role or "user", unit.content, unit.extra)


def _label(unit: Unit, view: SessionView, pos: int) -> str:
    row = view.chunk_rows[pos]
    excerpt = len(unit.chunk_idx) > 1
    if unit.role is not None:
        # Dates are not repeated per item: consecutive items share a "(date)" header line.
        return f"[turn {unit.turn} {unit.role}{', excerpt' if excerpt else ''}]"
    where = unit.source or unit.kind
    lines = f":{row.start_line}-{row.end_line}" if excerpt or unit.kind in ("file", "snippet") else ""
    version = f" v{unit.version}" if unit.version > 1 and unit.kind != "diff" else ""
    kind = "diff of" if unit.kind in ("diff", "repo_diff") else unit.kind.replace("_", " ")
    return f"[{kind} {where}{lines}{version}]"


def _render(unit: Unit, view: SessionView, pos: int) -> str:
    text = view.chunk_rows[pos].text
    sep = " " if unit.role is not None else "\n"
    return f"{_label(unit, view, pos)}{sep}{text}"


def _groups_newest_first(messages: list[Unit]) -> Iterator[list[Unit]]:
    """Message units as groups that must stay together, newest group first, lazily: an assistant
    message with tool_calls plus the tool results answering it; every other message alone. Tool
    results whose call is missing (orphans) are never yielded."""
    pending: list[Unit] = []
    for unit in reversed(messages):
        if unit.kind == "tool_message":
            pending.insert(0, unit)
            continue
        if pending and unit.extra.get("tool_calls"):
            yield [unit, *pending]
        else:
            yield [unit]
        pending = []


def _message_tokens(unit: Unit, view: SessionView, counter: TiktokenCounter) -> int:
    key = (counter.encoding_name, unit.key)
    cached = view.token_cache.get(key)
    if cached is None:
        cached = counter.message_tokens(_unit_message(unit))
        view.token_cache[key] = cached
    return cached


def _with_date_headers(ordered: list[_Evidence]) -> list[str]:
    """Evidence texts in order, with a "(date)" line wherever the date changes."""
    out: list[str] = []
    last: str | None = None
    for ev in ordered:
        stamp = ev.unit.timestamp
        if stamp and stamp != last:
            out.append(f"({stamp})\n{ev.text}")
            last = stamp
        else:
            out.append(ev.text)
    return out


def _item(kind: str, reason: str, tokens: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "reason": reason, "tokens": tokens, **extra}


def _evidence_item(ev: _Evidence, view: SessionView, reason: str | None = None) -> dict[str, Any]:
    row = view.chunk_rows[ev.pos]
    return {
        "id": f"chunk:{row.id}", "kind": ev.unit.kind, "source": ev.unit.source or (f"turn {ev.unit.turn}" if ev.unit.turn else None),
        "reason": reason or ev.reason, "score": round(ev.score, 6), "tokens": ev.tokens,
        "event_id": int(ev.unit.key[1:]) if ev.unit.key.startswith("e") else None,
        "artifact_id": int(ev.unit.key[1:]) if ev.unit.key.startswith("a") else None,
        "turn": ev.unit.turn, "lines": [row.start_line, row.end_line],
    }


def assemble(inp: CompileInput, view: SessionView, counter: TiktokenCounter) -> CompileResult:
    """Build the compiled messages for `inp` from the session view."""
    fixed = inp.system + inp.tail
    fixed_tokens = counter.messages_tokens(fixed)
    base_manifest: dict[str, Any] = {
        "session_id": inp.session_id, "model": inp.model, "encoding": counter.encoding_name,
        "budget_tokens": inp.budget, "query": inp.query,
    }
    fixed_items = [_item("system", "system", counter.message_tokens(m)) for m in inp.system]
    fixed_items += [_item(str(m.get("role")), "user_message", counter.message_tokens(m)) for m in inp.tail]
    if fixed_tokens > inp.budget:
        manifest = {**base_manifest, "mode": "over_budget", "over_budget": True, "total_tokens": fixed_tokens,
                    "included": fixed_items, "dropped": [], "totals": {"fixed": fixed_tokens},
                    "note": "the system message(s) and the new user message alone exceed the budget; nothing else was included"}
        return CompileResult(list(fixed), manifest, fixed_tokens, inp.budget, True, 0)

    full = _full_history(inp, view, counter)
    if full is not None:
        return full

    available = inp.budget - fixed_tokens
    # State: active items in order (decisions first), within its share.
    state_msg, state_items_used, state_tokens = _state_message(inp.state, counter, int(available * STATE_SHARE))
    # Recent turns: newest groups first, contiguous, within their share.
    recent_cap = int(available * RECENT_SHARE)
    recent: list[list[Unit]] = []
    recent_tokens = 0
    for group in _groups_newest_first(view.messages):
        cost = sum(_message_tokens(u, view, counter) for u in group)
        floor = sum(len(g) for g in recent) < RECENT_FLOOR_MESSAGES
        if recent_tokens + cost > (int(available * RECENT_FLOOR_SHARE) if floor else recent_cap):
            break
        recent.insert(0, group)
        recent_tokens += cost
    recent_keys = {u.key for g in recent for u in g}

    header_tokens = counter.message_tokens({"role": "system", "content": EVIDENCE_HEADER})
    room = available - state_tokens - recent_tokens - header_tokens
    chosen, dropped, overflow = _select_evidence(inp, view, counter, room, recent_keys)

    def build() -> list[dict[str, Any]]:
        msgs = list(inp.system)
        if state_msg is not None:
            msgs.append(state_msg)
        if chosen:
            ordered = sorted(chosen, key=lambda e: (e.unit.first_order, view.chunk_ids[e.pos]))
            body = "\n\n".join([EVIDENCE_HEADER, *_with_date_headers(ordered)])
            msgs.append({"role": "system", "content": body})
        msgs.extend(_unit_message(u) for g in recent for u in g)
        msgs.extend(inp.tail)
        return msgs

    messages = build()
    total = counter.messages_tokens(messages)
    while total > inp.budget and (chosen or recent):
        if chosen:
            worst = min(chosen, key=lambda e: (e.score, -view.chunk_ids[e.pos]))
            chosen.remove(worst)
            dropped.insert(0, _evidence_item(worst, view, "budget"))
        else:
            recent.pop(0)
        messages = build()
        total = counter.messages_tokens(messages)

    included = list(fixed_items[: len(inp.system)])
    included += [{"id": f"state:{s.label}", "kind": s.kind, "source": f"event {s.event_id}", "reason": "state",
                  "score": None, "tokens": counter.count(s.text) + 4, "event_id": s.event_id} for s in state_items_used]
    included += [_evidence_item(e, view) for e in sorted(chosen, key=lambda e: (e.unit.first_order, view.chunk_ids[e.pos]))]
    included += [{"id": f"event:{u.key[1:]}", "kind": u.kind, "source": f"turn {u.turn}", "reason": "recent", "score": None,
                  "tokens": _message_tokens(u, view, counter), "event_id": int(u.key[1:]), "turn": u.turn}
                 for g in recent for u in g]
    included += fixed_items[len(inp.system):]
    evidence_tokens = sum(e.tokens for e in chosen)
    manifest = {
        **base_manifest, "mode": "compiled", "over_budget": False, "total_tokens": total,
        "included": included, "dropped": dropped[:MAX_DROPPED_LISTED], "dropped_count": len(dropped) + overflow,
        "redactions": _redactions(messages[len(inp.system): len(messages) - len(inp.tail)]),
        "totals": {"fixed": fixed_tokens, "state": state_tokens if state_msg else 0, "evidence": evidence_tokens,
                   "recent": recent_tokens},
    }
    items = len(state_items_used) + len(chosen) + sum(len(g) for g in recent)
    return CompileResult(messages, manifest, total, inp.budget, False, items)


def _state_message(items: list[StateItem], counter: TiktokenCounter, cap: int) -> tuple[dict[str, Any] | None, list[StateItem], int]:
    active = [i for i in items if i.status == "active"]
    used: list[StateItem] = []
    msg: dict[str, Any] | None = None
    tokens = 0
    for item in active:
        trial = render_state_block(used + [item])
        cost = counter.message_tokens({"role": "system", "content": trial})
        if cost > cap:
            continue
        used.append(item)
        msg, tokens = {"role": "system", "content": trial}, cost
    return msg, used, tokens


def _cost(view: SessionView, counter: TiktokenCounter, unit: Unit, pos: int) -> int:
    """Estimated tokens of one rendered evidence item plus its separator: the chunk's stored count
    (o200k) or a cached count, plus its label. The exact count after assembly is what binds."""
    key = (counter.encoding_name, pos)
    cached = view.token_cache.get(key)
    if cached is None:
        row = view.chunk_rows[pos]
        body = row.tokens if counter.encoding_name == "o200k_base" and row.tokens else counter.count(row.text)
        cached = body + counter.count(_label(unit, view, pos)) + 2
        view.token_cache[key] = cached
    return cached


MIN_ITEM_TOKENS = 8


def _select_evidence(inp: CompileInput, view: SessionView, counter: TiktokenCounter, room: int, recent_keys: set[str]) -> tuple[list[_Evidence], list[dict[str, Any]], int]:
    chosen: list[_Evidence] = []
    dropped: list[dict[str, Any]] = []
    overflow = 0  # dropped candidates beyond those listed
    stamps: set[str] = set()
    seen_hashes: set[str] = set()
    vectors = view.vectors
    # Vectors of the chosen items, in a buffer that doubles when full (stacking one row per pick
    # made the near-duplicate check quadratic in copies).
    chosen_vecs = np.zeros((16, vectors.shape[1]), dtype=np.float32)
    n_chosen = 0
    score_of = {s.pos: s.score for s in inp.ranked}
    pinned_positions = [p for key in sorted(view.pinned) if key not in recent_keys for p in view.units[key].chunk_idx]
    pinned_set = set(pinned_positions)
    # Pinned chunks first (best-matching first within them), then the ranked list.
    pinned_sorted = sorted(pinned_positions, key=lambda p: (-score_of.get(p, 0.0), view.chunk_ids[p]))
    candidates = [(p, score_of.get(p, 0.0), "pinned") for p in pinned_sorted]
    candidates += [(s.pos, s.score, "retrieved") for s in inp.ranked if s.pos not in pinned_set]
    for pos, score, reason in candidates:
        if room < MIN_ITEM_TOKENS and len(dropped) >= MAX_DROPPED_LISTED:
            overflow += 1
            continue
        unit = view.units[view.chunk_unit[pos]]
        if unit.key in recent_keys:
            continue
        row = view.chunk_rows[pos]
        cost = _cost(view, counter, unit, pos)
        if unit.timestamp and unit.timestamp not in stamps:
            cost += _stamp_cost(view, counter, unit.timestamp)
        ev = _Evidence(pos, unit, "", cost, score, reason)
        duplicate = row.content_hash in seen_hashes or (
            pos not in view.missing and n_chosen > 0 and float(np.max(dot(chosen_vecs[:n_chosen], vectors[pos]))) > NEAR_DUPLICATE
        )
        if duplicate or ev.tokens > room:
            if len(dropped) < MAX_DROPPED_LISTED:
                dropped.append(_evidence_item(ev, view, "duplicate" if duplicate else "budget"))
            else:
                overflow += 1
            continue
        ev.text = _render(unit, view, pos)
        chosen.append(ev)
        if unit.timestamp:
            stamps.add(unit.timestamp)
        room -= ev.tokens
        seen_hashes.add(row.content_hash)
        if pos not in view.missing:
            if n_chosen == len(chosen_vecs):
                chosen_vecs = np.concatenate([chosen_vecs, np.zeros_like(chosen_vecs)])
            chosen_vecs[n_chosen] = vectors[pos]
            n_chosen += 1
    return chosen, dropped, overflow


def _stamp_cost(view: SessionView, counter: TiktokenCounter, stamp: str) -> int:
    """Tokens of a "(date)" header line, cached: every candidate with a new date asks for it."""
    key = (counter.encoding_name, "stamp:" + stamp)
    cached = view.token_cache.get(key)
    if cached is None:
        cached = view.token_cache[key] = counter.count(f"({stamp})") + 1
    return cached


def _full_history(inp: CompileInput, view: SessionView, counter: TiktokenCounter) -> CompileResult | None:
    """When everything stored fits, send it unchanged: standalone artifacts (latest versions) in
    one context block, then every message in order. Returns None when it does not fit."""
    # Cheap early exit: walk messages newest first and stop as soon as they alone overflow.
    groups: list[list[Unit]] = []
    spent = counter.messages_tokens(inp.system + inp.tail)
    for group in _groups_newest_first(view.messages):
        spent += sum(_message_tokens(u, view, counter) for u in group)
        if spent > inp.budget:
            return None
        groups.insert(0, group)
    # Every snapshot the caller ingested (older versions included: they are part of the history);
    # derived diffs and code blocks already inside messages are not.
    artifacts = sorted((u for u in view.units.values() if u.key.startswith("a") and not u.derived and u.kind != "diff"),
                       key=lambda u: (u.first_order, u.key))
    msgs = list(inp.system)
    if artifacts:
        blocks = [f"[{u.kind.replace('_', ' ')} {u.source or ''}]\n" + "\n".join(view.chunk_rows[p].text for p in u.chunk_idx) for u in artifacts]
        msgs.append({"role": "system", "content": "\n\n".join([EVIDENCE_HEADER, *blocks])})
    msgs.extend(_unit_message(u) for g in groups for u in g)
    msgs.extend(inp.tail)
    total = counter.messages_tokens(msgs)
    if total > inp.budget:
        return None
    included = [{"id": f"event:{u.key[1:]}", "kind": u.kind, "source": f"turn {u.turn}", "reason": "history", "score": None,
                 "tokens": _message_tokens(u, view, counter), "event_id": int(u.key[1:]), "turn": u.turn} for g in groups for u in g]
    included += [{"id": f"artifact:{u.key[1:]}", "kind": u.kind, "source": u.source, "reason": "history", "score": None,
                  "tokens": None, "artifact_id": int(u.key[1:])} for u in artifacts]
    manifest = {"session_id": inp.session_id, "model": inp.model, "encoding": counter.encoding_name, "budget_tokens": inp.budget,
                "query": inp.query, "mode": "full_history", "over_budget": False, "total_tokens": total,
                "included": included, "dropped": [], "dropped_count": 0, "totals": {"history": total},
                "redactions": _redactions(msgs[len(inp.system): len(msgs) - len(inp.tail)])}
    return CompileResult(msgs, json.loads(json.dumps(manifest)), total, inp.budget, False, len(included))


def _redactions(messages: list[dict[str, Any]]) -> dict[str, int]:
    """Secrets redacted at ingest that appear (as markers) in what memory added to the prompt."""
    return count_markers([m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content")) for m in messages])
