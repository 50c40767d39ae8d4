"""The layout priced by the route's cache prices (`memory.prompt.pricing`), on the layout's own
inputs (see test_layout for the harness): without prices nothing changes; at Anthropic's prices
the question's evidence spends at most its share of what the frame saves, a rebase the budget
does not force is not taken, and a rebase builds a smaller frame."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memory.prompt.policy import POLICIES, CachePrices, LayoutPolicy
from memory.prompt.pricing import ANTHROPIC_CACHE, EVIDENCE_SPEND, PRICED_FILL, priced_fill, priced_policy
from memory.recall.retrieval import Scored
from tests.memory.test_layout import COUNTER, _input, _layout, _session, _window_positions
from tests.memory.test_policy import BUDGET, OUT_OF_VIEW, _frame

PRICED = replace(POLICIES["cache"], prices=ANTHROPIC_CACHE)
RANKED = [Scored(OUT_OF_VIEW, 2.4), Scored(OUT_OF_VIEW + 2, 2.0), Scored(OUT_OF_VIEW + 4, 1.9)]


def test_without_prices_the_policy_is_as_tuned() -> None:
    policy = LayoutPolicy()
    assert priced_policy(policy, 5000, 40_000, 100, 4000) is policy and priced_fill(policy) is policy


def test_the_evidence_spends_a_share_of_what_the_frame_saves() -> None:
    assert priced_policy(PRICED, 10_000, 0, 3000, 6000).evidence_share == 0.0  # nothing left out: nothing to spend
    grown = priced_policy(PRICED, 10_000, 20_000, 3000, 6000)
    assert grown.evidence_share == pytest.approx(EVIDENCE_SPEND * 0.1 * 20_000 / 10_000)
    assert grown.rebase_evidence_share == grown.evidence_share
    assert priced_policy(PRICED, 10_000, 10**7, 3000, 6000).evidence_share == PRICED.evidence_share  # never above the policy's


def test_a_rebase_the_budget_does_not_force_must_pay_for_itself_at_once() -> None:
    assert priced_policy(PRICED, 10_000, 5000, 3000, 6000).evidence_min_share == 0.0  # 1.25 x 3,000 > 0.1 x 6,000
    assert priced_policy(PRICED, 10_000, 5000, 400, 6000).evidence_min_share == PRICED.evidence_min_share  # 500 < 600
    free_writes = replace(PRICED, prices=CachePrices(write=0.05, read=0.1))
    assert priced_policy(free_writes, 10_000, 5000, 3000, 6000).evidence_min_share == PRICED.evidence_min_share


def test_a_priced_rebase_builds_a_smaller_frame() -> None:
    fill = priced_fill(PRICED)
    assert fill.base_fill == pytest.approx(PRICED.base_fill * PRICED_FILL)
    assert fill.window_share == pytest.approx(PRICED.window_share * PRICED_FILL)
    assert fill.window_floor_share == PRICED.window_floor_share  # the last exchange still goes verbatim
    view, lines = _session(60)
    tuned = _layout(view, _input(lines[:56], BUDGET, ranked=RANKED))
    priced = _layout(view, _input(lines[:56], BUDGET, ranked=RANKED, policy=PRICED))
    assert tuned.mode == priced.mode == "rebased"
    assert priced.manifest["totals"]["stable"] < tuned.manifest["totals"]["stable"]  # less to write at the rebase
    assert _window_positions(priced, lines) == [54, 55]  # the last exchange, verbatim


@pytest.mark.parametrize("n", [48, 49])
def test_where_the_tuned_policy_rebases_for_evidence_the_priced_one_keeps_the_frame(n: int) -> None:
    view, lines = _session(60)
    frame = _frame(view, lines)
    tuned = _layout(view, _input(lines[:n], BUDGET, frame=frame, ranked=RANKED))
    priced = _layout(view, _input(lines[:n], BUDGET, frame=frame, ranked=RANKED, policy=PRICED))
    assert tuned.mode == "rebased" and priced.mode == "frame"
    left_out = sum(line.tokens for line in lines[:n]) - priced.manifest["totals"]["stable"] + COUNTER.message_tokens(lines[0].message)
    evidence = COUNTER.message_tokens(priced.evidence) if priced.evidence else 0
    assert evidence <= EVIDENCE_SPEND * 0.1 * left_out
