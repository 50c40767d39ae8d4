"""The storage contract (`memory.store.protocol.Store` / `StoreTx`), run against both stores: SQLite and
PostgreSQL (a real server, see tests/conftest.py). Every method is exercised with its expected
result; where the SQLite store defines the behaviour (ids, ranking, exports), the PostgreSQL store
must give the same answer on the same writes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memory import InvalidArgumentError, StorageError, create_runtime
from memory.store.postgres.store import PgStore
from memory.records import FrameRecord, NewChunk, NewEvent, TurnRecord, UsageTotals
from memory.recall.retrieval import fts_query
from memory.runtime import Runtime
from memory.store.sqlite.store import SqliteStore
from memory.store.locks import SessionLocks
from memory.store.protocol import Store


def _open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "m.sqlite")
    return PgStore(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = _open_store(request.param, tmp_path, request)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _runtime(store: Store) -> Runtime:
    return Runtime("unused", embedding_model="none", store=store)


def _message(role: str, text: str, message_hash: str | None = None) -> NewEvent:
    return NewEvent(
        type=f"{role}_message", role=role, content=text, source=None, pinned=False, timestamp=None,
        payload=json.dumps({"content": text}), chunks=[NewChunk(text, 1, 1, f"h-{text}", len(text.split()))], message_hash=message_hash,
    )


def _artifact(sha: str, text: str, source: str = "a.py", pinned: bool = False, chunks: int = 1) -> NewEvent:
    return NewEvent(
        type="snippet", role=None, content=text, source=source, pinned=pinned, timestamp=None, payload="{}",
        chunks=[NewChunk(f"{text} part {i}", i + 1, i + 1, f"h-{sha}-{i}", 3, probes=((f"probe {sha} {i}", f"p-{sha}-{i}"),))
                for i in range(chunks)],
        artifact_kind="snippet", artifact_sha=sha,
    )


async def test_add_events_ids_artifacts_and_chunks_in_order(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        ids = await tx.add_events("s", [_message("user", "hello there"), _artifact("A", "alpha", chunks=2), _message("assistant", "hi")])
        again = await tx.add_events("s", [_artifact("A", "alpha", pinned=True)])
        assert await tx.artifact_exists("s", "A") and not await tx.artifact_exists("s", "B") and not await tx.artifact_exists("t", "A")
    assert ids == [1, 2, 3] and again == [4]
    delta = await store.load_delta("s", 0, 0, 0)
    assert [(e.id, e.type, e.role, e.artifact_id) for e in delta.events] == [
        (1, "user_message", "user", None), (2, "snippet", None, 1), (3, "assistant_message", "assistant", None), (4, "snippet", None, 1)]
    assert delta.events[1].content == "" and delta.events[0].payload == {"content": "hello there"}
    (art,) = delta.artifacts
    assert (art.id, art.first_event_id, art.last_event_id, art.pinned, art.sha256) == (1, 2, 4, True, "A")
    # A message chunk, then each artifact chunk followed by its probe (which points at it).
    assert [(c.id, c.event_id, c.artifact_id, c.ord, c.parent_id, c.text) for c in delta.chunks] == [
        (1, 1, None, 0, None, "hello there"),
        (2, None, 1, 0, None, "alpha part 0"), (3, None, 1, 0, 2, "probe A 0"),
        (4, None, 1, 1, None, "alpha part 1"), (5, None, 1, 1, 4, "probe A 1"),
        (6, 3, None, 0, None, "hi"),
    ]
    assert (await store.high_water("s"))[:2] == (4, 6)
    assert await store.high_water("other") == (0, 0, 0)
    later = await store.load_delta("s", 3, 1, 5)
    assert [e.id for e in later.events] == [4] and [c.id for c in later.chunks] == [6]
    assert [a.id for a in later.artifacts] == [1]  # touched again by event 4
    page = await store.load_delta("s", 0, 0, 2, chunk_limit=2)  # a page of chunks; events and artifacts whole
    assert [c.id for c in page.chunks] == [3, 4] and len(page.events) == 4 and [a.id for a in page.artifacts] == [1]


async def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.ensure_session("s")
            await tx.add_events("s", [_message("user", "doomed")])
            raise RuntimeError("crash mid-write")
    assert not await store.session_exists("s")
    assert await store.high_water("s") == (0, 0, 0)
    assert await store.list_sessions() == []


async def test_lookups_inside_a_transaction(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        ids = await tx.add_events("s", [_message("user", "q1"), _artifact("A", "code"), _message("assistant", "a1"), _message("user", "q2")])
        assert await tx.last_message_before("s", ids[3]) == (ids[2], "a1")
        assert await tx.last_message_before("s", ids[0]) is None
        assert await tx.first_chunk_ids(ids) == {ids[0]: 1, ids[2]: 4, ids[3]: 5}
        assert await tx.first_chunk_ids([]) == {}
        await tx.add_probes("s", [(1, "pair q1 a1", "hp1"), (4, "pair q1 a1", "hp1")])
    delta = await store.load_delta("s", 0, 0, 5)
    assert [(c.id, c.event_id, c.parent_id, c.text, c.content_hash, c.tokens) for c in delta.chunks] == [
        (6, ids[0], 1, "pair q1 a1", "hp1", 0), (7, ids[2], 4, "pair q1 a1", "hp1", 0)]


async def test_file_versions_and_latest_artifact(store: Store) -> None:
    v1 = NewEvent(type="file", role=None, content="x = 1\n", source="f.py", pinned=False, timestamp=None, payload="{}",
                  chunks=[NewChunk("x = 1", 1, 1, "c1", 3)], artifact_kind="file", artifact_sha="F1")
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        await tx.add_events("s", [v1])
        assert await tx.latest_artifact("s", "f.py") == (1, 1, "x = 1\n")
        v2 = NewEvent(type="file", role=None, content="x = 2\n", source="f.py", pinned=False, timestamp=None, payload="{}",
                      chunks=[NewChunk("x = 2", 1, 1, "c2", 3)], artifact_kind="file", artifact_sha="F2", previous_id=1, version=2,
                      diff=("D12", "-x = 1\n+x = 2\n", [NewChunk("-x = 1 +x = 2", 1, 2, "cd", 6)]))
        await tx.add_events("s", [v2])
        assert await tx.latest_artifact("s", "f.py") == (2, 2, "x = 2\n")  # the diff is not a snapshot
        assert await tx.latest_artifact("s", "g.py") is None
    delta = await store.load_delta("s", 0, 0, 0)
    assert [(a.id, a.kind, a.version, a.previous_id, a.first_event_id) for a in delta.artifacts] == [
        (1, "file", 1, None, 1), (2, "file", 2, 1, 2), (3, "diff", 2, 1, 2)]
    assert [(c.artifact_id, c.text) for c in delta.chunks] == [(1, "x = 1"), (2, "x = 2"), (3, "-x = 1 +x = 2")]


async def test_vectors_are_shared_by_hash_and_written_once(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        await tx.add_events("s", [_message("user", t) for t in ("1", "2", "3")])
        await tx.put_vectors("m", [("h-1", b"\x01\x02"), ("h-2", b"\x03")])
    async with store.transaction() as tx:
        await tx.put_vectors("m", [("h-1", b"\xff"), ("h-3", b"\x04")])
    assert await store.get_vectors("m", ["h-1", "h-2", "h-3", "h-4", "h-1"]) == {"h-1": b"\x01\x02", "h-2": b"\x03", "h-3": b"\x04"}
    assert await store.get_vectors("other-model", ["h-1"]) == {}
    assert await store.get_vectors("m", []) == {}


async def test_a_vector_of_text_no_session_holds_is_not_stored(store: Store) -> None:
    """A background batch embedded while its session was being erased lands after the erase."""
    async with store.transaction() as tx:
        await tx.ensure_session("gone")
        await tx.add_events("gone", [_message("user", "secret")])
    assert await store.delete_sessions(["gone"]) == ["gone"]
    async with store.transaction() as tx:
        await tx.put_vectors("m", [("h-secret", b"s"), ("h-never", b"n")])
    assert await store.get_vectors("m", ["h-secret", "h-never"]) == {}


async def test_state_items(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        (e1, e2) = await tx.add_events("s", [_message("user", "Decision: x"), _message("user", "again")])
        d1 = await tx.add_state_item("s", "decision", "D1", "db", "db - x", "db - x", e1)
        d2 = await tx.add_state_item("s", "decision", "D2", "db", "db - y", "db - y", None)
        await tx.set_state_status(d1, "superseded", d2)
        await tx.add_state_source(d2, e2)
        await tx.add_state_source(d2, e2)  # no duplicate
        await tx.add_state_source(d1, e2)
        inside = await tx.state_items("s")
    items = await store.state_items("s")
    assert items == inside
    assert [(i.label, i.status, i.superseded_by, i.event_id, i.source_events) for i in items] == [
        ("D1", "superseded", d2, e1, (e1, e2)), ("D2", "active", None, None, (e2,))]
    assert await store.state_items("other") == []


async def test_transcript_heads_and_resolution(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("one", scope="alice")
        (q, a) = await tx.add_events("one", [_message("user", "q"), _message("assistant", "a")])
        await tx.replace_transcript("one", 0, [(0, "m1", "c1", q), (1, "m2", "c2", a)], "c2")
        await tx.ensure_session("two", scope="alice")
        await tx.replace_transcript("two", 0, [(0, "m1", "c1", None)], "c1")
        await tx.replace_transcript("two", 1, [(1, "m3", "c3", None)], "c3")
        assert [(e.pos, e.msg_hash, e.chain_hash) for e in await tx.transcript("two")] == [(0, "m1", "c1"), (1, "m3", "c3")]
        await tx.replace_transcript("two", 1, [], "c1")  # an edit dropped the tail
    assert [(e.msg_hash, e.event_id, e.role) for e in await store.transcript("one")] == [("m1", q, "user"), ("m2", a, "assistant")]
    assert [(e.msg_hash, e.role) for e in await store.transcript("two")] == [("m1", "user")]  # no event: counted as the user's
    assert await store.find_session_by_head("alice", ["c1", "c2"]) == "one"  # the longest match wins
    assert await store.find_session_by_head("alice", ["c1"]) == "two"
    assert await store.find_session_by_head("bob", ["c1", "c2"]) is None
    assert await store.find_session_by_head("alice", []) is None
    assert sorted(await store.find_session_by_chain("alice", "c1")) == [("one", 0, 2), ("two", 0, 1)]
    assert await store.find_session_by_chain("alice", "c2") == [("one", 1, 2)]
    assert await store.find_session_by_chain("bob", "c1") == []


async def test_detach_rebuild_and_generation(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        ids = await tx.add_events("s", [_message("user", "Decision: keep"), _message("assistant", "ok"), _message("user", "Decision: drop")])
        await tx.replace_transcript("s", 0, [(i, f"m{i}", f"c{i}", e) for i, e in enumerate(ids)], "c2")
        await tx.add_state_item("s", "decision", "D1", None, "keep", "keep", ids[0])
    before = await store.high_water("s")
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        assert await tx.detach_from("s", 1) == [(ids[1], "ok"), (ids[2], "Decision: drop")]
        assert await tx.live_messages("s") == [(ids[0], "Decision: keep")]
        await tx.clear_state("s")
        assert await tx.state_items("s") == []  # a transaction reads its own writes
    after = await store.high_water("s")
    assert after[:2] == before[:2] and after[2] != before[2]  # same rows, views must reload
    assert [e.id for e in (await store.load_delta("s", 0, 0, 0)).events] == [ids[0]]  # detached events leave retrieval
    assert [e.msg_hash for e in await store.transcript("s")] == ["m0"]
    (summary,) = await store.list_sessions("s")
    assert (summary.events, summary.messages) == (1, 1)
    assert [e["detached"] for e in (await store.export_rows("s"))["events"]] == [0, 1, 1]  # still in the log


async def test_frames_turns_and_usage(store: Store) -> None:
    frame = FrameRecord(0, 4, "anchor", "o200k_base", 2000, ({"role": "system", "content": "state ✓"},), ({"key": "e1"},))
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        first = await tx.save_frame("s", frame)
        second = await tx.save_frame("s", replace(frame, window_start=6))
        await tx.add_turn("s", TurnRecord("k1", first, 3, {"keys": ["e1"]}, "gpt-4o-mini", "rebased", 900, 400, 410, 0, 20))
        await tx.add_turn("s", TurnRecord("k2", second, 5, None, "gpt-4o-mini", "appended", 1000, 450, None, None, None))
        await tx.add_turn("s", TurnRecord("k1", second, 5, None, "gpt-4o-mini", "retry", 900, 450, 460, 384, 25))
        assert [f.id for f in await tx.frames("s")] == [second, first]
    frames = await store.frames("s")
    assert [(f.id, f.window_start, f.base, f.items) for f in frames] == [
        (second, 6, frame.base, frame.items), (first, 4, frame.base, frame.items)]
    assert [f.id for f in await store.frames("s", limit=1)] == [second]
    found = await store.find_turn("s", "k1")
    assert found is not None and (found.mode, found.frame_id, found.cached_tokens, found.evidence) == ("retry", second, 384, None)
    assert (await store.find_turn("s", "k2")).prompt_tokens is None  # type: ignore[union-attr]
    assert await store.find_turn("s", "nope") is None and await store.find_turn("other", "k1") is None
    assert [(t.request_key, t.evidence) for t in await store.turns("s")] == [("k1", {"keys": ["e1"]}), ("k2", None), ("k1", None)]
    assert [t.request_key for t in await store.turns("s", limit=2)] == ["k2", "k1"]
    assert await store.usage_totals("s") == UsageTotals(3, 2800, 1300, 870, 384, 45)
    assert await store.usage_totals("other") == UsageTotals()
    rows = await store.export_rows("s")
    assert [len(rows["frames"]), len(rows["turns"])] == [2, 3]


async def test_responses_and_items(store: Store) -> None:
    """Response ids (Responses API `previous_response_id`) and items (`item_reference`) by session."""
    async with store.transaction() as tx:
        await tx.ensure_session("s", scope="alice")
        await tx.ensure_session("t", scope="bob")
        await tx.add_response("s", "resp_1", 2, "c2")
        await tx.add_response("s", "resp_2", 4, "c4")
        await tx.add_response("t", "resp_t", 1, "c1")
        await tx.add_items("s", [("msg_b", '{"n": 1}'), ("msg_a", '{"n": 2}'), ("msg_b", '{"n": 3}')])
        await tx.add_items("t", [("msg_a", '{"t": 1}')])
        assert await tx.find_response("resp_1", "alice") == ("s", 2, "c2")  # a transaction sees its own writes
    assert await store.find_response("resp_2", "alice") == ("s", 4, "c4")
    assert await store.find_response("resp_2", "bob") is None  # another scope never finds it
    assert await store.find_response("resp_none", "alice") is None
    async with store.transaction() as tx:
        await tx.add_response("s", "resp_2", 6, "c6")  # a regenerated id moves
        await tx.add_items("s", [("msg_a", '{"n": 4}')])
    assert await store.find_response("resp_2", "alice") == ("s", 6, "c6")
    assert await store.find_items("s", ["msg_a", "msg_b", "msg_x", "msg_a"]) == {"msg_a": '{"n": 4}', "msg_b": '{"n": 3}'}
    assert await store.find_items("t", ["msg_a", "msg_b"]) == {"msg_a": '{"t": 1}'}
    assert await store.find_items("s", []) == {}
    rows = await store.export_rows("s")
    assert [(r["id"], r["pos"], r["chain_hash"]) for r in rows["responses"]] == [("resp_1", 2, "c2"), ("resp_2", 6, "c6")]
    assert [(r["item_id"], r["item"]) for r in rows["response_items"]] == [("msg_a", '{"n": 4}'), ("msg_b", '{"n": 3}')]
    assert await store.rename_session("s", "u", "alice", "carol")
    assert await store.find_response("resp_1", "carol") == ("u", 2, "c2") and await store.find_response("resp_1", "alice") is None
    assert await store.find_items("u", ["msg_b"]) == {"msg_b": '{"n": 3}'} and await store.find_items("s", ["msg_b"]) == {}
    assert await store.delete_sessions(["u"]) == ["u"]
    assert await store.find_response("resp_1", "carol") is None and await store.find_items("u", ["msg_a"]) == {}
    assert await store.find_response("resp_t", "bob") == ("t", 1, "c1")


async def test_session_lock_serialises_one_session_only(store: Store) -> None:
    order: list[str] = []
    async with store.session_lock("s"):
        same = asyncio.create_task(_locked(store, "s", order, "same session"))
        other = asyncio.create_task(_locked(store, "t", order, "other session"))
        await asyncio.wait_for(other, 10)
        await _until(lambda: _queued(store, "s", 2), "the second holder of s queued behind the first")
        assert not same.done()
        order.append("released")
    await asyncio.wait_for(same, 10)
    assert order == ["other session", "released", "same session"]


async def test_check_writable(store: Store) -> None:
    await store.check_writable()


async def test_sessions_listing_manifest_and_export(store: Store) -> None:
    runtime = _runtime(store)
    await runtime.session("old").ingest({"type": "user_message", "payload": {"content": "first"}})
    new = runtime.session("new")
    await new.ingest_many([{"type": "user_message", "payload": {"content": "Decision: use sqlite"}},
                           {"type": "snippet", "payload": {"source": "a.py", "content": "x = 1"}}])
    assert await store.session_exists("new") and not await store.session_exists("nobody")
    listed = await store.list_sessions()
    assert [(s.id, s.events, s.messages, s.artifacts, s.chunks) for s in listed] == [("new", 2, 1, 1, 2), ("old", 1, 1, 0, 1)]
    assert [s.id for s in await store.list_sessions("old")] == ["old"]
    assert await store.last_manifest("new") is None
    async with store.transaction() as tx:
        await tx.save_manifest("new", '{"mode": "compiled"}')
    assert await store.last_manifest("new") == '{"mode": "compiled"}'
    rows = await store.export_rows("new")
    assert set(rows) == {"events", "artifacts", "state_items", "transcript", "frames", "turns", "responses", "response_items"}
    assert [e["type"] for e in rows["events"]] == ["user_message", "snippet"]
    assert json.loads(rows["state_items"][0]["source_events"]) == [rows["events"][0]["id"]]
    assert set(rows["events"][0]) == {"id", "session_id", "type", "role", "content", "source", "pinned", "timestamp", "payload",
                                      "artifact_id", "parent_event_id", "created_at", "detached", "tokens"}


async def test_event_token_counts_stored_read_and_filled_later(store: Store) -> None:
    """A message's count taken at ingest comes back with the row; one stored without a count
    (before m006) reads as None until `set_event_tokens` fills it, in that session only."""
    counted = replace(_message("user", "counted at ingest"), tokens=17)
    async with store.transaction() as tx:
        await tx.ensure_session("s")
        await tx.ensure_session("t")
        ids = await tx.add_events("s", [counted, _message("assistant", "stored before counts"), _artifact("x", "code")])
        (other,) = await tx.add_events("t", [_message("user", "elsewhere")])
    delta = await store.load_delta("s", 0, 0, 0)
    assert [(e.id, e.tokens) for e in delta.events] == [(ids[0], 17), (ids[1], None), (ids[2], None)]
    async with store.transaction() as tx:
        await tx.set_event_tokens([(ids[1], 5)])
    assert [e.tokens for e in (await store.load_delta("s", 0, 0, 0)).events] == [17, 5, None]
    assert [e.tokens for e in (await store.load_delta("t", 0, 0, 0)).events] == [None]
    assert [e.tokens for e in await store.events_by_id("s", ids)] == [17, 5, None]
    assert other not in ids


async def test_delete_session_keeps_shared_vectors_only(store: Store) -> None:
    async with store.transaction() as tx:
        for sid, texts in (("gone", ["shared", "mine"]), ("kept", ["shared"])):
            await tx.ensure_session(sid)
            await tx.add_events(sid, [_message("user", t) for t in texts])
        await tx.put_vectors("m", [("h-shared", b"s"), ("h-mine", b"m")])
    assert await store.delete_sessions(["gone"]) == ["gone"]
    assert await store.delete_sessions(["gone"]) == []
    assert await store.delete_sessions(["never"]) == []
    assert not await store.session_exists("gone") and await store.session_exists("kept")
    assert await store.high_water("gone") == (0, 0, 0) and await store.bm25("gone", '"mine" OR "shared"', 10) == []
    assert await store.get_vectors("m", ["h-shared", "h-mine"]) == {"h-shared": b"s"}


async def test_bm25_stays_inside_the_session_and_reads_quoted_words_joined_by_or(store: Store) -> None:
    runtime = _runtime(store)
    await runtime.session("mine").ingest_many([
        {"type": "user_message", "payload": {"content": "the pony runs in the field"}},
        {"type": "user_message", "payload": {"content": "auth tokens for the pony service"}},
        {"type": "user_message", "payload": {"content": "nothing relevant here"}},
    ])
    await runtime.session("theirs").ingest({"type": "user_message", "payload": {"content": "pony pony pony auth"}})

    async def hits(match: str) -> list[int]:
        return sorted(i for i, _ in await store.bm25("mine", match, 10))

    assert await hits('"ponies"') == [1, 2]  # stemmed, and never the other session's row 4
    assert await hits('"field" OR auth') == [1, 2] and await hits('"field" OR "service" OR "field"') == [1, 2]
    assert await hits('"tokens for the"') == [2] and await hits('"for tokens"') == []
    assert await hits('"RUNNING"') == [1] and await hits('"--"') == [] and await hits("") == []
    ranked = await store.bm25("mine", '"pony" OR "field"', 10)
    assert [i for i, _ in ranked] == [1, 2] and ranked[0][1] < ranked[1][1] < 0  # lower is better
    assert len(await store.bm25("mine", '"pony"', 1)) == 1
    # Words joined by OR only (what `retrieval.fts_query` writes): both stores refuse any other FTS5 syntax.
    for match in ('"pony" NOT "auth"', '"pony" "auth"', '"pony" AND "auth"', '("field" OR "service")', '"pony"*', "text:pony",
                  "NEAR(a b)", '"unterminated', "a.b", '"a" OR'):
        with pytest.raises(InvalidArgumentError):
            await store.bm25("mine", match, 10)


async def test_bm25_ranks_exactly_like_fts5(tmp_path: Path, pg_url: str) -> None:
    """Same writes into both stores (one session each): the same rows, in the same order, with
    the same scores, for the runtime's own queries. FTS5 statistics cover the whole file, which
    holds only this session here, so they equal the PostgreSQL store's per-session ones."""
    turns = [
        "We decided to move the billing retries into a queue with exponential backoff.",
        "The user_id column is indexed; login_attempts counts failures per user_id.",
        "Caching: evict entries after 30 minutes, and the caches are warmed on deploy.",
        "Running the migrations twice must be harmless; each migration is recorded once.",
        "Ponies and caresses: relational conditional generously, the stemmer's favourite words.",
        "Backoff starts at 200 ms and doubles; retries stop after five attempts.",
        "Naïve café owners resume the résumé review tomorrow.",
    ] + [f"filler turn {i} about deploy schedules and queue depth {i % 7}" for i in range(30)]
    code = "def login(user_id, attempts):\n    # retries with backoff\n    return queue.push(user_id)\n" * 3
    queries = [
        "what did we decide about billing retries?", "which column counts failed login attempts per user_id?",
        "when are caches evicted?", "are migrations recorded?", "ponies caressing generously", "backoff doubling",
        "cafe resume naive", "queue depth 3 deploy", "login(user_id) push", "nothing matches xyzzy",
    ]
    stores: list[Store] = [SqliteStore(tmp_path / "m.sqlite"), PgStore(pg_url)]
    results = []
    for store in stores:
        async with _runtime(store) as runtime:
            session = runtime.session("s")
            await session.ingest_many([{"type": "user_message", "payload": {"content": t}} for t in turns])
            await session.ingest({"type": "snippet", "payload": {"source": "app/login.py", "content": code}})
            results.append([await store.bm25("s", fts_query(q), 50) for q in queries])
    sqlite_hits, pg_hits = results
    for query, a, b in zip(queries, sqlite_hits, pg_hits, strict=True):
        assert [i for i, _ in a] == [i for i, _ in b], query
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9, abs=1e-12), query
    assert sum(len(h) for h in pg_hits) > 40 and pg_hits[-1] == []


