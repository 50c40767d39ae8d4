"""The embedded SQLite store (aiosqlite, one file, WAL).

One connection per runtime: SQLite allows one writer at a time anyway, and aiosqlite runs every
statement on the connection's own thread, so statements never interleave. Writes go through
`transaction()`, which yields a `SqliteTx`; a failure rolls the whole unit back, so a rejected or
crashed ingest leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Sequence

import aiosqlite

from .errors import StorageError
from .migrations import MIGRATIONS
from .records import ArtifactRow, ChunkRow, EventRow, NewChunk, NewEvent, SessionDelta, SessionSummary, StateItem

__all__ = ["SqliteStore", "SqliteTx"]


def _event(row: sqlite3.Row) -> EventRow:
    return EventRow(
        id=row["id"], type=row["type"], role=row["role"], content=row["content"], source=row["source"],
        pinned=bool(row["pinned"]), timestamp=row["timestamp"], payload=json.loads(row["payload"]),
        artifact_id=row["artifact_id"], parent_event_id=row["parent_event_id"],
    )


def _state(row: sqlite3.Row) -> StateItem:
    return StateItem(
        id=row["id"], kind=row["kind"], label=row["label"], subject=row["subject"], text=row["text"],
        status=row["status"], superseded_by=row["superseded_by"], event_id=row["event_id"],
        source_events=tuple(json.loads(row["source_events"])),
    )


class SqliteTx:
    """Write operations inside one transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def ensure_session(self, session_id: str, scope: str = "") -> None:
        now = time.time()
        await self._db.execute(
            "INSERT INTO sessions(id, scope, created_at, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
            (session_id, scope, now, now),
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
                async with self._db.execute(
                    "SELECT id FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, ev.artifact_sha)
                ) as cur:
                    found = await cur.fetchone()
                if found is not None:
                    artifact_id = found[0]
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

    async def latest_artifact(self, session_id: str, source: str) -> tuple[int, int, str] | None:
        """(id, version, content) of the newest snapshot of `source`, diffs excluded."""
        async with self._db.execute(
            "SELECT id, version, content FROM artifacts WHERE session_id = ? AND source = ? AND kind != 'diff' "
            "ORDER BY id DESC LIMIT 1",
            (session_id, source),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else (row[0], row[1], row[2])

    async def artifact_exists(self, session_id: str, sha: str) -> bool:
        async with self._db.execute("SELECT 1 FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, sha)) as cur:
            return await cur.fetchone() is not None

    async def state_items(self, session_id: str) -> list[StateItem]:
        async with self._db.execute("SELECT * FROM state_items WHERE session_id = ? ORDER BY id", (session_id,)) as cur:
            return [_state(r) for r in await cur.fetchall()]

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

    async def transcript(self, session_id: str) -> list[tuple[int, str, str, int | None]]:
        async with self._db.execute(
            "SELECT pos, msg_hash, chain_hash, event_id FROM transcript WHERE session_id = ? ORDER BY pos", (session_id,)
        ) as cur:
            return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]

    async def put_vectors(self, model: str, items: Iterable[tuple[str, bytes]]) -> None:
        await self._db.executemany(
            "INSERT OR IGNORE INTO embeddings(model, content_hash, vector) VALUES (?, ?, ?)", [(model, h, v) for h, v in items]
        )

    async def save_manifest(self, session_id: str, manifest_json: str) -> None:
        await self._db.execute("UPDATE sessions SET last_manifest = ? WHERE id = ?", (manifest_json, session_id))


class SqliteStore:
    """Storage for every session in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not open (use `async with create_runtime(...)` or await runtime.open())")
        return self._db

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "secure_delete=ON", "busy_timeout=5000"):
                await db.execute(f"PRAGMA {pragma}")
            self._db = db
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise StorageError(f"cannot open memory store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        db = self.db
        await db.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
        async with db.execute("SELECT number FROM _migrations") as cur:
            done = {r[0] for r in await cur.fetchall()}
        for number, name, sql in MIGRATIONS:
            if number in done:
                continue
            # executescript would COMMIT first; run the statements one by one inside our transaction.
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await db.execute(statement)
                await db.execute("INSERT INTO _migrations(number, name, applied_at) VALUES (?, ?, ?)", (number, name, time.time()))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def migrations_applied(self) -> list[str]:
        async with self.db.execute("SELECT name FROM _migrations ORDER BY number") as cur:
            return [r[0] for r in await cur.fetchall()]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._write_lock:
            db = self.db
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot start a write: {exc}") from exc
            try:
                yield SqliteTx(db)
            except sqlite3.Error as exc:
                await db.execute("ROLLBACK")
                raise StorageError(f"write failed: {exc}") from exc
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            try:
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await db.execute("ROLLBACK")
                raise StorageError(f"commit failed: {exc}") from exc

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self.db.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def high_water(self, session_id: str) -> tuple[int, int]:
        """(max event id, max chunk id) of a session: a cheap freshness check for caches."""
        rows = await self._all(
            "SELECT (SELECT coalesce(max(id), 0) FROM events WHERE session_id = ?), "
            "(SELECT coalesce(max(id), 0) FROM chunks WHERE session_id = ?)",
            (session_id, session_id),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def load_delta(self, session_id: str, after_event: int, after_artifact: int, after_chunk: int) -> SessionDelta:
        events = [_event(r) for r in await self._all("SELECT * FROM events WHERE session_id = ? AND id > ? ORDER BY id", (session_id, after_event))]
        artifacts = [
            ArtifactRow(id=r["id"], kind=r["kind"], source=r["source"], version=r["version"], pinned=bool(r["pinned"]),
                        previous_id=r["previous_id"], first_event_id=r["first_event_id"], last_event_id=r["last_event_id"], sha256=r["sha256"])
            for r in await self._all(
                "SELECT id, kind, source, version, pinned, previous_id, first_event_id, last_event_id, sha256 FROM artifacts "
                "WHERE session_id = ? AND (id > ? OR last_event_id > ?) ORDER BY id",
                (session_id, after_artifact, after_event),
            )
        ]
        chunks = [
            ChunkRow(id=r["id"], event_id=r["event_id"], artifact_id=r["artifact_id"], ord=r["ord"], text=r["text"],
                     start_line=r["start_line"], end_line=r["end_line"], content_hash=r["content_hash"], parent_id=r["parent_id"],
                     tokens=r["tokens"])
            for r in await self._all("SELECT * FROM chunks WHERE session_id = ? AND id > ? ORDER BY id", (session_id, after_chunk))
        ]
        return SessionDelta(events=events, artifacts=artifacts, chunks=chunks)

    async def get_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), 500):
            batch = unique[i : i + 500]
            marks = ",".join("?" * len(batch))
            for row in await self._all(f"SELECT content_hash, vector FROM embeddings WHERE model = ? AND content_hash IN ({marks})", (model, *batch)):
                found[row[0]] = row[1]
        return found

    async def bm25(self, session_id: str, match: str, limit: int) -> list[tuple[int, float]]:
        """Chunk ids of the session matching an FTS5 expression, best first, with bm25 (lower is better)."""
        if not match:
            return []
        rows = await self._all(
            "SELECT rowid, bm25(chunks_fts, 1.0, 0.0) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY score, rowid LIMIT ?",
            (f'session_key:"{session_key(session_id)}" AND ({match})', limit),
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    async def state_items(self, session_id: str) -> list[StateItem]:
        return [_state(r) for r in await self._all("SELECT * FROM state_items WHERE session_id = ? ORDER BY id", (session_id,))]

    async def transcript(self, session_id: str) -> list[tuple[int, str, str, int | None]]:
        rows = await self._all("SELECT pos, msg_hash, chain_hash, event_id FROM transcript WHERE session_id = ? ORDER BY pos", (session_id,))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def transcript_hashes(self, session_id: str) -> list[str]:
        rows = await self._all("SELECT msg_hash FROM transcript WHERE session_id = ? ORDER BY pos", (session_id,))
        return [r[0] for r in rows]

    async def find_session_by_head(self, scope: str, heads: Sequence[str]) -> str | None:
        """The session (in `scope`) whose transcript head is the latest of `heads` (ordered oldest first)."""
        if not heads:
            return None
        rank = {h: i for i, h in enumerate(heads)}
        best: tuple[int, str] | None = None
        for i in range(0, len(heads), 500):
            batch = list(heads[i : i + 500])
            marks = ",".join("?" * len(batch))
            for row in await self._all(
                f"SELECT id, head_hash FROM sessions WHERE scope = ? AND head_hash IN ({marks}) ORDER BY updated_at DESC, id", (scope, *batch)
            ):
                candidate = (rank[row[1]], row[0])
                if best is None or candidate[0] > best[0]:
                    best = candidate
        return None if best is None else best[1]

    async def session_exists(self, session_id: str) -> bool:
        return bool(await self._all("SELECT 1 FROM sessions WHERE id = ?", (session_id,)))

    async def list_sessions(self) -> list[SessionSummary]:
        rows = await self._all(
            "SELECT s.id, s.created_at, s.updated_at, "
            "(SELECT count(*) FROM events e WHERE e.session_id = s.id), "
            "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.role IS NOT NULL), "
            "(SELECT count(*) FROM artifacts a WHERE a.session_id = s.id), "
            "(SELECT count(*) FROM chunks c WHERE c.session_id = s.id) "
            "FROM sessions s ORDER BY s.updated_at DESC, s.id"
        )
        return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def last_manifest(self, session_id: str) -> str | None:
        rows = await self._all("SELECT last_manifest FROM sessions WHERE id = ?", (session_id,))
        return rows[0][0] if rows else None

    async def export_rows(self, session_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for table, order in (("events", "id"), ("artifacts", "id"), ("state_items", "id"), ("transcript", "pos")):
            out[table] = [dict(r) for r in await self._all(f"SELECT * FROM {table} WHERE session_id = ? ORDER BY {order}", (session_id,))]
        return out

    async def delete_session(self, session_id: str) -> bool:
        """Erase a session for good: rows (cascade), FTS entries (trigger), vectors no other session
        uses; then rebuild the FTS index and VACUUM so no freed page still holds the text."""
        async with self.transaction() as _tx:
            existed = bool(await self._all("SELECT 1 FROM sessions WHERE id = ?", (session_id,)))
            await self.db.execute("DELETE FROM chunks WHERE session_id = ?", (session_id,))
            await self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            await self.db.execute("DELETE FROM embeddings WHERE content_hash NOT IN (SELECT content_hash FROM chunks)")
            await self.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
        async with self._write_lock:
            try:
                await self.db.execute("VACUUM")
                await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StorageError(f"vacuum after erase failed: {exc}") from exc
        return existed


def session_key(session_id: str) -> str:
    """One FTS token standing for a session: 'k' + 24 hex digits of the id's sha256."""
    return "k" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain ';') whole."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
