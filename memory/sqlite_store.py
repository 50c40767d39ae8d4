"""The embedded SQLite store (aiosqlite, one file, WAL).

One connection per runtime: SQLite allows one writer at a time anyway, and aiosqlite runs every
statement on the connection's own thread, so statements never interleave. Writes go through
`transaction()`, which yields a `SqliteTx`; a failure rolls the whole unit back, so a rejected or
crashed ingest leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .errors import StorageError
from .locks import SessionLocks
from .migrations import MIGRATIONS
from .records import ArtifactRow, ChunkRow, SessionDelta, SessionSummary
from .sqlite_inspect import SqliteInspect
from .sqlite_reads import SqliteReads
from .sqlite_rows import event_from_row, session_key
from .sqlite_tx import SqliteTx

__all__ = ["SqliteStore", "SqliteTx"]


class SqliteStore(SqliteReads, SqliteInspect):
    """Storage for every session in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._session_locks = SessionLocks()

    def session_lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Serialises one session's read-decide-write sequences (sync, compile, commit). One
        process owns an SQLite file, so an in-process lock is enough."""
        return self._session_locks.hold(session_id)

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
            # Held on self at once, so a failure below (a corrupt file fails at the first PRAGMA)
            # still closes the connection and its thread.
            self._db = db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "secure_delete=ON", "busy_timeout=5000"):
                await db.execute(f"PRAGMA {pragma}")
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
        done = {r[0] for r in await db.execute_fetchall("SELECT number FROM _migrations")}
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
        return [r[0] for r in await self.db.execute_fetchall("SELECT name FROM _migrations ORDER BY number")]

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

    async def check_writable(self) -> None:
        """Raise `StorageError` unless a write could start now (read-only file, lock held too long):
        a turn must not go out as if memory will record it when it cannot."""
        async with self.transaction():
            pass

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            # One call on the connection's thread: no cursor stays open across an await, so a
            # VACUUM (which needs no statement in progress) can never land in the middle of a read.
            return list(await self.db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def high_water(self, session_id: str) -> tuple[int, int, int]:
        """(max event id, max chunk id, generation) of a session: a cheap freshness check for
        caches. The generation changes when messages leave the transcript (an edit, a retry)."""
        rows = await self._all(
            "SELECT (SELECT coalesce(max(id), 0) FROM events WHERE session_id = ?), "
            "(SELECT coalesce(max(id), 0) FROM chunks WHERE session_id = ?), "
            "(SELECT coalesce(max(generation), 0) FROM sessions WHERE id = ?)",
            (session_id, session_id, session_id),
        )
        return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])

    async def load_delta(self, session_id: str, after_event: int, after_artifact: int, after_chunk: int) -> SessionDelta:
        """Live events, artifacts and chunks after the marks. Detached events (edited away or
        regenerated) are left out, and so are artifacts only they referenced."""
        events = [
            event_from_row(r)
            for r in await self._all("SELECT * FROM events WHERE session_id = ? AND id > ? AND detached = 0 ORDER BY id", (session_id, after_event))
        ]
        artifacts = [
            ArtifactRow(id=r["id"], kind=r["kind"], source=r["source"], version=r["version"], pinned=bool(r["pinned"]),
                        previous_id=r["previous_id"], first_event_id=r["first_event_id"], last_event_id=r["last_event_id"], sha256=r["sha256"])
            for r in await self._all(
                "SELECT id, kind, source, version, pinned, previous_id, first_event_id, last_event_id, sha256 FROM artifacts a "
                "WHERE session_id = ? AND (id > ? OR last_event_id > ?) "
                "AND EXISTS (SELECT 1 FROM events e WHERE (e.artifact_id = a.id OR e.id = a.first_event_id) AND e.detached = 0) ORDER BY id",
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

    async def find_session_by_chain(self, scope: str, chain_hash: str) -> list[tuple[str, int, int]]:
        """Sessions (in `scope`) whose transcript holds the prefix `chain_hash`: (id, position of
        that prefix's last message, transcript length), most recently updated first."""
        rows = await self._all(
            "SELECT t.session_id, t.pos, (SELECT count(*) FROM transcript x WHERE x.session_id = t.session_id) "
            "FROM transcript t JOIN sessions s ON s.id = t.session_id WHERE t.chain_hash = ? AND s.scope = ? "
            "ORDER BY s.updated_at DESC, s.id LIMIT 20",
            (chain_hash, scope),
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    async def session_exists(self, session_id: str) -> bool:
        return bool(await self._all("SELECT 1 FROM sessions WHERE id = ?", (session_id,)))

    async def list_sessions(self, session_id: str | None = None) -> list[SessionSummary]:
        """Every session with its counts, newest first; or just `session_id`'s."""
        where, params = ("WHERE s.id = ? ", (session_id,)) if session_id is not None else ("", ())
        rows = await self._all(
            "SELECT s.id, s.created_at, s.updated_at, "
            "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.detached = 0), "
            "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.role IS NOT NULL AND e.detached = 0), "
            "(SELECT count(*) FROM artifacts a WHERE a.session_id = s.id), "
            "(SELECT count(*) FROM chunks c WHERE c.session_id = s.id) "
            f"FROM sessions s {where}ORDER BY s.updated_at DESC, s.id",
            params,
        )
        return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def last_manifest(self, session_id: str) -> str | None:
        rows = await self._all("SELECT last_manifest FROM sessions WHERE id = ?", (session_id,))
        return rows[0][0] if rows else None

    async def export_rows(self, session_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for table, order in (("events", "id"), ("artifacts", "id"), ("state_items", "id"), ("transcript", "pos"), ("frames", "id"), ("turns", "id")):
            out[table] = [dict(r) for r in await self._all(f"SELECT * FROM {table} WHERE session_id = ? ORDER BY {order}", (session_id,))]
        return out

    async def delete_session(self, session_id: str) -> bool:
        """Erase a session for good: rows (cascade), FTS entries (trigger), vectors no other session
        uses; then rebuild the FTS index and VACUUM so no freed page still holds the text."""
        if not await self.session_exists(session_id):
            return False  # nothing to erase: no VACUUM (a full file rewrite) for an unknown id
        async with self.transaction() as _tx:
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
        return True


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