async def test_runtime_on_postgres_by_url(pg_url: str) -> None:
    async with create_runtime(storage_url=pg_url, embedding_model="none") as runtime:
        assert isinstance(runtime.store, PgStore)
        session = runtime.session("s")
        await session.ingest({"type": "user_message", "payload": {"content": "Constraint: never log keys"}})
        assert (await session.state())["constraints"][0]["text"] == "never log keys"
    with pytest.raises(InvalidArgumentError):
        create_runtime(storage_url="mysql://somewhere/db")


async def _applied(store: PgStore) -> list[str]:
    return [str(r[0]) for r in await store._rows("SELECT name FROM _migrations ORDER BY number")]


async def test_postgres_migrations_race_and_apply_once(pg_url: str) -> None:
    async with _instances(pg_url, 4) as stores:  # four instances starting together
        assert await _applied(stores[0]) == ["m001_initial", "m002_responses", "m003_cache_writes", "m004_fts_terms", "m005_event_tokens", "m006_fts_postings",
                                             "m007_view_snapshots", "m008_view_snapshot_parts"]
        again = PgStore(pg_url)
        await again.open()
        assert await _applied(again) == ["m001_initial", "m002_responses", "m003_cache_writes", "m004_fts_terms", "m005_event_tokens", "m006_fts_postings",
                                             "m007_view_snapshots", "m008_view_snapshot_parts"]
        await again.close()


