"""Retrieved evidence: choosing ranked chunks within a token room and rendering them as one
context message, chronological, each item labelled with its turn or file location."""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from memory.recall.index import SessionView, Unit, dot
from memory.ingest.redact import count_markers
from memory.recall.retrieval import Scored
from memory.recall.tokens import STORED_ENCODING, TiktokenCounter
from memory.ingest.transcript import event_to_message

__all__ = ["Evidence", "EVIDENCE_HEADER", "select_evidence", "evidence_message", "evidence_item", "unit_message", "chronological",
           "message_tokens", "redactions", "MAX_DROPPED_LISTED"]

NEAR_DUPLICATE = 0.97
MAX_DROPPED_LISTED = 50
MIN_ITEM_TOKENS = 8
EVIDENCE_HEADER = "Relevant context retrieved from earlier in this session (chronological; labels give turn or file location):"


@dataclass
class Evidence:
    pos: int
    unit: Unit
    text: str
    tokens: int
    score: float
    reason: str


def unit_message(unit: Unit) -> dict[str, Any]:
    return event_to_message(unit.role or "user", unit.content, unit.extra)


def message_tokens(unit: Unit, view: SessionView, counter: TiktokenCounter) -> int:
    if unit.tokens is not None and counter.encoding_name == STORED_ENCODING:
        return unit.tokens  # counted at ingest
    key = (counter.encoding_name, unit.key)
    cached = view.token_cache.get(key)
    if cached is None:
        cached = counter.message_tokens(unit_message(unit))
        view.token_cache[key] = cached
    return cached


def _label(unit: Unit, view: SessionView, pos: int) -> str:
    head, number, tail = _label_parts(unit, view, pos)
    return head if number is None else f"{head}{number}{tail}"


def _label_parts(unit: Unit, view: SessionView, pos: int) -> tuple[str, int | None, str]:
    """An item's label, its turn number apart (see `_cost`): (head, number, tail), or (label, None, "")."""
    excerpt = len(unit.chunk_idx) > 1
    if unit.role is not None:
        # Dates are not repeated per item: consecutive items share a "(date)" header line.
        tail = f" {unit.role}{', excerpt' if excerpt else ''}]"
        return ("[turn ", unit.turn, tail) if unit.turn is not None else (f"[turn None{tail}", None, "")
    row = view.chunk_rows[pos]
    where = unit.source or unit.kind
    lines = f":{row.start_line}-{row.end_line}" if excerpt or unit.kind in ("file", "snippet") else ""
    version = f" v{unit.version}" if unit.version > 1 and unit.kind != "diff" else ""
    kind = "diff of" if unit.kind in ("diff", "repo_diff") else unit.kind.replace("_", " ")
    return f"[{kind} {where}{lines}{version}]", None, ""


def _render(unit: Unit, view: SessionView, pos: int) -> str:
    sep = " " if unit.role is not None else "\n"
    return f"{_label(unit, view, pos)}{sep}{view.chunk_rows[pos].text}"


def _cost(view: SessionView, counter: TiktokenCounter, unit: Unit, pos: int) -> int:
    """Estimated tokens of one rendered item plus its separator: the chunk's stored count (o200k)
    or a cached count, plus its label. The exact count of the assembled prompt is what binds."""
    key = (counter.encoding_name, pos)
    cached = view.token_cache.get(key)
    if cached is None:
        body = _stored_body(view, counter, pos) or counter.count(view.chunk_rows[pos].text)
        head, number, tail = _label_parts(unit, view, pos)
        label = counter.count(head) if number is None else counter.count_numbered(head, number, tail)
        cached = body + label + 2
        view.token_cache[key] = cached
    return cached


def _stored_body(view: SessionView, counter: TiktokenCounter, pos: int) -> int:
    """The chunk's tokens as stored at ingest, when they are in `counter`'s encoding (0: count them)."""
    return view.chunk_tokens(pos) if counter.encoding_name == STORED_ENCODING else 0


def _least_cost(view: SessionView, counter: TiktokenCounter, pos: int) -> int:
    """A floor under `_cost` known without counting anything: the stored body, a label of one
    token at least, the separator."""
    return _stored_body(view, counter, pos) + 3


def evidence_item(ev: Evidence, view: SessionView, reason: str | None = None) -> dict[str, Any]:
    row = view.chunk_rows[ev.pos]
    return {
        "id": f"chunk:{row.id}", "kind": ev.unit.kind, "source": ev.unit.source or (f"turn {ev.unit.turn}" if ev.unit.turn else None),
        "reason": reason or ev.reason, "score": round(ev.score, 6), "tokens": ev.tokens,
        "event_id": int(ev.unit.key[1:]) if ev.unit.key.startswith("e") else None,
        "artifact_id": int(ev.unit.key[1:]) if ev.unit.key.startswith("a") else None,
        "turn": ev.unit.turn, "lines": [row.start_line, row.end_line],
    }


