from __future__ import annotations

from memory.state import extract_lines, render_state_block


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


def test_render_is_compact_not_json():
    assert render_state_block([]) == ""
