"""The two layout policies where they part ways, on the layout's own inputs (see test_layout for
the harness): how weak a match out of view may be and still come back as the question's evidence
on a stored frame. Also how a policy is chosen by name, per request (`X-Memory-Layout-Policy`) or
by the configuration."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from starlette.requests import Request

from memory import InvalidArgumentError
from memory.prompt.layout import Line
from memory.prompt.policy import POLICIES, ChatTuning, LayoutPolicy, get_policy
from memory.recall.index import SessionView
from memory.recall.retrieval import Scored
from memory.records import FrameRecord
from proxy.errors import InvalidRequestError
from proxy.http import layout_policy
from tests.memory.test_layout import COUNTER, SYSTEM, _input, _layout, _session

BUDGET = 1500
OUT_OF_VIEW = 2  # chunk position of a message that left the window long ago


def _frame(view: SessionView, lines: list[Line]) -> FrameRecord:
    built = _layout(view, _input(lines[:40], BUDGET)).frame
    assert built is not None and 0 < built.window_start < 40
    return replace(built, id=7)


def _layout_on(view: SessionView, lines: list[Line], frame: FrameRecord, n: int, ranked: list[Scored], policy: str | LayoutPolicy) -> str:
    """The mode of the prompt for the first `n` messages on `frame`, and which out-of-view messages
    came back as evidence, e.g. "frame 2 4"."""
    chosen = POLICIES[policy] if isinstance(policy, str) else policy
    layout = _layout(view, _input(lines[:n], BUDGET, frame=frame, ranked=ranked, policy=chosen))
    shown = [str(s.pos) for s in ranked if f"w{s.pos}x29" in json.dumps(layout.evidence)]
    return " ".join([layout.mode, *shown])


@pytest.mark.parametrize("policy", ["cache", "recall"])
def test_with_room_to_spare_both_keep_the_frame_and_add_evidence(policy: str) -> None:
    view, lines = _session(60)
    assert _layout_on(view, lines, _frame(view, lines), 40, [Scored(OUT_OF_VIEW, 2.4), Scored(39, 1.2)], policy) == "frame 2"


def test_where_the_policies_part_a_weaker_match_out_of_view() -> None:
    """A second match out of view at 0.1 of the best one's score: under `cache`'s own values (a tool
    loop's; floor 0.15) it stays out, under `recall` (no floor) it comes back too; both keep the
    frame. In a plain chat `cache` takes it too: the block is below its minimum (0.5 of the room)."""
    view, lines = _session(60)
    frame = _frame(view, lines)
    ranked = [Scored(OUT_OF_VIEW, 2.0), Scored(OUT_OF_VIEW + 2, 0.2)]
    assert _layout_on(view, lines, frame, 40, ranked, replace(POLICIES["cache"], chat=None)) == "frame 2"
    assert _layout_on(view, lines, frame, 40, ranked, "cache") == "frame 2 4"
    assert _layout_on(view, lines, frame, 40, ranked, "recall") == "frame 2 4"


def test_below_the_minimum_block_the_floor_does_not_cut() -> None:
    """A second match out of view at a quarter of the best one's score is under the floor; while the
    block holds less than its minimum share of the room it comes back all the same, and once the
    block is full enough the floor cuts it again."""
    view, lines = _session(60)
    frame = _frame(view, lines)
    ranked = [Scored(OUT_OF_VIEW, 2.0), Scored(OUT_OF_VIEW + 2, 0.5)]
    floor_only = LayoutPolicy(evidence_floor=0.4, evidence_min_block=0.0, chat=None)
    assert _layout_on(view, lines, frame, 40, ranked, floor_only) == "frame 2"
    assert _layout_on(view, lines, frame, 40, ranked, replace(floor_only, evidence_min_block=0.1)) == "frame 2 4"
    # One item already fills a minimum of 0.001 of the room: the floor applies from the second on.
    assert _layout_on(view, lines, frame, 40, ranked, replace(floor_only, evidence_min_block=0.001)) == "frame 2"


def _statement_layout(view: SessionView, lines: list[Line], frame: FrameRecord, ranked: list[Scored], query: str,
                      tail: list[dict[str, object]] | None = None, policy: LayoutPolicy = POLICIES["cache"]) -> str:
    inp = _input(lines[:40], BUDGET, frame=frame, ranked=ranked, query=query, policy=policy)
    if tail is not None:
        inp = replace(inp, tail=tail)
    layout = _layout(view, inp)
    return " ".join([layout.mode, *(str(s.pos) for s in ranked if f"w{s.pos}x29" in json.dumps(layout.evidence))])


def test_a_message_that_only_tells_gets_the_strongest_matches_only() -> None:
    """Under `cache`, a second match out of view at a quarter of the best one's score comes back for
    a question but not for a message that only tells (floor 0.5; here within 0.3 of the room, not
    the default 0.08: one item of this session takes more than that of a 1,500-token budget), unless
    that message is a step of a tool loop; `recall` makes no difference between them. With the
    default share a message that tells gets at most 0.08 of the room."""
    view, lines = _session(60)
    frame = _frame(view, lines)
    ranked = [Scored(OUT_OF_VIEW, 2.0), Scored(OUT_OF_VIEW + 2, 0.5)]
    wider = replace(POLICIES["cache"], chat=ChatTuning(statement_share=0.3))
    assert _statement_layout(view, lines, frame, ranked, "what about the ledger?", policy=wider) == "frame 2 4"
    assert _statement_layout(view, lines, frame, ranked, "The ledger is balanced now.", policy=wider) == "frame 2"
    assert _statement_layout(view, lines, frame, ranked, "The ledger is balanced now.") == "frame"
    assert _statement_layout(view, lines, frame, ranked, "what about the ledger?") == "frame 2 4"
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                  "function": {"name": "read", "arguments": "{}"}}]}
    loop = [{"role": "user", "content": "The ledger is balanced now."}, call, {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    assert _statement_layout(view, lines, frame, ranked, "The ledger is balanced now.", tail=loop, policy=wider) == "frame 2 4"
    recall = _layout(view, _input(lines[:40], BUDGET, frame=frame, ranked=ranked, policy=POLICIES["recall"], query="The ledger is balanced now."))
    assert "w4x29" in json.dumps(recall.evidence)


@pytest.mark.parametrize("policy", ["cache", "recall"])
def test_the_budget_forces_a_rebase_under_either_policy(policy: str) -> None:
    view, lines = _session(60)
    assert _layout_on(view, lines, _frame(view, lines), 56, [Scored(OUT_OF_VIEW, 1.0)], policy).split()[0] == "rebased"


def test_the_policies_differ_only_where_documented() -> None:
    assert POLICIES["cache"] == LayoutPolicy()
    assert POLICIES["recall"] == replace(LayoutPolicy(), name="recall", base_fill=0.3, evidence_floor=0.0, evidence_share=0.7,
                                         evidence_min_share=0.25, chat=None)
    assert get_policy("recall") is POLICIES["recall"]
    with pytest.raises(InvalidArgumentError, match="unknown layout policy 'fast'"):
        get_policy("fast")


def _request(*headers: tuple[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers]})


def test_the_header_chooses_the_policy_per_request_else_the_configured_one() -> None:
    assert layout_policy(_request(), "cache") == "cache"
    assert layout_policy(_request(), "recall") == "recall"
    assert layout_policy(_request(("X-Memory-Layout-Policy", "recall")), "cache") == "recall"
    with pytest.raises(InvalidRequestError) as refused:
        layout_policy(_request(("X-Memory-Layout-Policy", "fastest")), "cache")
    assert refused.value.param == "X-Memory-Layout-Policy"


def test_a_chat_question_whose_block_is_starved_rebases_where_a_tool_loop_keeps_its_frame() -> None:
    """The room the stable part leaves has shrunk to between 0.2 and 0.5 of the room and the
    question's block does not fit it: a plain chat's question gets a rebase (its tuning's
    `evidence_min_share` 0.5), a step of a tool loop keeps the frame and the block's best part
    (the policy's own 0.2)."""
    view, lines = _session(60)
    frame = _frame(view, lines)
    ranked = [Scored(p, 2.0 - p * 0.01) for p in range(20)]
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                  "function": {"name": "read", "arguments": "{}"}}]}
    loop = [{"role": "user", "content": "what about the ledger?"}, call, {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    chat = _layout(view, _input(lines[:46], BUDGET, frame=frame, ranked=ranked))
    tools = _layout(view, replace(_input(lines[:46], BUDGET, frame=frame, ranked=ranked), tail=loop))
    assert chat.mode == "rebased"
    assert tools.mode == "frame" and tools.evidence is not None
    available = BUDGET - sum(COUNTER.message_tokens(m) for m in SYSTEM + loop) - 3
    assert 0.2 * available <= tools.manifest["need"]["room"] < POLICIES["cache"].chat.evidence_min_share * available  # type: ignore[union-attr]
