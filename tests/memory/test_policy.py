"""The two layout policies where they part ways, on the layout's own inputs (see test_layout for
the harness): a stored frame whose room for evidence has shrunk below what a fresh layout would
give, and a question that strongly needs memory out of view. Also how a policy is chosen by name,
per request (`X-Memory-Layout-Policy`) or by the configuration."""

from __future__ import annotations

from dataclasses import replace

import pytest
from starlette.requests import Request

from memory import InvalidArgumentError
from memory.prompt.layout import Line
from memory.prompt.policy import POLICIES, LayoutPolicy, get_policy
from memory.recall.index import SessionView
from memory.recall.retrieval import Scored
from memory.records import FrameRecord
from proxy.errors import InvalidRequestError
from proxy.http import layout_policy
from tests.memory.test_layout import _input, _layout, _need, _session

BUDGET = 1500
OUT_OF_VIEW = 2  # chunk position of a message that left the window long ago


def _frame(view: SessionView, lines: list[Line]) -> FrameRecord:
    built = _layout(view, _input(lines[:40], BUDGET)).frame
    assert built is not None and 0 < built.window_start < 40
    return replace(built, id=7)


def _mode(view: SessionView, lines: list[Line], frame: FrameRecord, n: int, best_out: float, policy: str) -> tuple[str, str]:
    """(mode, need) of the prompt for the first `n` messages on `frame`; the best match in view scores 1.2."""
    layout = _layout(view, _input(lines[:n], BUDGET, frame=frame, ranked=[Scored(OUT_OF_VIEW, best_out), Scored(n - 1, 1.2)],
                                  policy=POLICIES[policy]))
    return layout.mode, _need(layout) if "need" in layout.manifest else "-"


@pytest.mark.parametrize("policy", ["cache", "recall"])
def test_with_room_to_spare_both_keep_the_frame_and_add_evidence(policy: str) -> None:
    view, lines = _session(60)
    assert _mode(view, lines, _frame(view, lines), 40, 2.4, policy) == ("frame", "strong")


def test_where_the_policies_part_a_strong_need_that_fits_in_the_shrunken_room() -> None:
    """Six messages later the window has eaten the room; the strong match still fits in what is left
    and stands less than `rebase_margin` above the best match in view: `cache` keeps the frame (and
    the provider's cache), `recall` rebuilds the prompt around the question."""
    view, lines = _session(60)
    frame = _frame(view, lines)
    assert _mode(view, lines, frame, 46, 2.4, "cache") == ("frame", "strong")
    assert _mode(view, lines, frame, 46, 2.4, "recall") == ("rebased", "strong")
    # A match far above anything in view (rebase_margin) rebases under `cache` too.
    assert _mode(view, lines, frame, 46, 4.0, "cache") == ("rebased", "strong")
    # Without a strong need neither policy gives up the frame.
    for policy in ("cache", "recall"):
        assert _mode(view, lines, frame, 46, 1.6, policy) == ("frame", "weak")


@pytest.mark.parametrize("policy", ["cache", "recall"])
def test_the_budget_forces_a_rebase_under_either_policy(policy: str) -> None:
    view, lines = _session(60)
    assert _mode(view, lines, _frame(view, lines), 56, 1.0, policy)[0] == "rebased"


def test_the_policies_differ_only_where_documented() -> None:
    assert POLICIES["cache"] == LayoutPolicy()
    assert POLICIES["recall"] == replace(LayoutPolicy(), name="recall", strong_fit=False)
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
