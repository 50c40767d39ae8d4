from __future__ import annotations

import json

import pytest

from memory.records import StateItem
from memory.prompt.state import extract_lines, render_state_block, state_as_dict
from memory.recall.tokens import get_counter


def test_extracts_each_kind():
    ops = extract_lines(
        "Some prose first.\n"
        "Decision: use PostgreSQL for the event store\n"
        "- Constraint: p99 latency under 50 ms\n"
        "Open: do we need multi-region?\n"
        "Glossary: WAL - write-ahead log\n"
        "```\nDecision: inside a code block is ignored\n```\n"
    )
    assert [(o.kind, o.text) for o in ops] == [
        ("decision", "use PostgreSQL for the event store"),
        ("constraint", "p99 latency under 50 ms"),
        ("open", "do we need multi-region?"),
        ("glossary", "WAL - write-ahead log"),
    ]
    assert ops[3].subject == "wal"


def test_supersedes_and_subject_and_close():
    ops = extract_lines("Decision (supersedes D2): use SQLite\nDecision (storage): embedded only\nResolved: Q1 answered in standup")
    assert ops[0].supersedes == "D2" and ops[0].text == "use SQLite"
    assert ops[1].subject == "storage"
    assert ops[2].kind == "close" and ops[2].closes == ("Q1",)


def test_glossary_needs_a_term():
    assert extract_lines("Glossary: nothing to define here") == []


def _item(n: int, kind: str, label: str, text: str, status: str = "active", subject: str | None = None) -> StateItem:
    return StateItem(id=n, kind=kind, label=label, subject=subject, text=text, status=status, superseded_by=None, event_id=n, source_events=(n,))


ITEMS = [
    _item(1, "glossary", "G1", "WAL - write-ahead log", subject="wal"),
    _item(2, "decision", "D1", "use PostgreSQL for the event store", status="superseded"),
    _item(3, "open", "Q1", "do we need multi-region?"),
    _item(4, "decision", "D2", "use SQLite, embedded only", subject="storage"),
    _item(5, "constraint", "C1", "p99 latency under 50 ms"),
    _item(6, "open", "Q2", "who owns the migration?", status="closed"),
]


def test_render_is_compact_not_json():
    block = render_state_block(ITEMS)
    lines = block.splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(block)
    assert not set("{}[]\"") & set(block)
    # Every active item once, as "- <label>: <text>", grouped under its kind's heading in a fixed
    # order (decisions, constraints, open questions, glossary); superseded and closed items left out.
    bullets = [line for line in lines if line.startswith("- ")]
    assert bullets == ["- D2: use SQLite, embedded only", "- C1: p99 latency under 50 ms", "- Q1: do we need multi-region?",
                       "- G1: WAL - write-ahead log"]
    headings = [line for line in lines[1:] if not line.startswith("- ")]
    assert headings == ["Decisions:", "Constraints:", "Open questions:", "Glossary:"]
    counter = get_counter("gpt-4o-mini")
    assert counter.count(block) < counter.count(json.dumps(state_as_dict(ITEMS)))  # compact: fewer tokens than the JSON
    assert render_state_block([i for i in ITEMS if i.status != "active"]) == ""  # nothing active, no block at all
