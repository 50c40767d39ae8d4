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
