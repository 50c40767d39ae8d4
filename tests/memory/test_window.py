"""The conversation's lines: the lines from a position on, found by bisection, and a History's
token total kept as its lines grow."""

from __future__ import annotations

from memory.prompt.window import History, Line, history_tokens, lines_from


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
    grown = first.extended(_lines([4, 5]))
    assert history_tokens(first) == sum(line.tokens for line in first) and list(first) == _lines([0, 1, 2])
    assert history_tokens(grown) == sum(line.tokens for line in _lines([0, 1, 2, 4, 5])) and grown == _lines([0, 1, 2, 4, 5])
    assert history_tokens(_lines([3, 4])) == sum(line.tokens for line in _lines([3, 4]))  # a plain list is summed