def select_evidence(view: SessionView, ranked: list[Scored], counter: TiktokenCounter, room: int, hidden: AbstractSet[str],
                    limit_score: float | None = None, floor_after: int = 0) -> tuple[list[Evidence], list[dict[str, Any]], int]:
    """Pinned chunks first, then the ranked list, within `room` tokens; units in `hidden` (already
    in the prompt, or not part of it by design) are skipped, and so are near-duplicates of chosen
    items. With `limit_score`, only candidates scoring at least that are taken once `floor_after`
    tokens are chosen. Returns the chosen items, the dropped ones worth listing, and how many more
    were dropped."""
    chosen: list[Evidence] = []
    dropped: list[dict[str, Any]] = []
    overflow = 0
    stamps: set[str] = set()
    seen_hashes: set[str] = set()
    score_of = {s.pos: s.score for s in ranked}
    pinned_positions = [p for key in sorted(view.pinned) if key not in hidden for p in view.units[key].chunk_idx]
    pinned_set = set(pinned_positions)
    pinned_sorted = sorted(pinned_positions, key=lambda p: (-score_of.get(p, 0.0), view.chunk_ids[p]))
    candidates = [(p, score_of.get(p, 0.0), "pinned") for p in pinned_sorted]
    candidates += [(s.pos, s.score, "retrieved") for s in ranked if s.pos not in pinned_set]
    near = _NearDuplicates(view, [p for p, _, _ in candidates])
    spent = 0
    for i, (pos, score, reason) in enumerate(candidates):
        if reason != "pinned" and limit_score is not None and score < limit_score and spent >= floor_after:
            break
        if room < MIN_ITEM_TOKENS and len(dropped) >= MAX_DROPPED_LISTED:
            overflow += 1
            continue
        unit = view.units[view.chunk_unit[pos]]
        if unit.key in hidden:
            continue
        if len(dropped) >= MAX_DROPPED_LISTED and _least_cost(view, counter, pos) > room:
            overflow += 1  # too large for the room left whatever its label: dropped unlisted, its label never counted
            continue
        content_hash = view.content_hash(pos)  # not the whole record: most candidates are never shown
        cost = _cost(view, counter, unit, pos)
        if unit.timestamp and unit.timestamp not in stamps:
            cost += _stamp_cost(view, counter, unit.timestamp)
        ev = Evidence(pos, unit, "", cost, score, reason)
        if ev.tokens > room and len(dropped) >= MAX_DROPPED_LISTED:
            overflow += 1  # dropped and not listed, a near-duplicate or not
            continue
        duplicate = content_hash in seen_hashes or near.of_chosen(i)
        if duplicate or ev.tokens > room:
            if len(dropped) < MAX_DROPPED_LISTED:
                dropped.append(evidence_item(ev, view, "duplicate" if duplicate else "budget"))
            else:
                overflow += 1
            continue
        ev.text = _render(unit, view, pos)
        chosen.append(ev)
        if unit.timestamp:
            stamps.add(unit.timestamp)
        room -= ev.tokens
        spent += ev.tokens
        seen_hashes.add(content_hash)
        near.choose(i)
    return chosen, dropped, overflow


class _NearDuplicates:
    """Whether a candidate's vector is within `NEAR_DUPLICATE` of a chosen item's. Each pick is
    compared with the candidates after it in one product, instead of each candidate with every
    pick (three numpy calls per candidate: most of `select_evidence`'s time). A product's terms and
    their order are the same either way, so the similarities are bit for bit those of the pairwise
    check. Candidates without a vector yet are never near-duplicates, and add nothing."""

    def __init__(self, view: SessionView, positions: list[int]) -> None:
        self._view = view
        self._positions = positions
        self._vectors: np.ndarray | None = None  # the candidates' vectors, once something is chosen
        self._best: np.ndarray | None = None  # each candidate's highest similarity to a chosen item

    def of_chosen(self, i: int) -> bool:
        return self._best is not None and self._positions[i] not in self._view.missing and float(self._best[i]) > NEAR_DUPLICATE

    def choose(self, i: int) -> None:
        if self._positions[i] in self._view.missing:
            return
        if self._vectors is None or self._best is None:
            self._vectors = self._view.vectors(self._positions)
            self._best = np.full(len(self._positions), -np.inf, dtype=np.float32)
        after = self._best[i + 1 :]
        np.maximum(after, dot(self._vectors[i + 1 :], self._vectors[i]), out=after)


def _stamp_cost(view: SessionView, counter: TiktokenCounter, stamp: str) -> int:
    """Tokens of a "(date)" header line, cached: every candidate with a new date asks for it."""
    key = (counter.encoding_name, "stamp:" + stamp)
    cached = view.token_cache.get(key)
    if cached is None:
        cached = view.token_cache[key] = counter.count(f"({stamp})") + 1
    return cached


def chronological(chosen: list[Evidence], view: SessionView) -> list[Evidence]:
    return sorted(chosen, key=lambda e: (e.unit.first_order, view.chunk_ids[e.pos]))


def evidence_message(chosen: list[Evidence], view: SessionView) -> dict[str, Any] | None:
    """One system message holding the chosen items in chronological order, with a "(date)" line
    wherever the date changes; None when nothing was chosen."""
    if not chosen:
        return None
    out: list[str] = [EVIDENCE_HEADER]
    last: str | None = None
    for ev in chronological(chosen, view):
        stamp = ev.unit.timestamp
        if stamp and stamp != last:
            out.append(f"({stamp})\n{ev.text}")
            last = stamp
        else:
            out.append(ev.text)
    return {"role": "system", "content": "\n\n".join(out)}


def redactions(messages: list[dict[str, Any]]) -> dict[str, int]:
    """Secrets redacted at ingest that appear (as markers) in what memory added to the prompt."""
    return count_markers([m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content")) for m in messages])
