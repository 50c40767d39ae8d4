"""Dates a question names, and whether a turn's timestamp falls within them.

A question such as "What did Kevin watch on 10.01.2024?" or "What setback did Melanie face in
October 2023?" asks about what was said on that day or in that month; a conversation's turns carry
the date they were written (`timestamp`, as the caller ingested it). The ranker favours the turns
whose date falls within a period the question names (`memory.recall.retrieval`).

Deliberately narrow: only explicit calendar dates are read (a day with its month, with or without a
year; a month with a year; a month alone after "in" or "during"), in English month names or the
numeric forms 2024-01-10, 10.01.2024 (day first) and 01/10/2024 (month first). Relative phrases
("last week", "yesterday") and seasons are not: they need the date of the question, which a
compile does not know. A timestamp is read with the same rules, so "1:56 pm on 8 May, 2023",
"29.12.2023, 22:42:04" and ISO times all give their day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

__all__ = ["Period", "named_periods", "stamp_day", "within"]

_MONTHS = {name: i + 1 for i, names in enumerate((
    "january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul", "august aug",
    "september sep sept", "october oct", "november nov", "december dec")) for name in names.split()}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"((?:19|20)\d\d)"
# Each pattern yields (year or None, month, day or None); tried in this order over the text, the
# first to claim a span wins it.
_ISO = re.compile(rf"\b{_YEAR}-(\d{{1,2}})-(\d{{1,2}})(?!\d)")
_DOTTED = re.compile(rf"\b(\d{{1,2}})\.(\d{{1,2}})\.{_YEAR}\b")  # day first (European)
_SLASHED = re.compile(rf"\b(\d{{1,2}})/(\d{{1,2}})/{_YEAR}\b")  # month first (US)
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b", re.I)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?:,?\s+{_YEAR})?(?!\s*(?::|am\b|pm\b))", re.I)
_MONTH_YEAR = re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I)
# A month alone counts only after a preposition of time: "May" and "March" are also words.
_MONTH_ALONE = re.compile(rf"\b(?:in|during|of|since)\s+(?:early\s+|mid\s+|late\s+)?{_MONTH}\b", re.I)


@dataclass(frozen=True)
class Period:
    """A day (`day` set), a month (`day` None) or a month of any year (`year` None as well)."""

    month: int
    year: int | None = None
    day: int | None = None

    def holds(self, when: date) -> bool:
        return (when.month == self.month and (self.year is None or when.year == self.year)
                and (self.day is None or when.day == self.day))


def _valid(year: int | None, month: int, day: int | None) -> bool:
    if not 1 <= month <= 12:
        return False
    if day is None:
        return True
    try:
        date(year or 2000, month, day)  # 2000: a leap year, so 29 February stands without one
    except ValueError:
        return False
    return True


def _found(text: str) -> list[tuple[int | None, int, int | None]]:
    taken: list[tuple[int, int]] = []
    out: list[tuple[int | None, int, int | None]] = []

    def claim(match: re.Match[str], year: int | None, month: int, day: int | None) -> None:
        span = match.span()
        if any(a < span[1] and span[0] < b for a, b in taken) or not _valid(year, month, day):
            return
        taken.append(span)
        out.append((year, month, day))

    for m in _ISO.finditer(text):
        claim(m, int(m.group(1)), int(m.group(2)), int(m.group(3)))
    for m in _DOTTED.finditer(text):
        claim(m, int(m.group(3)), int(m.group(2)), int(m.group(1)))
    for m in _SLASHED.finditer(text):
        claim(m, int(m.group(3)), int(m.group(1)), int(m.group(2)))
    for m in _DAY_MONTH.finditer(text):
        claim(m, int(m.group(3)) if m.group(3) else None, _MONTHS[m.group(2).lower()], int(m.group(1)))
    for m in _MONTH_DAY.finditer(text):
        claim(m, int(m.group(3)) if m.group(3) else None, _MONTHS[m.group(1).lower()], int(m.group(2)))
    for m in _MONTH_YEAR.finditer(text):
        claim(m, int(m.group(2)), _MONTHS[m.group(1).lower()], None)
    for m in _MONTH_ALONE.finditer(text):
        claim(m, None, _MONTHS[m.group(1).lower()], None)
    return out


def named_periods(question: str) -> tuple[Period, ...]:
    """The calendar periods `question` names (see the module docstring), in no particular order."""
    return tuple(dict.fromkeys(Period(month, year, day) for year, month, day in _found(question)))


def stamp_day(stamp: str | None) -> date | None:
    """The day a timestamp names (its first full date: day, month and year), or None."""
    if not stamp:
        return None
    for year, month, day in _found(stamp):
        if year is not None and day is not None:
            return date(year, month, day)
    return None


def within(periods: tuple[Period, ...], stamp: str | None) -> bool:
    """Whether the day of `stamp` falls within any of `periods`."""
    when = stamp_day(stamp)
    return when is not None and any(p.holds(when) for p in periods)
