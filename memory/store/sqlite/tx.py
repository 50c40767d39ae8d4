"""What the SQLite store writes in its own way: ids past AUTOINCREMENT's high-water mark, chunks
(whose FTS5 entries come from a trigger), the re-keying of a renamed session's FTS5 entries, and
erase. Every other write is `memory.store.writes`.

Erase never VACUUMs (a full rewrite of the file, every other session's rows and vectors included).
`secure_delete` (set when the connection opens) overwrites deleted rows and freed pages with zeros;
the FTS index gets a delete marker per chunk from its trigger, and one `optimize` merge afterwards
drops the erased terms from its segments; after the commit the store hands the freed pages back to
the file system and truncates the WAL (`SqliteStore._reclaim`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite

from memory.store.dialect import SQLITE
from memory.store.events import CHUNK_ROW
from memory.store.rows import session_key
from memory.store.writes import SqlWrites

__all__ = ["SqliteTx", "DISTINCT_MODELS"]

# The distinct models of the embeddings table by index seeks (a loose index scan), not a table scan.
DISTINCT_MODELS = (
    "WITH RECURSIVE m(model) AS (SELECT min(model) FROM embeddings "
    "UNION ALL SELECT (SELECT min(model) FROM embeddings WHERE model > m.model) FROM m WHERE m.model IS NOT NULL) "
    "SELECT model FROM m WHERE model IS NOT NULL"
)


class SqliteTx(SqlWrites):
    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await self._db.execute_fetchall(query, params))

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(query, rows)

    async def _allocate(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
        # AUTOINCREMENT keeps the largest id a table ever had in sqlite_sequence; an insert with an
        # explicit larger id moves it on. One writer at a time holds the file, so nobody races.
        (r,) = await self._rows("SELECT " + ", ".join(f"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{t}'), 0)" for t in counts))
        return {t: list(range(last + 1, last + 1 + n)) for (t, n), last in zip(counts.items(), r, strict=True)}

    async def _add_chunks(self, session_id: str, rows: Sequence[Sequence[Any]]) -> None:
        # FTS5 entries come from the chunks' insert trigger, keyed by the session's token.
        await self._exec_many(f"INSERT INTO chunks({CHUNK_ROW}, session_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              [(*r, session_key(session_id)) for r in rows])

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # An external-content FTS5 table: the old entries are deleted with the old key, then indexed again.
        await self._exec("INSERT INTO chunks_fts(chunks_fts, rowid, text, session_key) SELECT 'delete', id, text, session_key FROM chunks "
                         "WHERE session_id = ?", (old_id,))
        await self._exec("UPDATE chunks SET session_id = ?, session_key = ? WHERE session_id = ?", (new_id, session_key(new_id), old_id))
        await self._exec("INSERT INTO chunks_fts(rowid, text, session_key) SELECT id, text, session_key FROM chunks WHERE session_id = ?",
                         (new_id,))

    async def _erase(self, session_ids: Sequence[str]) -> list[str]:
        any_of, ids = self.dialect.any, self.dialect.many(dict.fromkeys(session_ids))
        found = [str(r[0]) for r in await self._rows(f"SELECT id FROM sessions WHERE {any_of('id')} ORDER BY id", (ids,))]
        if not found:
            return []
        hashes = self.dialect.many(r[0] for r in await self._rows(f"SELECT DISTINCT content_hash FROM chunks WHERE {any_of('session_id')}",
                                                                  (ids,)))
        await self._exec(f"DELETE FROM chunks WHERE {any_of('session_id')}", (ids,))  # FTS delete markers via trigger
        await self._exec(f"DELETE FROM sessions WHERE {any_of('id')}", (ids,))  # events, artifacts, state, transcript cascade
        # Per model, so the primary key (model, content_hash) finds the rows.
        for (model,) in await self._rows(DISTINCT_MODELS):
            await self._exec(f"DELETE FROM embeddings WHERE model = ? AND {any_of('content_hash')} "
                             "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = embeddings.content_hash)", (model, hashes))
        # Merge the FTS segments: entries behind delete markers are dropped, the old pages freed
        # (and zeroed by secure_delete). Proportional to the index, not to the whole file.
        await self._exec("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        return found
