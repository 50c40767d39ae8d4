"""The layout's rules, one at a time, on a hand-built session view (no store, no HTTP): when the
whole history goes, when a frame is built (a rebase) and reused, how far a question reaches beyond
the prompt (need), and where the `cache` and `recall` policies part ways."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from memory.prompt.layout import LayoutInput, Layout, Line, build_layout, needs_memory
from memory.prompt.policy import POLICIES, LayoutPolicy
from memory.recall.index import SessionView
from memory.recall.retrieval import Scored
from memory.recall.tokens import get_counter
from memory.records import ChunkRow, EventRow, SessionDelta

COUNTER = get_counter("gpt-4o-mini")
SYSTEM = [{"role": "system", "content": "You are terse."}]
TOPICS = ["ledger", "invoices", "payroll", "backups", "deploys", "alerts", "billing", "quotas", "tokens", "exports"]


def _text(i: int) -> str:
    role = "user" if i % 2 == 0 else "assistant"
    return f"{role} turn {i} about {TOPICS[i % len(TOPICS)]}: " + " ".join(f"w{i}x{k}" for k in range(30))


def _session(n: int) -> tuple[SessionView, list[Line]]:
    """A view of `n` messages (event i+1 at transcript position i, one chunk each) and their lines."""
    events = [EventRow(i + 1, "user_message" if i % 2 == 0 else "assistant_message", "user" if i % 2 == 0 else "assistant", _text(i),
                       None, False, None, {"content": _text(i)}, None, None) for i in range(n)]
    chunks = [ChunkRow(i + 1, i + 1, None, 0, _text(i), 1, 1, f"h{i}", COUNTER.count(_text(i))) for i in range(n)]
    view = SessionView(dim=4)
    view.apply(SessionDelta(events=events, artifacts=[], chunks=chunks), {})
    lines = []
    for i, ev in enumerate(events):
        message = {"role": ev.role, "content": ev.content}
        lines.append(Line(i, message, str(ev.role), ev.id, COUNTER.message_tokens(message)))
    return view, lines


def _anchor(n: int) -> str:
    return f"anchor-{n}"


def _input(lines: list[Line], budget: int, *, ranked: list[Scored] | None = None, frame: Any = None,
           policy: LayoutPolicy = POLICIES["cache"], query: str = "what about the ledger?") -> LayoutInput:
    return LayoutInput(session_id="s", model="gpt-4o-mini", budget=budget, system=SYSTEM, history=lines,
                       tail=[{"role": "user", "content": query}], query=query, state=[], ranked=ranked or [], anchor=_anchor,
                       frame=frame, policy=policy)


def _layout(view: SessionView, inp: LayoutInput) -> Layout:
    layout = build_layout(inp, view, COUNTER)
    assert layout.tokens == sum(COUNTER.message_tokens(m) for m in layout.messages) + 3  # reply priming; the count is exact
    assert layout.tokens <= inp.budget or layout.over_budget
    return layout


def _window_positions(layout: Layout, lines: list[Line]) -> list[int]:
    shown = [json.dumps(m, sort_keys=True) for m in layout.messages]
    return [line.pos for line in lines if json.dumps(line.message, sort_keys=True) in shown]


def test_the_whole_history_goes_when_it_fits() -> None:
    view, lines = _session(6)
    inp = _input(lines, 8000)
    assert not needs_memory(inp.system, lines, inp.tail, inp.budget, COUNTER)
    layout = _layout(view, inp)
    assert layout.mode == "full_history"
    assert layout.messages == SYSTEM + [line.message for line in lines] + inp.tail


def test_over_budget_sends_the_system_and_the_tail_alone() -> None:
    view, lines = _session(6)
    layout = _layout(view, _input(lines, 5))  # less than the system message and the question take
    assert layout.mode == "over_budget" and layout.messages == SYSTEM + [{"role": "user", "content": "what about the ledger?"}]


def test_a_rebase_keeps_the_newest_turns_and_anchors_its_frame_there() -> None:
    view, lines = _session(40)
    inp = _input(lines, 1500)
    assert needs_memory(inp.system, lines, inp.tail, inp.budget, COUNTER)
    layout = _layout(view, inp)
    assert layout.mode == "rebased" and layout.frame is not None
    start = layout.frame.window_start
    assert 0 < start < 40 and _window_positions(layout, lines) == list(range(start, 40))  # the newest turns, in order
    assert layout.frame.anchor == _anchor(start) and layout.frame.budget == 1500
    # The window takes at most its share of the room (the last exchange may take the floor share).
    window_tokens = sum(line.tokens for line in lines[start:])
    assert window_tokens <= POLICIES["cache"].window_floor_share * (1500 - 3)


def test_a_frame_is_reused_while_it_serves_and_the_prompt_keeps_its_prefix() -> None:
    view, lines = _session(44)
    first = _layout(view, _input(lines[:40], 1500))
    assert first.frame is not None
    frame = replace(first.frame, id=7)
    then = _layout(view, _input(lines[:42], 1500, frame=frame))  # one more exchange on the same conversation
    assert then.mode == "frame" and then.frame == frame
    stable = len(SYSTEM) + len(frame.base) + (40 - frame.window_start)
    assert then.messages[:stable] == first.messages[:stable]  # byte-identical prefix: the provider's cache hits
    # Another budget, or a conversation that no longer begins as the frame was anchored, gets a new frame.
    assert _layout(view, _input(lines[:42], 1600, frame=frame)).mode == "rebased"
    moved = LayoutInput(**{**_input(lines[:42], 1500, frame=frame).__dict__, "anchor": lambda n: f"edited-{n}"})
    assert _layout(view, moved).mode == "rebased"


def _shown(layout: Layout, pos: int) -> bool:
    """Whether message `pos` of `_session` came back as evidence (its last word is unique to it)."""
    return f"w{pos}x29" in json.dumps(layout.evidence)


def test_on_a_frame_the_question_gets_its_matches_out_of_view_down_to_the_floor() -> None:
    """The question's own evidence after the cached part: the best matches out of view, down to the
    policy's `evidence_floor` of the best one's score, however well something in view scores (a run
    of look-alike questions in view must not hide the turn asked about). The policy's own values, as
    a tool loop gets them (a plain chat's tuning lifts the floor for a small block: test_policy)."""
    view, lines = _session(44)
    policy = replace(POLICIES["cache"], chat=None)
    frame = replace(_layout(view, _input(lines[:40], 1500)).frame, id=7)  # type: ignore[arg-type]
    out_a, out_b, in_view = 2, 4, 41  # chunk positions: messages 2 and 4 left the window long ago, 41 is in it
    floor = POLICIES["cache"].evidence_floor

    def on_frame(ranked: list[Scored]) -> Layout:
        layout = _layout(view, _input(lines[:42], 1500, frame=frame, ranked=ranked, policy=policy))
        assert layout.mode == "frame" and layout.frame == frame
        return layout

    shadowed = on_frame([Scored(in_view, 3.0), Scored(out_a, 1.0)])
    assert _shown(shadowed, out_a)
    assert shadowed.manifest["need"]["best_out_of_view"] == 1.0 and shadowed.manifest["need"]["best_in_view"] == 3.0
    above = on_frame([Scored(out_a, 2.0), Scored(out_b, 2.0 * floor + 0.1)])
    assert _shown(above, out_a) and _shown(above, out_b)
    below = on_frame([Scored(out_a, 2.0), Scored(out_b, 2.0 * floor - 0.1)])
    assert _shown(below, out_a) and not _shown(below, out_b)
    nothing_out = on_frame([Scored(in_view, 2.0)])
    assert not _shown(nothing_out, out_a) and nothing_out.manifest["need"]["best_out_of_view"] == 0.0
