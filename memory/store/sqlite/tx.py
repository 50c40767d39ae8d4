"""Writes of the SQLite store that differ in kind from PostgreSQL's: appending events row by row
(ids from AUTOINCREMENT, FTS5 entries from the chunk triggers) and re-keying a renamed session's
full-text entries. Every other write is `memory.store.writes`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite

from memory.records import NewChunk, NewEvent
from memory.store.dialect import SQLITE
from memory.store.rows import session_key
from memory.store.writes import SqlWrites

__all__ = ["SqliteTx", "together"]

_INSERT_CHUNK = ("INSERT INTO chunks(session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, "
                 "session_key, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


async def together(rows: Callable[[str, Sequence[Any]], Awaitable[list[Sequence[Any]]]], queries: Sequence[tuple[str, Sequence[Any]]],
                   named: bool) -> list[list[Any]]:
    """Several reads on the one connection, as tuples or (`named`) dicts."""
    return [[dict(r) if named else r for r in await rows(q, p)] for q, p in queries]


class SqliteTx(SqlWrites):
    """Write operations inside one transaction (and every read, seeing its own writes)."""

    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await self._db.execute_fetchall(query, params))

    async def _together(self, queries: Sequence[tuple[str, Sequence[Any]]], named: bool = False) -> list[list[Any]]:
        return await together(self._rows, queries, named)

    async def _exec(self, query: str, params: Sequence[Any] = ()) -> None:
        await self._db.execute(query, params)

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(query, rows)

    async def _insert_chunks(self, session_id: str, chunks: Sequence[NewChunk], *, event_id: int | None, artifact_id: int | None) -> None:
        key = session_key(session_id)
        for i, c in enumerate(chunks):
            cur = await self._db.execute(
                _INSERT_CHUNK, (session_id, event_id, artifact_id, i, c.text, c.start_line, c.end_line, c.content_hash, c.tokens, key, None))
            if c.probes:
                await self._db.executemany(_INSERT_CHUNK, [(session_id, event_id, artifact_id, i, t, c.start_line, c.end_line, h, 0, key,
                                                            cur.lastrowid) for t, h in c.probes])

    async def _insert_id(self, query: str, params: Sequence[Any]) -> int | None:
        """The rowid of the row `query` inserted; None when it inserted none (a conflict ignored)."""
        cur = await self._db.execute(query, params)
        return cur.lastrowid if cur.rowcount else None

    async def add_events(self, session_id: str, events: Sequence[NewEvent]) -> list[int]:
        """Append events (and their artifacts and chunks); returns the new event ids in order."""
        now = time.time()
        ids: list[int] = []
        for ev in events:
            artifact_id: int | None = None
            new_artifact = False
            if ev.artifact_sha is not None:
                known = await self._one("SELECT id FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, ev.artifact_sha))
                new_artifact = known is None
                artifact_id = known[0] if known is not None else await self._insert_id(
                    "INSERT INTO artifacts(session_id, sha256, kind, source, version, content, pinned, previous_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, ev.artifact_sha, ev.artifact_kind, ev.source, ev.version, ev.content, int(ev.pinned), ev.previous_id))
            event_id = int(await self._insert_id(
                "INSERT INTO events(session_id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, ev.type, ev.role, "" if artifact_id is not None else ev.content, ev.source, int(ev.pinned), ev.timestamp, ev.payload,
                 artifact_id, ids[ev.parent_index] if ev.parent_index is not None else None, now)) or 0)
            ids.append(event_id)
            if artifact_id is None:
                await self._insert_chunks(session_id, ev.chunks, event_id=event_id, artifact_id=None)
                continue
            await self._exec("UPDATE artifacts SET first_event_id = coalesce(first_event_id, ?), last_event_id = ?, pinned = max(pinned, ?) "
                             "WHERE id = ?", (event_id, event_id, int(ev.pinned), artifact_id))
            if new_artifact:
                await self._insert_chunks(session_id, ev.chunks, event_id=None, artifact_id=artifact_id)
                if ev.diff is not None:
                    sha, text, chunks = ev.diff
                    diff_id = await self._insert_id(
                        "INSERT INTO artifacts(session_id, sha256, kind, source, version, content, pinned, previous_id, first_event_id, "
                        "last_event_id) VALUES (?, ?, 'diff', ?, ?, ?, 0, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (session_id, sha, ev.source, ev.version, text, ev.previous_id, event_id, event_id))
                    if diff_id is not None:
                        await self._insert_chunks(session_id, chunks, event_id=None, artifact_id=diff_id)
        await self._exec("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
        return ids

    async def add_probes(self, session_id: str, probes: Sequence[tuple[int, str, str]]) -> None:
        """Probe rows (parent chunk id, text, content hash): extra search keys for a chunk."""
        await self._exec_many(
            "INSERT INTO chunks(session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, session_key, "
            "parent_id) SELECT session_id, event_id, artifact_id, ord, ?, start_line, end_line, ?, 0, session_key, id FROM chunks WHERE id = ?",
            [(text, digest, parent) for parent, text, digest in probes])

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # An external-content FTS5 table: the old entries are deleted with the old key, then indexed again.
        await self._exec("INSERT INTO chunks_fts(chunks_fts, rowid, text, session_key) SELECT 'delete', id, text, session_key FROM chunks "
                         "WHERE session_id = ?", (old_id,))
        await self._exec("UPDATE chunks SET session_id = ?, session_key = ? WHERE session_id = ?", (new_id, session_key(new_id), old_id))
        await self._exec("INSERT INTO chunks_fts(rowid, text, session_key) SELECT id, text, session_key FROM chunks WHERE session_id = ?",
                         (new_id,))
