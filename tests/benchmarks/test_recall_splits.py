"""Section B's split bookkeeping: dev and held-out scores come from their own conversations only,
"all ten" from both, and a run that holds one split reports only that one."""

from __future__ import annotations

from benchmarks.locomo import ALL, DEV, HELD_OUT, Conversation, Question, split_of
from benchmarks.recall import _splits, _Tally


def _question(conv: str, category: int = 4) -> Question:
    return Question(conv, "q?", category, ("D1:1", "D1:2"), ("D1:1", "D1:2"))


def test_split_follows_position_in_the_file() -> None:
    assert [split_of(i) for i in range(10)] == [DEV] * 5 + [HELD_OUT] * 5


def test_scores_per_split_use_only_their_questions() -> None:
    tally = _Tally()
    tally.add(DEV, _question("a"), present=2, tokens=100)  # strict hit
    tally.add(DEV, _question("a", 1), present=1, tokens=300)  # half
    tally.add(HELD_OUT, _question("b"), present=0, tokens=200)  # miss
    dev, held, both = (tally.score("m", 800, s) for s in (DEV, HELD_OUT, ALL))
    assert (dev.n, dev.strict, dev.fraction, dev.max_tokens) == (2, 0.5, 0.75, 300)
    assert (held.n, held.strict, held.fraction, held.max_tokens) == (1, 0.0, 0.0, 200)
    assert (both.n, both.strict, both.fraction) == (3, 1 / 3, 0.5)
    assert [c.category for c in held.categories] == [4]


def test_splits_listed_held_out_first_and_only_when_present() -> None:
    convs = [Conversation(f"c{i}", (), (_question(f"c{i}"),), i) for i in range(10)]
    assert [s.name for s in _splits(convs)] == [HELD_OUT, DEV, ALL]
    assert [s.questions for s in _splits(convs)] == [5, 5, 10]
    assert [s.name for s in _splits(convs[:2])] == [DEV]
