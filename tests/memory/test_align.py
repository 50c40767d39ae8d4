"""How a request's messages are laid against the stored transcript (pure; hashes stand for messages)."""

from __future__ import annotations

from memory.turn.align import (FIXED_HEAD_MAX, Alignment, StoredHead, align, fixed_context, is_observation, is_tagged_context,
                               leading_context, stored_head, tail_start)

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


# -- the client's fixed context ------------------------------------------------------------------
# aider: a few-shot exchange first, then the history, then its files message and "Ok", then the
# question. Codex: an <environment_context> user message ahead of the first question.
FEW_SHOT = ["ex_u", "ex_a", "switch_u", "ok_a"]
FEW_SHOT_ROLES = ["user", "assistant", "user", "assistant"]
FILES, FILES_ROLES = ["files_u", "files_a"], ["user", "assistant"]


def test_context_messages_ahead_of_the_first_question_are_fixed_named_or_not() -> None:
    env = {"role": "user", "content": "<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>"}
    agents_md = {"role": "user", "content": "# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>\nRun the tests.\n</INSTRUCTIONS>"}
    assert is_tagged_context(env) and is_tagged_context(agents_md)
    assert not is_tagged_context({"role": "user", "content": "Why does <b>bold</b> not render?"})
    assert not is_tagged_context({**env, "role": "assistant"})
    assert leading_context(["user", "user", "user"], tagged={0, 1}) == 2
    assert leading_context(["user", "assistant", "user"], tagged={0}) == 0
    # A person's message sent again ahead of the next one (a retry after a failed call) is conversation.
    assert leading_context(["user", "user"], tagged=()) == 0
    assert fixed_context([], ["env", "task"], ["user", "user"], tagged={0}, named=False) == [0]
    # Later calls: still ahead of the stored conversation, still not a turn.
    assert fixed_context(["task", "a1"], ["env", "task", "a1", "task2"], ["user", "user", "assistant", "user"],
                         tagged={0}, named=False) == [0]


def test_a_first_call_without_a_session_header_sends_what_it_brings_as_fixed_context() -> None:
    request = FEW_SHOT + FILES + ["q1"]
    assert fixed_context([], request, FEW_SHOT_ROLES + FILES_ROLES + ["user"], named=False) == list(range(6))
    # A named session stores what its client brings: it may be turns memory failed to store.
    assert fixed_context([], request, FEW_SHOT_ROLES + FILES_ROLES + ["user"], named=True) == []
    assert fixed_context(["q1", "r1"], ["q1", "r1", "q2", "r2", "q3"], ["user", "assistant"] * 2 + ["user"], named=True) == []


def test_later_calls_without_a_header_set_apart_the_few_shot_head_but_not_a_stateless_or_window_request() -> None:
    stored = ["q1", "r1"]
    # Stateless: only the next message; a sliding window: a stored suffix, then what is new.
    assert fixed_context(T, ["u3"], ["user"], named=False) == []
    assert fixed_context(T, T[2:] + ["u3"], ROLES[2:] + ["user"], named=False) == []
    assert fixed_context(stored, ["q1", "r1", "q2"], ["user", "assistant", "user"], named=False) == []
    # A window whose last messages repeat the conversation's first ones is no head before them.
    window = ["t1", "t2", "a1", "u1"]
    assert fixed_context(["u1", "a1", "u2", "call", "t1", "t2", "a1"], window, ["tool", "tool", "assistant", "user"], named=False) == []
    assert fixed_context(["u", "a", "u", "a"], ["a", "u", "a", "u"], ["assistant", "user", "assistant", "user"], named=False) == []


