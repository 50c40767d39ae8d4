"""The conversation's lines: the lines from a position on, found by bisection, and a History's
token total kept as its lines grow; the window's messages as they go up (a tool call that nothing
answers goes up as text, never as a call, and never larger than its line)."""

from __future__ import annotations

import json
from typing import Any

from memory.prompt.window import UNANSWERED_MARK, History, Line, history_tokens, lines_from, window_messages
from memory.recall.tokens import get_counter


def _lines(positions: list[int]) -> list[Line]:
    return [Line(pos, {"role": "user", "content": f"m{pos}"}, "user", pos + 100, 3 + pos % 7) for pos in positions]


def test_the_lines_from_a_position_are_those_a_walk_finds() -> None:
    lines = _lines([0, 1, 2, 5, 6, 9, 10, 14])  # gaps: tool results left out
    for pos in range(-1, 17):
        assert lines_from(lines, pos) == [line for line in lines if line.pos >= pos]
        assert lines_from(History(lines), pos) == [line for line in lines if line.pos >= pos]
    assert lines_from([], 3) == []


def test_a_history_keeps_its_token_total_as_it_grows() -> None:
    first = History(_lines([0, 1, 2]))
    grown = first.extended([4, 5], [7, 9])
    assert history_tokens(first) == sum(line.tokens for line in _lines([0, 1, 2])) and list(first) == _lines([0, 1, 2])
    assert history_tokens(_lines([3, 4])) == sum(line.tokens for line in _lines([3, 4]))  # a plain list is summed
    assert len(grown) == 5 and history_tokens(grown) == history_tokens(first) + 16 and len(first) == 3


def test_a_lazy_history_builds_only_the_lines_asked_for() -> None:
    built: list[int] = []

    def make(pos: int, tokens: int) -> Line:
        built.append(pos)
        return Line(pos, {"role": "user", "content": f"m{pos}"}, "user", pos + 100, tokens)

    positions = list(range(0, 20_000, 2))
    history = History(make=make).extended(positions, [5] * len(positions))
    assert history_tokens(history) == 5 * len(positions) and not built
    window = lines_from(history, 19_990)
    assert [line.pos for line in window] == [19_990, 19_992, 19_994, 19_996, 19_998] and len(built) < 40
    assert history[-1] is window[-1] and history[len(history) - 1].pos == 19_998  # built once, then kept
    assert list(history)[:3] == [make(0, 5), make(2, 5), make(4, 5)]


COUNTER = get_counter("gpt-4o-mini")


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _shown(*messages: dict[str, Any]) -> list[Line]:
    return [Line(n, m, str(m["role"]), n + 1, COUNTER.message_tokens(m)) for n, m in enumerate(messages)]


def test_answered_calls_go_up_as_they_are() -> None:
    lines = _shown({"role": "user", "content": "Read a.py"},
                   {"role": "assistant", "content": None, "tool_calls": [_call("c1", "read", {"path": "a.py"})]},
                   {"role": "tool", "tool_call_id": "c1", "content": "x = 1"},
                   {"role": "assistant", "content": "a.py sets x."})
    messages, tokens = window_messages(lines, COUNTER)
    assert messages == [line.message for line in lines]
    assert tokens == sum(line.tokens for line in lines)


def test_a_call_nobody_answered_goes_up_as_text_saying_what_it_called() -> None:
    final = {"role": "assistant", "content": None, "tool_calls": [_call("c9", "final_answer", {"answer": "The codename is heliotrope."})],
             "x_wire": {"kept": "by the client's wire form"}}
    lines = _shown({"role": "user", "content": "Find the codename."}, final, {"role": "user", "content": "Which codename was it?"})
    messages, tokens = window_messages(lines, COUNTER)
    said = messages[1]
    assert set(said) == {"role", "content"} and said["role"] == "assistant"  # a plain message: no call, no wire form
    assert said["content"].startswith(f"{UNANSWERED_MARK} final_answer ")
    assert '"The codename is heliotrope."' in said["content"]
    assert messages[0] is lines[0].message and messages[2] is lines[2].message
    assert tokens == sum(COUNTER.message_tokens(m) for m in messages) <= sum(line.tokens for line in lines)


def test_of_parallel_calls_only_the_unanswered_one_becomes_text() -> None:
    step = {"role": "assistant", "content": "Two reads.", "tool_calls": [_call("c1", "read", {"path": "a.py"}), _call("c2", "read", {"path": "b.py"})]}
    lines = _shown({"role": "user", "content": "Read both."}, step, {"role": "tool", "tool_call_id": "c1", "content": "x = 1"})
    messages, _ = window_messages(lines, COUNTER)
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1"]
    assert messages[1]["content"].startswith("Two reads.\n" + UNANSWERED_MARK + " read ")
    assert '"b.py"' in messages[1]["content"]


def test_long_arguments_are_cut_so_the_text_is_never_larger_than_the_call() -> None:
    patch = "\n".join(f"+line {k} of a long patch" for k in range(400))
    step = {"role": "assistant", "content": None, "tool_calls": [_call("c1", "apply_patch", {"patch": patch})]}
    lines = _shown(step)
    messages, tokens = window_messages(lines, COUNTER)
    assert messages[0]["content"].startswith(f"{UNANSWERED_MARK} apply_patch ")
    assert tokens == COUNTER.message_tokens(messages[0]) <= lines[0].tokens
