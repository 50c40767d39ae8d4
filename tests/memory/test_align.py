"""How a request's messages are laid against the stored transcript (pure; hashes stand for messages)."""

from __future__ import annotations

from memory.turn.align import Alignment, align, tail_start

T = ["u1", "a1", "u2", "a2"]
ROLES = ["user", "assistant", "user", "assistant"]


def test_a_resent_history_extends_the_transcript() -> None:
    assert align(T, ROLES, T + ["u3"], named=False) == Alignment("extend", 0, 4)
    assert align([], [], ["u1"], named=True) == Alignment("extend", 0, 0)


def test_a_request_that_is_a_prefix_is_a_retry_of_what_follows() -> None:
    assert align(T, ROLES, ["u1", "a1", "u2"], named=False) == Alignment("retry", 0, 3)
    # Rewinding further is a retry only when the caller named the session: content matching alone
    # must never rewind another conversation that merely opened the same way.
    assert align(T, ROLES, ["u1", "a1"], named=True) == Alignment("retry", 0, 2)
    assert align(T, ROLES, ["u1"], named=False).kind == "edit"
    # A lone message that equals the first one is a stateless client's next message, not a rewind
    # that would take the whole conversation out of the transcript.
    assert align(T, ROLES, ["u1"], named=True) == Alignment("append", 4, 0)


def test_a_divergent_request_is_an_edit_at_the_first_difference() -> None:
    alignment = align(T, ROLES, ["u1", "a1", "u2-edited"], named=True)
    assert alignment == Alignment("edit", 0, 2) and alignment.keep == 2


def test_a_stateless_client_continues_the_named_session() -> None:
    assert align(T, ROLES, ["u3"], named=True) == Alignment("append", 4, 0)
    # ... and its retry of the last turn is recognised.
    assert align(T, ROLES, ["u2"], named=True) == Alignment("retry", 2, 1)


def test_a_partial_retry_of_a_tool_loop_is_recognised() -> None:
    stored, roles = ["u1", "call", "result", "answer"], ["user", "assistant", "tool", "assistant"]
    assert align(stored, roles, ["call", "result"], named=True) == Alignment("retry", 1, 2)


def test_a_whole_conversation_that_shares_nothing_is_an_edit_of_its_start() -> None:
    assert align(T, ROLES, ["u1-edited", "a1", "u2"], named=True, request_roles=["user", "assistant", "user"]) == Alignment("edit", 0, 0)
    assert align(T, ROLES, ["u9", "u10"], named=True, request_roles=["user", "user"]).kind == "append"


def test_a_sliding_window_overlapping_the_end_is_a_continuation() -> None:
    assert align(T, ROLES, ["u2", "a2", "u3"], named=True) == Alignment("window", 2, 2)
    assert align(T, ROLES, ["a2", "u3"], named=True) == Alignment("window", 3, 1)


def test_tail_starts_at_the_last_user_message_and_keeps_a_tool_loop() -> None:
    assert tail_start(["user", "assistant", "user"]) == 2
    assert tail_start(["user", "assistant", "user", "assistant", "tool", "tool"]) == 2
    assert tail_start(["assistant", "tool", "tool"]) == 0
    assert tail_start(["assistant"]) == 0


def test_recurring_messages_take_the_reading_that_explains_more_and_removes_nothing() -> None:
    # The same text at the start and at the end: a sliding window of the end, not an edit at 1.
    stored, roles = ["hi", "a1", "hi", "call"], ["user", "assistant", "user", "assistant"]
    assert align(stored, roles, ["hi", "call", "result"], named=True) == Alignment("window", 2, 2)
    # A stateless retry of the last turn beats rewinding to the first message with the same text.
    stored, roles = ["hi", "a1", "hi", "a2"], ["user", "assistant", "user", "assistant"]
    assert align(stored, roles, ["hi"], named=True) == Alignment("retry", 2, 1)