def test_later_calls_set_apart_the_few_shot_head_and_the_files_message_after_the_history() -> None:
    stored = ["q1", "r1"]
    request = FEW_SHOT + ["q1", "r1"] + FILES + ["q2"]
    roles = FEW_SHOT_ROLES + ["user", "assistant"] + FILES_ROLES + ["user"]
    assert fixed_context(stored, request, roles, named=False) == [0, 1, 2, 3, 6, 7]
    # An ordinary client that resends its history has no fixed context.
    assert fixed_context(T, T + ["u3"], ROLES + ["user"], named=False) == []
    # A tool loop in progress continues the stored turn: nothing is set apart.
    assert fixed_context(["task", "call"], ["env", "task", "call", "result"], ["user", "user", "assistant", "tool"],
                         tagged={0}, named=False) == [0]
    # A retry of the last turn (the request stops before the stored reply).
    assert fixed_context(["q1", "r1"], FEW_SHOT + FILES + ["q1"], FEW_SHOT_ROLES + FILES_ROLES + ["user"], named=False) == list(range(6))


def test_an_observation_sent_as_a_user_message_continues_the_turn_in_progress() -> None:
    assert is_observation({"role": "user", "content": "Call id: call_3\nObservation:\n42 results"})
    assert is_observation({"role": "user", "content": [{"type": "text", "text": "Observation: file written"}]})
    assert not is_observation({"role": "user", "content": "What is an Observation: in ReAct?"})
    assert not is_observation({"role": "assistant", "content": "Observation: none"})
    roles = ["user", "assistant", "user", "assistant", "user"]
    assert tail_start(roles) == 4
    assert tail_start(roles, observations={2, 4}) == 0  # smolagents: the task and every step after it
    # Unnamed and first seen mid-loop: the whole loop is the turn, nothing is set apart as fixed.
    assert fixed_context([], ["task", "a1", "obs1"], ["user", "assistant", "user"], observations={2}, named=False) == []


def test_a_long_history_brought_on_a_first_call_is_a_conversation_not_fixed_context() -> None:
    long = [f"m{i}" for i in range(FIXED_HEAD_MAX + 2)] + ["q"]
    roles = ["user", "assistant"] * ((FIXED_HEAD_MAX + 2) // 2) + ["user"]
    assert fixed_context([], long, roles, named=False) == []


# -- a named session's fixed head --------------------------------------------------------------
# Its first call stores all it brings (aider: few-shot exchange, files message, question), so the
# second call is where the layout shows: the head comes back identical, the relayed turn after it,
# and the files message moved behind it.
FIRST_STORED = FEW_SHOT + FILES + ["q1", "r1"]
FIRST_ROLES = FEW_SHOT_ROLES + FILES_ROLES + ["user", "assistant"]


def test_a_named_second_call_shows_the_stored_head_and_the_moved_files_message_as_fixed() -> None:
    request = FEW_SHOT + ["q1", "r1"] + ["files_u2", "files_a"] + ["q2"]
    roles = FEW_SHOT_ROLES + ["user", "assistant"] + FILES_ROLES + ["user"]
    found = stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, request, roles)
    assert found == StoredHead([0, 1, 2, 3, 6, 7], 6)  # the stored few-shot and files message leave
    # Behind tagged context (never stored) the same.
    found = stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, ["env"] + request, ["user"] + roles, tagged={0})
    assert found == StoredHead([0, 1, 2, 3, 4, 7, 8], 6)
    # Once the conversation is stored again without them, the head is one memory never stored:
    # the same positions are fixed by the head rule, and nothing more leaves (idempotent).
    assert stored_head(["q1", "r1"], ["user", "assistant"].__getitem__, request, roles) is None
    assert fixed_context(["q1", "r1"], request, roles, named=True) == [0, 1, 2, 3, 6, 7]
    # ... and on every later call.
    later = FEW_SHOT + ["q1", "r1", "q2", "r2"] + ["files_u3", "files_a"] + ["q3"]
    later_roles = FEW_SHOT_ROLES + ["user", "assistant"] * 2 + FILES_ROLES + ["user"]
    assert fixed_context(["q1", "r1", "q2", "r2"], later, later_roles, named=True) == [0, 1, 2, 3, 8, 9]