async def test_postgres_unreachable_is_a_storage_error(tmp_path: Path) -> None:
    store = PgStore(f"postgresql://nobody@/db?host={tmp_path}&connect_timeout=2")
    with pytest.raises(StorageError) as caught:
        await store.open()
    assert "cannot open memory store" in str(caught.value)
    with pytest.raises(StorageError):
        await store.high_water("s")


async def test_postgres_password_never_in_messages(tmp_path: Path) -> None:
    url = f"postgresql://someone:hunter2-secret@/db?host={tmp_path}&connect_timeout=2"
    store = PgStore(url)
    with pytest.raises(StorageError) as caught:
        await store.open()
    assert "hunter2-secret" not in str(caught.value) and "hunter2-secret" not in repr(store)


@asynccontextmanager
async def _instances(url: str, n: int = 2) -> AsyncIterator[list[PgStore]]:
    """`n` stores on one database: `n` instances of the proxy."""
    stores = [PgStore(url) for _ in range(n)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        yield stores
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def _new_event_texts(delta: Any) -> list[str]:
    return [e.content for e in delta.events]


async def test_postgres_instances_see_each_others_writes_in_order(pg_url: str) -> None:
    """Two stores on one database stand for two proxy instances. A write transaction of a session
    waits for another instance's open one, so ids commit in order and a reader that has seen id N
    has seen everything below it."""
    async with _instances(pg_url) as (one, two):
        async with one.transaction() as tx:
            await tx.ensure_session("s")
            await tx.add_events("s", [_message("user", "from one")])
        assert _new_event_texts(await two.load_delta("s", 0, 0, 0)) == ["from one"]
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def slow_writer() -> list[int]:
            async with one.transaction() as tx:
                await tx.ensure_session("s")
                ids = await tx.add_events("s", [_message("user", "slow")])
                first_in.set()
                await release.wait()
            return ids

        async def second_writer() -> list[int]:
            await first_in.wait()
            async with two.transaction() as tx:
                await tx.ensure_session("s")  # waits here until the slow writer commits
                return await tx.add_events("s", [_message("user", "fast")])

        slow = asyncio.create_task(slow_writer())
        fast = asyncio.create_task(second_writer())
        await first_in.wait()
        await _until(lambda: _pg_waiters(pg_url, 1), "the second writer waiting on the session's row lock")
        assert not fast.done()
        assert (await two.high_water("s"))[:2] == (1, 1)  # nothing uncommitted is visible
        release.set()
        slow_ids, fast_ids = await slow, await fast
        assert fast_ids[0] > slow_ids[0]
        assert _new_event_texts(await two.load_delta("s", 1, 0, 1)) == ["slow", "fast"]


async def test_postgres_session_lock_excludes_across_instances(pg_url: str) -> None:
    order: list[str] = []
    async with _instances(pg_url) as (one, two):
        async with one.session_lock("s"):
            waiting = asyncio.create_task(_locked(two, "s", order, "two"))
            other = asyncio.create_task(_locked(two, "t", order, "other session"))
            await asyncio.wait_for(other, 10)  # another session never waits
            await _until(lambda: _pg_waiters(pg_url, 1), "instance two waiting on the advisory lock")
            assert not waiting.done()
            order.append("one releases")
        await asyncio.wait_for(waiting, 10)
        assert order == ["other session", "one releases", "two"]
        # In one process, holders of the same session queue too (one lock connection per session).
        async with one.session_lock("s"):
            queued = asyncio.create_task(_locked(one, "s", order, "same process"))
            await _until(lambda: _queued(one, "s", 2), "the second holder in one process queued behind the first")
            assert not queued.done()
        await asyncio.wait_for(queued, 10)


async def test_postgres_session_lock_dies_with_its_holder(pg_url: str) -> None:
    order: list[str] = []
    async with _instances(pg_url) as (holder, other):
        entered = asyncio.Event()

        async def hold_forever() -> None:
            async with holder.session_lock("s"):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(hold_forever())
        await entered.wait()
        waiting = asyncio.create_task(_locked(other, "s", order, "other"))
        await _until(lambda: _pg_waiters(pg_url, 1), "the other instance waiting on the advisory lock")
        assert not waiting.done()
        # The holding instance crashes: PostgreSQL ends its connections, the lock goes with them.
        async with other.transaction() as tx:
            await tx.conn.execute(  # type: ignore[attr-defined]
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        await asyncio.wait_for(waiting, 10)
        assert order == ["other"]
        task.cancel()
        with pytest.raises((asyncio.CancelledError, StorageError)):
            await task


async def _until(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = 60.0) -> None:
    """Wait until `check` holds, polling with a deadline: a waiter is seen waiting, not assumed to
    be after a pause (a pause passes just as well when the waiter never started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"never saw {what}")
        await asyncio.sleep(0.01)


async def _queued(store: Store, session_id: str, users: int) -> bool:
    """The store's in-process lock of the session has `users` holders and waiters."""
    locks: SessionLocks = getattr(store, "_session_locks")
    return locks.users(session_id) == users


async def _pg_waiters(pg_url: str, count: int) -> bool:
    """`count` backends of this database wait for a lock (an advisory lock, a row lock)."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()"
        )).fetchone()
    return row is not None and int(row[0]) == count


async def _locked(store: Store, session_id: str, order: list[str], name: str) -> None:
    async with store.session_lock(session_id):
        order.append(name)


def test_memory_imports_without_the_postgres_driver() -> None:
    """`import memory` needs no PostgreSQL driver; asking for PostgreSQL without it says what to install."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "import memory\n"
        "memory.create_runtime(storage_path='/nonexistent/x.sqlite')\n"
        "try:\n"
        "    memory.create_runtime(storage_url='postgresql://u@h/db')\n"
        "except memory.StorageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "memory-runtime[postgres]" in done.stdout and "psycopg" in done.stdout


def _text(result: Any) -> str:
    return "\n".join(str(m["content"]) for m in result.messages)


async def test_postgres_erase_reaches_every_instance_on_its_next_touch(pg_url: str) -> None:
    """Two runtimes on one database stand for two instances, each with its in-process view of the
    session. An erase through one is seen by the other at once, even when the id is used again."""
    question = "what is the vault code?"
    async with Runtime("unused", embedding_model="none", store=PgStore(pg_url)) as one, \
            Runtime("unused", embedding_model="none", store=PgStore(pg_url)) as two:
        await one.session("s").ingest({"type": "user_message", "payload": {"content": "the vault code is crimson-falcon"}})
        assert "crimson-falcon" in _text(await one.session("s").compile(user_message=question, budget_tokens=300))
        assert await two.delete_session("s")
        assert "crimson-falcon" not in _text(await one.session("s").compile(user_message=question, budget_tokens=300))
        await one.session("s").compile(user_message=question, budget_tokens=300)  # a view of the empty session
        await two.session("s").ingest({"type": "user_message", "payload": {"content": "a new vault was built"}})
        text = _text(await one.session("s").compile(user_message=question, budget_tokens=300))
        assert "new vault" in text and "crimson-falcon" not in text


async def test_postgres_store_recovers_when_its_connections_are_cut(pg_url: str) -> None:
    """A database restart or failover ends every pooled connection: a read retries on a fresh one;
    a write fails with StorageError (the proxy then fails open) and the next one goes through."""
    store = PgStore(pg_url)
    await store.open()
    try:
        async with store.transaction() as tx:
            await tx.ensure_session("s")
        async with store.session_lock("s"):
            pass
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 2  # the statement pool's and the lock pool's connections
        assert await store.session_exists("s")  # read: retried on a fresh connection
        outcomes = []
        for _ in range(store.pool_size + 2):
            try:
                async with store.transaction() as tx:
                    await tx.ensure_session("t")
                outcomes.append("ok")
            except StorageError:
                outcomes.append("failed")
        assert outcomes[-1] == "ok" and await store.session_exists("t")
        async with store.session_lock("s"):  # a lock connection cut while idle is replaced too
            pass
    finally:
        await store.close()


async def test_whole_session_operations(store: Store) -> None:
    """Pages of the session list (code point order), rename, expiry, batch erase, health."""
    runtime = _runtime(store)
    for sid in ("alice/b", "alice/a", "bob/x", "alice/é", "zed"):
        await runtime.session(sid).ingest({"type": "user_message", "payload": {"content": f"the kiwi of {sid}"}})
    assert [s.id for s in await store.page_sessions()] == ["alice/a", "alice/b", "alice/é", "bob/x", "zed"]
    assert [s.id for s in await store.page_sessions("alice/", after="alice/a", limit=1)] == ["alice/b"]
    assert [s.id for s in await store.page_sessions("alice/", after="alice/b")] == ["alice/é"]
    before = await store.high_water("alice/a")
    assert await store.rename_session("alice/a", "carol/a", "alice", "carol") is True
    assert await store.rename_session("alice/a", "carol/z") is False
    with pytest.raises(InvalidArgumentError):
        await store.rename_session("alice/b", "zed")
    assert not await store.session_exists("alice/a")
    moved = await store.high_water("carol/a")
    assert moved[:2] == before[:2]
    chunk_ids = [c.id for c in (await store.load_delta("carol/a", 0, 0, 0)).chunks]
    assert [i for i, _ in await store.bm25("carol/a", '"kiwi"', 5)] == chunk_ids and await store.bm25("alice/a", '"kiwi"', 5) == []
    assert await store.expired_sessions(None, None) == []
    assert await store.expired_sessions(None, 1) == ["alice/b"]  # the newest per namespace stays
    assert await store.expired_sessions(10**12, None, limit=2) == ["alice/b", "alice/é"]
    assert await store.delete_sessions(["zed", "bob/x", "nobody"]) == ["bob/x", "zed"]
    assert [s.id for s in await store.page_sessions()] == ["alice/b", "alice/é", "carol/a"]
    assert await store.health() is None


async def test_session_search_in_pages(store: Store) -> None:
    """`page_sessions(contains=...)`: searched after the prefix, ASCII case folded (as SQLite's
    lower()), counting events as the session list does."""
    runtime = _runtime(store)
    for sid in ("a/Edited-One", "a/plain", "a/ÉTÉ", "b/edited"):
        await runtime.session(sid).ingest({"type": "user_message", "payload": {"content": "x"}})
    assert [s.id for s in await store.page_sessions("a/", contains="EDIT")] == ["a/Edited-One"]
    assert [s.id for s in await store.page_sessions("", contains="edit")] == ["a/Edited-One", "b/edited"]
    assert await store.page_sessions("a/", contains="a/") == []  # the prefix itself is not searched
    assert [s.id for s in await store.page_sessions("a/", contains="ÉT")] == ["a/ÉTÉ"]
    assert await store.page_sessions("a/", contains="ét") == []  # only ASCII letters fold
    assert [s.id for s in await store.page_sessions("a/", contains="t")] == ["a/Edited-One", "a/ÉTÉ"]  # code point order
    assert [s.id for s in await store.page_sessions("a/", after="a/Edited-One", limit=1, contains="t")] == ["a/ÉTÉ"]
    (found,) = await store.page_sessions("a/", contains="plain")
    assert found == (await store.list_sessions("a/plain"))[0]


async def test_postgres_rename_gives_a_new_generation_and_health_answers_when_down(pg_url: str) -> None:
    async with _instances(pg_url, 1) as (store,):
        await _runtime(store).session("a").ingest({"type": "user_message", "payload": {"content": "x"}})
        before = await store.high_water("a")
        assert await store.rename_session("a", "b")
        assert (await store.high_water("b"))[2] != before[2]  # no instance keeps a view of the old rows
        assert await store.shared_secret("identity") == await store.shared_secret("identity", create=False)
        assert len(await store.shared_secret("identity")) == 32
        with pytest.raises(StorageError):
            await store.shared_secret("never-created", create=False)
    assert await PgStore(f"postgresql://nobody@/db?host=/nonexistent&connect_timeout=1").health() is not None

async def test_bm25_from_postings_ranks_like_fts5(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL scores a question's one-word terms from its postings (`fts_postings`) and a
    longer phrase (`user_id`) from tsvectors: alone or together, at every limit, the rows, order
    and scores FTS5 gives, repeated words (tf > 1, a word asked twice) and ties included."""
    turns = [f"common words filler {i} " + ("alpha " * (i % 3)) + ("beta " if i % 4 == 0 else "") for i in range(80)]
    turns += [f"rare gamma {i} delta" + (" beta" if i % 2 else "") + (" user_id gamma" if i % 3 == 0 else "") for i in range(12)]
    turns += ["user id apart: the user and the id", "alpha alpha alpha alpha common"]
    questions = [fts_query(q) for q in ("common alpha beta gamma", "common alpha gamma delta", "user_id gamma", "rare delta user_id alpha",
                                        "alphas", "nothing xyzzy")]
    questions += ['"user_id"', '"alpha" OR "user_id" OR "alpha"', '"beta" OR "beta"']
    limits = (1, 2, 5, 10, 12, 30, 35, 100)
    stores: list[Store] = [SqliteStore(tmp_path / "m.sqlite"), PgStore(pg_url)]
    results = []
    for store in stores:
        async with _runtime(store) as runtime:
            await runtime.session("s").ingest_many([{"type": "user_message", "payload": {"content": t}} for t in turns])
            results.append([await store.bm25("s", q, limit) for q in questions for limit in limits])
    sqlite_hits, pg_hits = results
    for n, (a, b) in enumerate(zip(sqlite_hits, pg_hits, strict=True)):
        assert [i for i, _ in a] == [i for i, _ in b], (questions[n // len(limits)], limits[n % len(limits)])
        assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9, abs=1e-12)
    by_question = {q: [len(pg_hits[n * len(limits) + k]) for k in range(len(limits))] for n, q in enumerate(questions)}
    assert by_question[questions[0]] == [1, 2, 5, 10, 12, 30, 35, 93] and by_question[fts_query("nothing xyzzy")] == [0] * len(limits)
    assert by_question[fts_query("user_id gamma")][-1] == 13  # gamma's 12 rows, and the phrase "user id" once more
