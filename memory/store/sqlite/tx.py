"""Write operations of the SQLite store, each inside the caller's transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from memory.records import FrameRecord, NewChunk, NewEvent, TurnRecord
from memory.store.sqlite.reads import SqliteReads
from memory.store.sqlite.rows import session_key

__all__ = ["SqliteTx"]


class SqliteTx(SqliteReads):
    """Write operations inside one transaction (and the shared reads, seeing its own writes)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._db.execute_fetchall(sql, params))

    async def ensure_session(self, session_id: str, scope: str = "") -> None:
        now = time.time()
        # A new session starts at a generation (its creation time in ms) that no earlier session of
        # the same id had, so an in-process view of an erased or renamed one is never reused.
        await self._db.execute(
            "INSERT INTO sessions(id, scope, created_at, updated_at, generation) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
            (session_id, scope, now, now, int(now * 1000)),
        )

    async def _insert_chunks(self, session_id: str, chunks: Sequence[NewChunk], *, event_id: int | None, artifact_id: int | None) -> None:
        sql = (
            "INSERT INTO chunks(session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, "
            "session_key, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        key = session_key(session_id)
        for i, c in enumerate(chunks):
            cur = await self._db.execute(
                sql, (session_id, event_id, artifact_id, i, c.text, c.start_line, c.end_line, c.content_hash, c.tokens, key, None)
            )
            if c.probes:
                await self._db.executemany(
                    sql, [(session_id, event_id, artifact_id, i, t, c.start_line, c.end_line, h, 0, key, cur.lastrowid) for t, h in c.probes]
                )

    async def add_events(self, session_id: str, events: Sequence[NewEvent]) -> list[int]:
        """Append events (and their artifacts and chunks); returns the new event ids in order."""
        now = time.time()
        ids: list[int] = []
        for ev in events:
            artifact_id: int | None = None
            new_artifact = False
            if ev.artifact_sha is not None:
                rows = list(await self._db.execute_fetchall(
                    "SELECT id FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, ev.artifact_sha)
                ))
                if rows:
                    artifact_id = rows[0][0]
                else:
                    cur2 = await self._db.execute(
                        "INSERT INTO artifacts(session_id, sha256, kind, source, version, content, pinned, previous_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (session_id, ev.artifact_sha, ev.artifact_kind, ev.source, ev.version, ev.content, int(ev.pinned), ev.previous_id),
                    )
                    artifact_id = cur2.lastrowid
                    new_artifact = True
            parent = ids[ev.parent_index] if ev.parent_index is not None else None
            cur3 = await self._db.execute(
                "INSERT INTO events(session_id, type, role, content, source, pinned, timestamp, payload, artifact_id, "
                "parent_event_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, ev.type, ev.role, "" if artifact_id is not None else ev.content, ev.source, int(ev.pinned),
                 ev.timestamp, ev.payload, artifact_id, parent, now),
            )
            event_id = int(cur3.lastrowid or 0)
            ids.append(event_id)
            if artifact_id is None:
                await self._insert_chunks(session_id, ev.chunks, event_id=event_id, artifact_id=None)
                continue
            await self._db.execute(
                "UPDATE artifacts SET first_event_id = coalesce(first_event_id, ?), last_event_id = ?, "
                "pinned = max(pinned, ?) WHERE id = ?",
                (event_id, event_id, int(ev.pinned), artifact_id),
            )
            if new_artifact:
                await self._insert_chunks(session_id, ev.chunks, event_id=None, artifact_id=artifact_id)
                if ev.diff is not None:
                    sha, text, chunks = ev.diff
                    cur4 = await self._db.execute(
                        "INSERT OR IGNORE INTO artifacts(session_id, sha256, kind, source, version, content, pinned, previous_id, "
                        "first_event_id, last_event_id) VALUES (?, ?, 'diff', ?, ?, ?, 0, ?, ?, ?)",
                        (session_id, sha, ev.source, ev.version, text, ev.previous_id, event_id, event_id),
                    )
                    if cur4.rowcount:
                        await self._insert_chunks(session_id, chunks, event_id=None, artifact_id=cur4.lastrowid)
        await self._db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
        return ids

    async def last_message_before(self, session_id: str, event_id: int) -> tuple[int, str] | None:
        """(id, content) of the session's last user/assistant message before `event_id`."""
        rows = list(await self._db.execute_fetchall(
            "SELECT id, content FROM events WHERE session_id = ? AND id < ? AND role IN ('user', 'assistant') "
            "ORDER BY id DESC LIMIT 1",
            (session_id, event_id),
        ))
        return (rows[0][0], rows[0][1]) if rows else None

    async def first_chunk_ids(self, event_ids: Sequence[int]) -> dict[int, int]:
        """The first (ord 0, non-probe) chunk of each event that has one."""
        if not event_ids:
            return {}
        marks = ",".join("?" * len(event_ids))
        rows = list(await self._db.execute_fetchall(
            f"SELECT event_id, min(id) FROM chunks WHERE event_id IN ({marks}) AND parent_id IS NULL GROUP BY event_id",
            list(event_ids),
        ))
        return {r[0]: r[1] for r in rows}

    async def add_probes(self, session_id: str, probes: Sequence[tuple[int, str, str]]) -> None:
        """Probe rows (parent chunk id, text, content hash): extra search keys for a chunk."""
        await self._db.executemany(
            "INSERT INTO chunks(session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, "
            "session_key, parent_id) SELECT session_id, event_id, artifact_id, ord, ?, start_line, end_line, ?, 0, session_key, id "
            "FROM chunks WHERE id = ?",
            [(text, digest, parent) for parent, text, digest in probes],
        )

    async def latest_artifact(self, session_id: str, source: str) -> tuple[int, int, str] | None:
        """(id, version, content) of the newest snapshot of `source`, diffs excluded."""
        rows = list(await self._db.execute_fetchall(
            "SELECT id, version, content FROM artifacts WHERE session_id = ? AND source = ? AND kind != 'diff' "
            "ORDER BY id DESC LIMIT 1",
            (session_id, source),
        ))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def artifact_exists(self, session_id: str, sha: str) -> bool:
        rows = list(await self._db.execute_fetchall("SELECT 1 FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, sha)))
        return bool(rows)

    async def add_state_item(self, session_id: str, kind: str, label: str, subject: str | None, text: str, norm: str, event_id: int | None) -> int:
        cur = await self._db.execute(
            "INSERT INTO state_items(session_id, kind, label, subject, text, norm, event_id, source_events, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, kind, label, subject, text, norm, event_id, json.dumps([event_id] if event_id else []), time.time()),
        )
        return int(cur.lastrowid or 0)

    async def set_state_status(self, item_id: int, status: str, superseded_by: int | None = None) -> None:
        await self._db.execute("UPDATE state_items SET status = ?, superseded_by = ? WHERE id = ?", (status, superseded_by, item_id))

    async def add_state_source(self, item_id: int, event_id: int) -> None:
        await self._db.execute(
            "UPDATE state_items SET source_events = json_insert(source_events, '$[#]', ?) WHERE id = ? "
            "AND NOT EXISTS (SELECT 1 FROM json_each(source_events) WHERE value = ?)",
            (event_id, item_id, event_id),
        )

    async def replace_transcript(self, session_id: str, from_pos: int, rows: Sequence[tuple[int, str, str, int | None]], head: str | None) -> None:
        """Drop transcript positions >= from_pos and append `rows` (pos, msg_hash, chain_hash, event_id)."""
        await self._db.execute("DELETE FROM transcript WHERE session_id = ? AND pos >= ?", (session_id, from_pos))
        await self._db.executemany(
            "INSERT INTO transcript(session_id, pos, msg_hash, chain_hash, event_id) VALUES (?, ?, ?, ?, ?)",
            [(session_id, *r) for r in rows],
        )
        await self._db.execute("UPDATE sessions SET head_hash = ? WHERE id = ?", (head, session_id))

    async def detach_from(self, session_id: str, pos: int) -> list[tuple[int, str]]:
        """Take transcript positions >= `pos` out of the transcript: their events (and artifacts
        extracted from them) stay in the log, marked detached, and leave retrieval. Returns the
        detached messages as (event id, content), so the caller can tell whether state came from
        them. Bumps the session's generation so in-process views reload."""
        rows = await self._all(
            "SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id WHERE t.session_id = ? AND t.pos >= ?",
            (session_id, pos),
        )
        ids = [int(r[0]) for r in rows]
        for i in range(0, len(ids), 500):
            batch = ids[i : i + 500]
            marks = ",".join("?" * len(batch))
            await self._db.execute(f"UPDATE events SET detached = 1 WHERE id IN ({marks}) OR parent_event_id IN ({marks})", (*batch, *batch))
        await self._db.execute("DELETE FROM transcript WHERE session_id = ? AND pos >= ?", (session_id, pos))
        await self._db.execute("UPDATE sessions SET generation = generation + 1 WHERE id = ?", (session_id,))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def live_messages(self, session_id: str) -> list[tuple[int, str]]:
        """(event id, content) of the user and assistant messages on the transcript, in order."""
        rows = await self._all(
            "SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id "
            "WHERE t.session_id = ? AND e.role IN ('user', 'assistant') ORDER BY t.pos",
            (session_id,),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def clear_state(self, session_id: str) -> None:
        await self._db.execute("DELETE FROM state_items WHERE session_id = ?", (session_id,))

    async def save_frame(self, session_id: str, frame: FrameRecord) -> int:
        cur = await self._db.execute(
            "INSERT INTO frames(session_id, window_start, anchor, encoding, budget, base, items, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, frame.window_start, frame.anchor, frame.encoding, frame.budget,
             json.dumps(list(frame.base), ensure_ascii=False), json.dumps(list(frame.items), ensure_ascii=False), time.time()),
        )
        return int(cur.lastrowid or 0)

    async def add_turn(self, session_id: str, turn: TurnRecord) -> None:
        await self._db.execute(
            "INSERT INTO turns(session_id, request_key, frame_id, tail_pos, evidence, model, mode, sent_tokens, forwarded_tokens, "
            "prompt_tokens, cached_tokens, completion_tokens, created_at, cache_write_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, turn.request_key, turn.frame_id, turn.tail_pos,
             json.dumps(turn.evidence, ensure_ascii=False) if turn.evidence is not None else None, turn.model, turn.mode,
             turn.sent_tokens, turn.forwarded_tokens, turn.prompt_tokens, turn.cached_tokens, turn.completion_tokens, time.time(),
             turn.cache_write_tokens),
        )

    async def add_response(self, session_id: str, response_id: str, pos: int, chain_hash: str) -> None:
        """Record a response id of the session: its reply ends at transcript position `pos` (the
        transcript's length then), whose prefix has `chain_hash`. A regenerated id moves."""
        await self._db.execute(
            "INSERT INTO responses(id, session_id, pos, chain_hash, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id, pos = excluded.pos, chain_hash = excluded.chain_hash",
            (response_id, session_id, pos, chain_hash, time.time()),
        )

    async def add_items(self, session_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Remember wire items by id (item id, the item's JSON), for later references to them."""
        await self._db.executemany(
            "INSERT INTO response_items(session_id, item_id, item) VALUES (?, ?, ?) "
            "ON CONFLICT(session_id, item_id) DO UPDATE SET item = excluded.item",
            [(session_id, item_id, item) for item_id, item in items],
        )

    async def put_vectors(self, model: str, items: Iterable[tuple[str, bytes]]) -> None:
        await self._db.executemany(
            "INSERT OR IGNORE INTO embeddings(model, content_hash, vector) VALUES (?, ?, ?)", [(model, h, v) for h, v in items]
        )

    async def save_manifest(self, session_id: str, manifest_json: str) -> None:
        await self._db.execute("UPDATE sessions SET last_manifest = ? WHERE id = ?", (manifest_json, session_id))
