"""Dates a question names (`memory.recall.dates`) and the ranker's preference for turns written then."""

from __future__ import annotations

from datetime import date

import pytest

from memory import create_runtime
from memory.recall.dates import Period, named_periods, stamp_day, within
from memory.recall.retrieval import RankOptions


@pytest.mark.parametrize(("question", "periods"), [
    ("What painting did Melanie show on October 13, 2023?", (Period(10, 2023, 13),)),
    ("What did Gina find for her store on 1 February, 2023?", (Period(2, 2023, 1),)),
    ("Where was Kate on 31 Dec 2023?", (Period(12, 2023, 31),)),
    ("What did Kevin watch on the night of 10.01.2024?", (Period(1, 2024, 10),)),  # dotted: day first
    ("What was released on 01/10/2024?", (Period(1, 2024, 10),)),  # slashed: month first
    ("What happened on 2024-03-05 and in July 2023?", (Period(3, 2024, 5), Period(7, 2023))),
    ("When did Melanie go camping in June?", (Period(6),)),
    ("What setback did Melanie face in October 2023?", (Period(10, 2023),)),
])
def test_named_periods(question, periods):
    assert set(named_periods(question)) == set(periods)


@pytest.mark.parametrize("question", [
    "What may happen next?", "How did March go for the team?", "When did Caroline go to the support group?",
    "How many years ago was 2019?", "What is 31.02.2024 about?",  # a year alone; no such day
])
def test_no_period_named(question):
    assert named_periods(question) == ()


@pytest.mark.parametrize(("stamp", "day"), [
    ("1:56 pm on 8 May, 2023", date(2023, 5, 8)),
    ("29.12.2023, 22:42:04", date(2023, 12, 29)),
    ("2024-01-10T12:00:00Z", date(2024, 1, 10)),
    ("May 2023", None),  # no day
    ("yesterday", None),
    (None, None),
])
def test_stamp_day(stamp, day):
    assert stamp_day(stamp) == day


def test_within_day_month_and_month_of_any_year():
    assert within((Period(5, 2023, 8),), "1:56 pm on 8 May, 2023")
    assert not within((Period(5, 2023, 9),), "1:56 pm on 8 May, 2023")
    assert within((Period(5, 2023),), "1:56 pm on 8 May, 2023")
    assert within((Period(5),), "8 May 2021")
    assert not within((Period(6),), "8 May 2021")
    assert not within((Period(5),), None)


DAYS = ("08.01.2024, 20:00:00", "10.01.2024, 21:15:00", "12.01.2024, 19:30:00")
FILMS = ("Dune", "Arrival", "Heat")


async def _sessions(path, options):
    async with create_runtime(storage_path=path, embedding_model="none", rank_options=options) as rt:
        session = rt.session("dated")
        events = []
        for stamp, film in zip(DAYS, FILMS):
            events.append({"type": "user_message", "payload": {"content": f"Kevin: I watched {film} tonight with my brother.",
                                                               "timestamp": stamp}})
            for i in range(30):
                events.append({"type": "assistant_message" if i % 2 else "user_message",
                               "payload": {"content": f"Filler line {i} about the weather and the bus timetable.",
                                           "timestamp": stamp}})
        await session.ingest_many(events)
        result = await session.compile(user_message="What did Kevin watch on 10.01.2024?", budget_tokens=400)
    items = result.manifest["included"] + result.manifest["dropped"]
    scores = {film: max((i["score"] for i in items if i.get("turn") == 1 + 31 * k and i.get("score") is not None), default=None)
              for k, film in enumerate(FILMS)}
    text = "\n".join(str(m["content"]) for m in result.messages)
    return scores, text


async def test_a_turn_written_on_the_named_day_ranks_first(tmp_path):
    # The three "watched" turns match the question's words alike; only the date tells them apart.
    scores, text = await _sessions(tmp_path / "on.sqlite", RankOptions())
    assert "Kevin: I watched Arrival tonight" in text
    assert None not in scores.values()
    assert scores["Arrival"] > max(scores["Dune"], scores["Heat"])


async def test_without_the_date_rule_the_latest_alike_turn_wins(tmp_path):
    scores, _ = await _sessions(tmp_path / "off.sqlite", RankOptions(dates=False))
    assert None not in scores.values()
    assert scores["Heat"] > scores["Arrival"] > scores["Dune"]  # recency alone orders them
