"""Choosing evidence: near-duplicates of a chosen item are dropped exactly as a pairwise check
drops them, an item's estimated cost counts its label as tiktoken does, and a full room takes what still fits."""

from __future__ import annotations

import numpy as np

from memory.prompt.evidence import NEAR_DUPLICATE, _cost, _label, select_evidence
from memory.recall.index import SessionView
from memory.recall.retrieval import Scored
from memory.recall.tokens import get_counter
from memory.records import ChunkRow, EventRow, SessionDelta

DIM = 64


def _view(n: int, seed: int) -> SessionView:
    """`n` one-chunk messages; every third repeats an earlier one's direction with a little noise
    (some within `NEAR_DUPLICATE`, some just outside), and the last one has no vector yet."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    for i in range(3, n, 3):
        rows[i] = rows[int(rng.integers(0, i))] + rng.standard_normal(DIM).astype(np.float32) * rng.uniform(0.1, 0.35)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    events = [EventRow(i + 1, "user_message" if i % 2 == 0 else "assistant_message", "user" if i % 2 == 0 else "assistant",
                       f"message number {i}", None, False, None, {}, None, None, 8) for i in range(n)]
    chunks = [ChunkRow(1000 + i, i + 1, None, 0, f"message number {i}", 1, 1, f"h{i}", None, 4) for i in range(n)]
    view = SessionView(DIM)
    view.apply(SessionDelta(events, [], chunks), {f"h{i}": rows[i].tobytes() for i in range(n - 1)})
    return view


def _pairwise_duplicates(view: SessionView, order: list[int], chosen: set[int]) -> set[int]:
    """Candidates a chosen item before them is within `NEAR_DUPLICATE` of, one pair at a time."""
    picked: list[np.ndarray] = []
    found: set[int] = set()
    for pos in order:
        if pos not in view.missing and picked and max(float(np.dot(v, view.vector(pos))) for v in picked) > NEAR_DUPLICATE:
            found.add(pos)
        if pos in chosen and pos not in view.missing:
            picked.append(view.vector(pos))
    return found


def test_near_duplicates_are_dropped_as_a_pairwise_check_drops_them() -> None:
    counter = get_counter("gpt-4o-mini")
    for seed in range(5):
        view = _view(90, seed)
        order = list(np.random.default_rng(seed).permutation(90))
        ranked = [Scored(int(p), 1.0 - i / 100) for i, p in enumerate(order)]
        chosen, dropped, overflow = select_evidence(view, ranked, counter, 10_000, frozenset())
        duplicates = {int(d["id"].split(":")[1]) - 1000 for d in dropped if d["reason"] == "duplicate"}
        expected = _pairwise_duplicates(view, [s.pos for s in ranked], {e.pos for e in chosen})
        assert duplicates == expected and len(expected) >= 5, seed
        assert {e.pos for e in chosen} | duplicates == set(range(90)) and overflow == 0
        assert 89 in {e.pos for e in chosen}  # without a vector: never a near-duplicate


def test_an_items_cost_counts_its_label_as_tiktoken_does() -> None:
    view = _view(2_500, 1)
    for model in ("gpt-4o-mini", "gpt-4"):
        counter = get_counter(model)
        for pos in list(range(0, 2_500, 37)) + [999, 1_000, 2_499]:
            unit = view.units[view.chunk_unit[pos]]
            body = 4 if counter.encoding_name == "o200k_base" else counter.count(view.chunk_rows[pos].text)
            assert _cost(view, counter, unit, pos) == body + counter.count(_label(unit, view, pos)) + 2


def test_a_small_room_takes_what_fits_in_rank_order_and_counts_every_item_it_drops() -> None:
    n = 400
    events = [EventRow(i + 1, "user_message", "user", f"note {i}", None, False, None, {}, None, None, 8) for i in range(n)]
    chunks = [ChunkRow(1000 + i, i + 1, None, 0, f"note {i}", 1, 1, f"h{i}", None, 5_000 if i % 2 else 1) for i in range(n)]
    view = SessionView(DIM)
    view.apply(SessionDelta(events, [], chunks), {})  # no vectors: no near-duplicates
    counter = get_counter("gpt-4o-mini")
    ranked = [Scored(p, 1.0 - i / 1000) for i, p in enumerate(np.random.default_rng(7).permutation(n).tolist())]
    chosen, dropped, overflow = select_evidence(view, ranked, counter, 470, frozenset({"e3", "e5"}))
    room, expected, listed = 470, [], 0
    for s in ranked:
        if room < 8 and listed >= 50:  # a full room and a full list: every further candidate is counted, hidden or not
            listed += 1
            continue
        if s.pos in (2, 4):  # hidden
            continue
        cost = _cost(view, counter, view.units[view.chunk_unit[s.pos]], s.pos)
        if cost <= room:
            expected.append(s.pos)
            room -= cost
        else:
            listed += 1
    assert [e.pos for e in chosen] == expected and room >= 0
    assert len(dropped) == 50 and len(dropped) + overflow == listed
    assert [int(d["id"].split(":")[1]) - 1000 for d in dropped] == [s.pos for s in ranked if s.pos not in (2, 4) and s.pos not in expected][:50]