def test_a_named_catch_up_is_never_read_as_a_stored_head() -> None:
    # A conversation from before the proxy, or turns memory failed to store: it grows at its end.
    grown = FIRST_STORED + ["q2".__getitem__, "r2", "q3"]
    grown_roles = FIRST_ROLES + ["user", "assistant", "user"]
    assert stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, grown, grown_roles) is None
    assert fixed_context(FIRST_STORED, grown, grown_roles, named=True) == []
    # A retry of the last turn; a stateless client; a sliding window.
    assert stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, FIRST_STORED[:-1], FIRST_ROLES[:-1]) is None
    assert stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, ["q2"], ["user"]) is None
    assert fixed_context(FIRST_STORED, ["q2"], ["user"], named=True) == []
    assert stored_head(FIRST_STORED, FIRST_ROLES.__getitem__, ["q1", "r1", "q2"], ["user", "assistant", "user"]) is None
    assert fixed_context(FIRST_STORED, ["q1", "r1", "q2"], ["user", "assistant", "user"], named=True) == []
    # Turns memory failed to store after the head: nothing ahead of the stored conversation.
    assert fixed_context(["q1", "r1"], ["q1", "r1", "q2", "r2", "q3"], ["user", "assistant"] * 2 + ["user"], named=True) == []


def test_a_named_edit_is_never_read_as_a_stored_head() -> None:
    stored, roles = ["u1".__getitem__, "a1", "u2", "a2", "u3", "a3"], ["user", "assistant"] * 3
    # The middle exchange deleted: nothing moved behind the conversation.
    assert stored_head(stored, roles.__getitem__, ["u1", "a1", "u3", "a3", "u4"], ["user", "assistant"] * 2 + ["user"]) is None
    # The first message edited: no stored head comes back.
    assert stored_head(stored, roles.__getitem__, ["u1x", "a1", "u2", "a2", "u3", "a3", "u4"], ["user", "assistant"] * 3 + ["user"]) is None
    # Messages re-sent after the conversation in other roles than those skipped.
    assert stored_head(stored, roles.__getitem__, ["u1", "a1", "u3", "a3", "x", "y", "u4"],
                       ["user", "assistant", "user", "assistant", "assistant", "user", "user"]) is None
    # A head longer than FIXED_HEAD_MAX is a conversation, whatever moves behind it.
    long = [f"m{i}" for i in range(FIXED_HEAD_MAX)] + ["f_u", "f_a", "q1", "r1"]
    long_roles = ["user", "assistant"] * (FIXED_HEAD_MAX // 2) + ["user", "assistant", "user", "assistant"]
    request = long[:FIXED_HEAD_MAX] + ["q1", "r1", "f_u2", "f_a", "q2"]
    assert stored_head(long, long_roles.__getitem__, request, long_roles[:FIXED_HEAD_MAX] + ["user", "assistant"] * 2 + ["user"]) is None


def test_a_retry_of_the_last_turn_keeps_the_head_and_the_files_message_fixed() -> None:
    # aider sends its last request again (the reply failed): the files message sits between the
    # stored conversation and the question being retried, named or not.
    stored = ["q1", "r1", "q2", "r2"]
    request = FEW_SHOT + ["q1", "r1"] + FILES + ["q2"]
    roles = FEW_SHOT_ROLES + ["user", "assistant"] + FILES_ROLES + ["user"]
    for named in (True, False):
        assert fixed_context(stored, request, roles, named=named) == [0, 1, 2, 3, 6, 7]


class _Unwalked(list[str]):
    """A long session's stored hashes that must not be walked whole (no set of them per request)."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the stored transcript was walked")


def test_a_named_request_looks_for_a_head_without_walking_a_long_transcript() -> None:
    stored = _Unwalked(f"m{i}" for i in range(1_000))
    roles = ["user", "assistant"] * 500
    resent = [f"m{i}" for i in range(1_000)] + ["q"]
    for request in (resent, ["q"]):  # the whole conversation again; a stateless client's next message
        request_roles = (roles + ["user"])[-len(request):]
        assert fixed_context(stored, request, request_roles, named=True) == []
        assert stored_head(stored, roles.__getitem__, request, request_roles) is None
