"""Token counts stored at ingest (migration m006 on SQLite, m005 on PostgreSQL): a view rebuilt
after a restart reads them instead of tokenising the history again; a database from before the
migration is upgraded, its messages counted once when first loaded and the counts stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import create_runtime
from memory.ingest.transcript import event_to_message
from memory.recall.tokens import TiktokenCounter, stored_counter
from memory.runtime import Runtime
from testkit.raw_sql import run_sql

MESSAGES = 120
BUDGET = 700
QUESTION = "Which cache did we size for the parser in message 7?"


def _chat() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(MESSAGES):
        if i % 2 == 0:
            out.append({"type": "user_message", "payload": {"content": f"Message {i}: how big should the parser cache be for file {i * 7}?"}})
        else:
            out.append({"type": "assistant_message", "payload": {"content": f"Message {i}: size it at {i * 13} entries; the parser rereads "
                                                                            f"file {i * 7} otherwise.", "name": f"helper{i % 3}"}})
    out.append({"type": "assistant_message", "payload": {"content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "parser.py"}'}}]}})
    out.append({"type": "tool_message", "payload": {"content": "def parse(text): ...", "tool_call_id": "call_1"}})
    return out


@pytest.fixture
def tokeniser_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every text the tokeniser is asked to count while the test runs."""
    seen: list[str] = []
    original = TiktokenCounter.count

    def count(self: TiktokenCounter, text: str) -> int:
        seen.append(text)
        return original(self, text)

    monkeypatch.setattr(TiktokenCounter, "count", count)
    yield seen


def _runtime(kind: str, where: str) -> Runtime:
    return create_runtime(storage_path=where, embedding_model="none") if kind == "sqlite" else \
        create_runtime(embedding_model="none", storage_url=where)


def _where(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "m.sqlite") if kind == "sqlite" else str(request.getfixturevalue("pg_url"))


def _downgrade(kind: str) -> list[str]:
    """What makes a database look as it did before counts were stored."""
    number = 6 if kind == "sqlite" else 5
    return ["ALTER TABLE events DROP COLUMN tokens", f"DELETE FROM _migrations WHERE number = {number}"]


async def _compile(kind: str, where: str) -> list[dict[str, Any]]:
    async with _runtime(kind, where) as runtime:
        result = await runtime.session("s").compile(user_message=QUESTION, budget_tokens=BUDGET, model="gpt-4o-mini")
    assert not result.over_budget
    return result.messages


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_counts_stored_at_ingest_are_what_the_layout_counts(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    where = _where(kind, tmp_path, request)
    async with _runtime(kind, where) as runtime:
        await runtime.session("s").ingest_many(_chat())
    rows = run_sql(kind, where, ["SELECT role, content, payload, tokens FROM events ORDER BY id"])[0]
    counter = stored_counter()
    assert len(rows) == MESSAGES + 2
    for role, content, payload, tokens in rows:
        assert tokens == counter.message_tokens(event_to_message(role, content, json.loads(payload)))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_old_database_is_upgraded_counted_once_then_read(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                                  tokeniser_calls: list[str]) -> None:
    where = _where(kind, tmp_path, request)
    async with _runtime(kind, where) as runtime:
        await runtime.session("s").ingest_many(_chat())
    fresh = await _compile(kind, where)
    tokeniser_calls.clear()
    await _compile(kind, where)  # a restart on counts stored at ingest
    read = len(tokeniser_calls)

    run_sql(kind, where, _downgrade(kind))
    tokeniser_calls.clear()
    upgraded = await _compile(kind, where)  # migrates, finds no counts: counts every message, stores them
    recounted = len(tokeniser_calls)
    assert upgraded == fresh
    assert run_sql(kind, where, ["SELECT count(*) FROM events WHERE tokens IS NULL"])[0] == [(0,)]

    tokeniser_calls.clear()
    assert await _compile(kind, where) == fresh
    # Every message's role and content went through the tokeniser once when the counts were
    # missing; with them stored, a restart counts only the prompt's own parts (the question, the
    # labels of retrieved items), never a stored message.
    assert recounted >= 2 * MESSAGES + read
    assert len(tokeniser_calls) == read
    history = {str(m["payload"]["content"]) for m in _chat()}
    assert len(history & set(tokeniser_calls)) == 0
