"""Ingest, storage, content addressing, versions, state, isolation, sync and erase (lexical mode:
these tests are about storage, not retrieval quality), on both stores: SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest

from memory import InvalidArgumentError, InvalidEventError, SessionNotFoundError, create_runtime
from memory.store.sqlite.store import SqliteStore
from testkit.pg import dump_database


@pytest.fixture(params=["sqlite", "postgres"])
async def runtime(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    rt = create_runtime(storage_path=tmp_path / "m.sqlite", storage_url=url, embedding_model="none")
    async with rt:
        yield rt


def _stored_bytes(runtime, tmp_path) -> bytes:
    """Everything the store holds on disk (SQLite: the files) or in its database (PostgreSQL)."""
    url = getattr(runtime.store, "url", None)
    if url:
        return dump_database(url)
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("m.sqlite"))


def _rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_migrations_from_an_empty_file(tmp_path):
    path = tmp_path / "fresh.sqlite"
    store = SqliteStore(path)
    await store.open()
    try:
        assert [name for (name,) in _rows(path, "SELECT name FROM _migrations ORDER BY number")] == [
            "m001_initial", "m002_frames_turns", "m003_foreign_key_indexes", "m004_responses", "m005_cache_writes", "m006_event_tokens",
            "m007_view_snapshots", "m008_view_snapshot_parts"]
        async with store.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with store.db.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
    finally:
        await store.close()
    # Re-opening applies nothing twice.
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert _rows(path, "SELECT number, name FROM _migrations") == [(1, "m001_initial"), (2, "m002_frames_turns"), (3, "m003_foreign_key_indexes"),
                                                                        (4, "m004_responses"), (5, "m005_cache_writes"),
                                                                        (6, "m006_event_tokens"), (7, "m007_view_snapshots"),
                                                                        (8, "m008_view_snapshot_parts")]


@pytest.mark.parametrize(
    "event,error",
    [
        ({"type": "bogus", "payload": {"content": "x"}}, InvalidEventError),
        ({"type": "snippet", "payload": {}}, InvalidEventError),
        ({"type": "user_message", "payload": {"content": 42}}, InvalidEventError),
        ({"type": "user_message", "payload": {"content": ["a"]}}, InvalidEventError),
        ({"type": "user_message"}, InvalidEventError),
        ("not a dict", InvalidEventError),
        ({"type": "file", "payload": {"content": "x"}}, InvalidEventError),
        ({"type": "snippet", "payload": {"content": "x", "pinned": "yes"}}, InvalidEventError),
    ],
)
async def test_bad_events_rejected_and_nothing_stored(runtime, tmp_path, event, error):
    session = runtime.session("s")
    with pytest.raises(error):
        await session.ingest(event)
    # A batch with one bad event stores none of them.
    with pytest.raises(error):
        await session.ingest_many([{"type": "user_message", "payload": {"content": "fine"}}, event])
    assert not await session.exists()
    with pytest.raises(SessionNotFoundError):
        await session.export()
    assert await runtime.list_sessions() == [] and (await runtime.store.high_water("s"))[:2] == (0, 0)


async def test_negative_budget_and_bad_arguments(runtime):
    session = runtime.session("s")
    with pytest.raises(InvalidArgumentError):
        await session.compile(user_message="hi", budget_tokens=-1)
    with pytest.raises(InvalidArgumentError):
        await session.compile(user_message="hi", budget_tokens="100")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await session.compile(user_message=123, budget_tokens=100)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        runtime.session("")
    assert await runtime.list_sessions() == []


async def test_alias_and_compile_is_read_only(runtime):
    session = runtime.session("s")
    await session.ingest({"type": "assistant_response", "payload": {"content": "hello"}})
    before = (await session.info())["counts"]
    await session.compile(user_message="a brand new question", budget_tokens=500)
    assert (await session.info())["counts"] == before
    exported = await session.export()
    assert [e["type"] for e in exported["events"]] == ["assistant_message"]


async def test_content_addressed_once(runtime, tmp_path):
    session = runtime.session("s")
    await session.ingest({"type": "snippet", "payload": {"source": "a.py", "content": "x = 1\ny = 2\n"}})
    await session.ingest({"type": "snippet", "payload": {"source": "b.py", "content": "x = 1\ny = 2\n"}})
    assert (await session.info())["counts"] | {"messages": None} == {"events": 2, "artifacts": 1, "chunks": 1, "messages": None}


async def test_new_file_version_stores_snapshot_and_diff(runtime, tmp_path):
    session = runtime.session("s")
    body = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n" for i in range(40))
    v1 = "def login(user):\n    timeout = 30\n    return check(user)\n\n" + body
    v2 = "def login(user):\n    timeout = 45\n    return check(user)\n\n" + body
    await session.ingest({"type": "file", "payload": {"source": "app/auth.py", "content": v1}})
    await session.ingest({"type": "file", "payload": {"source": "app/auth.py", "content": v2}})
    rows = [(a["kind"], a["version"], a["content"]) for a in (await session.export())["artifacts"]]
    assert [(k, v) for k, v, _ in rows] == [("file", 1), ("file", 2), ("diff", 2)]
    diff = rows[2][2]
    assert "-    timeout = 30" in diff and "+    timeout = 45" in diff
    # Compile prefers the latest version; a question about the change gets the diff.
    result = await session.compile(user_message="what is the login timeout value?", budget_tokens=300)
    assert result.manifest["mode"] == "compiled"
    text = "\n".join(str(m["content"]) for m in result.messages)
    assert "timeout = 45" in text
    change = await session.compile(user_message="what changed in the login timeout?", budget_tokens=300)
    retrieved = [i for i in change.manifest["included"] if i["reason"] == "retrieved"]
    best = max(retrieved, key=lambda i: i["score"])
    assert best["kind"] == "diff" and best["artifact_id"] == 3


async def test_state_supersede_merge_close(runtime):
    session = runtime.session("s")
    await session.ingest({"type": "user_message", "payload": {"content": "Decision: database - PostgreSQL\nOpen: which region?"}})
    await session.observe(assistant_text="Decision: database - SQLite for now\nConstraint: no network calls")
    await session.observe(assistant_text="Constraint: no network calls\nResolved: Q1")
    state = await session.state()
    assert [d["text"] for d in state["decisions"]] == ["database - SQLite for now"]
    assert state["open_questions"] == []
    assert len(state["constraints"]) == 1 and len(state["constraints"][0]["source_events"]) == 2
    full = await session.state(include_inactive=True)
    assert {d["status"] for d in full["decisions"]} == {"active", "superseded"}
    await session.observe(assistant_text="Decision (supersedes D2): database - DuckDB")
    assert [d["id"] for d in (await session.state())["decisions"]] == ["D3"]


async def test_sessions_are_strict_partitions(runtime):
    a, b = runtime.session("alpha"), runtime.session("beta")
    await a.ingest({"type": "snippet", "payload": {"source": "x.py", "content": "SECRET_ALPHA = 'kiwi banana'"}})
    await b.ingest({"type": "snippet", "payload": {"source": "x.py", "content": "SECRET_BETA = 'kiwi mango'"}})
    for _ in range(3):
        await b.ingest({"type": "user_message", "payload": {"content": "kiwi kiwi kiwi"}})
    result = await b.compile(user_message="what is the kiwi secret?", budget_tokens=2000)
    text = "\n".join(str(m["content"]) for m in result.messages)
    assert "SECRET_BETA" in text and "SECRET_ALPHA" not in text


async def test_sync_messages_prefix_and_divergence(runtime):
    session = runtime.session("s")
    convo = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    r1 = await session.sync_messages(convo)
    assert (r1.common_prefix, r1.stored) == (0, 2)
    r2 = await session.sync_messages(convo + [{"role": "user", "content": "next"}])
    assert (r2.common_prefix, r2.stored) == (2, 1)
    # The client edited its last message: only the divergent part is stored; the message it replaced
    # leaves the conversation (kept in the log, marked detached, out of retrieval).
    r3 = await session.sync_messages(convo + [{"role": "user", "content": "edited"}])
    assert (r3.common_prefix, r3.stored) == (2, 1)
    assert (await session.info())["counts"]["messages"] == 3
    events = (await session.export())["events"]
    assert [(e["content"], e["detached"]) for e in events] == [("hi", 0), ("hello", 0), ("next", 1), ("edited", 0)]
    result = await session.compile(user_message="next", budget_tokens=30)
    assert all("next" not in str(m["content"]) for m in result.messages[:-1])
    # Sending the same history again stores nothing.
    r4 = await session.sync_messages(convo + [{"role": "user", "content": "edited"}])
    assert (r4.common_prefix, r4.stored) == (3, 0)


async def test_resolve_session_by_transcript(runtime):
    one, two = runtime.session("one"), runtime.session("two")
    await one.sync_messages([{"role": "user", "content": "hi"}])
    await one.observe(assistant_text="Hello! How can I help with Python?")
    await two.sync_messages([{"role": "user", "content": "hi"}])
    await two.observe(assistant_text="Hey. What are we cooking today?")
    follow = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hey. What are we cooking today?"},
              {"role": "user", "content": "pasta"}]
    assert await runtime.resolve_session(follow) == "two"
    assert await runtime.resolve_session([{"role": "user", "content": "hi"}]) is None
    assert await runtime.resolve_session(follow, scope="someone-else") is None


async def test_delete_session_erases_everything(runtime, tmp_path):
    session = runtime.session("gone")
    await session.ingest({"type": "user_message", "payload": {"content": "the zebra password is crimson-falcon"}})
    await runtime.session("kept").ingest({"type": "user_message", "payload": {"content": "unrelated"}})
    assert await runtime.delete_session("gone") is True
    assert not await session.exists()
    await runtime.close()
    raw = _stored_bytes(runtime, tmp_path)
    assert b"crimson-falcon" not in raw
    assert b"unrelated" in raw


async def test_response_ids_mark_transcript_positions_and_go_stale_after_an_edit(runtime):
    session = runtime.session("r")
    first = await session.prepare_turn([{"role": "user", "content": "one"}], 4000)
    await session.commit_turn(first, {"role": "assistant", "content": "A"}, response_id="resp_1",
                              items=[("msg_1", {"type": "message", "id": "msg_1", "content": "api_key = hunter2hunter2"})])
    assert await runtime.find_response("resp_1") == ("r", 2)
    assert await runtime.find_response("resp_1", scope="other-user") is None
    assert await runtime.find_response("resp_unknown") is None
    # Continue from resp_1 with only the new message: memory supplies the conversation up to there.
    second = await session.prepare_turn([{"role": "user", "content": "two"}], 4000, resume_at=2)
    assert [m["content"] for m in second.messages] == ["one", "A", "two"]
    await session.commit_turn(second, {"role": "assistant", "content": "B"}, response_id="resp_2")
    assert await runtime.find_response("resp_2") == ("r", 4)
    # The same continuation again is a retry: the regenerated reply takes resp_2's place.
    retry = await session.prepare_turn([{"role": "user", "content": "two"}], 4000, resume_at=2)
    await session.commit_turn(retry, {"role": "assistant", "content": "B2"}, response_id="resp_3")
    assert await runtime.find_response("resp_3") == ("r", 4)
    assert await runtime.find_response("resp_2") is None  # its reply left the transcript
    assert await runtime.find_response("resp_1") == ("r", 2)
    stored = await session.find_items(["msg_1", "msg_missing"])
    assert list(stored) == ["msg_1"] and "hunter2" not in stored["msg_1"]["content"]  # redacted like everything stored
    with pytest.raises(InvalidArgumentError):
        await session.prepare_turn([{"role": "user", "content": "x"}], 4000, resume_at=99)
