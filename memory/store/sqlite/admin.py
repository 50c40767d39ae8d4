"""Erasing sessions from the SQLite file, for good and without rewriting it.

Erase never VACUUMs (a full rewrite of the file, every other session's rows and vectors included).
`secure_delete` (set when the connection opens) overwrites deleted rows and freed pages with zeros;
the FTS index gets a delete marker per chunk from its trigger, and one `optimize` merge afterwards
drops the erased terms from its segments; `incremental_vacuum` hands the freed pages back to the
file system and a WAL checkpoint truncates the old page images. All of it runs inside the caller's
transaction except the last two, which need none.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from memory.store.sqlite.tx import SqliteTx

__all__ = ["erase_sessions", "reclaim_space"]

# The distinct models of the embeddings table by index seeks (a loose index scan), not a table scan.
_MODELS = (
    "WITH RECURSIVE m(model) AS (SELECT min(model) FROM embeddings "
    "UNION ALL SELECT (SELECT min(model) FROM embeddings WHERE model > m.model) FROM m WHERE m.model IS NOT NULL) "
    "SELECT model FROM m WHERE model IS NOT NULL"
)


async def erase_sessions(tx: SqliteTx, session_ids: Sequence[str]) -> list[str]:
    """Delete every row of these sessions and the vectors nobody else uses; returns the ids that
    existed, in id order. Runs inside the caller's write transaction."""
    ids = tx.dialect.many(dict.fromkeys(session_ids))
    found = [str(r[0]) for r in await tx._rows(f"SELECT id FROM sessions WHERE {tx.dialect.any('id')} ORDER BY id", (ids,))]
    if not found:
        return []
    hashes = tx.dialect.many(r[0] for r in await tx._rows(f"SELECT DISTINCT content_hash FROM chunks WHERE {tx.dialect.any('session_id')}",
                                                          (ids,)))
    await tx._exec(f"DELETE FROM chunks WHERE {tx.dialect.any('session_id')}", (ids,))  # FTS delete markers via trigger
    await tx._exec(f"DELETE FROM sessions WHERE {tx.dialect.any('id')}", (ids,))  # events, artifacts, state, transcript cascade
    # Per model, so the primary key (model, content_hash) finds the rows.
    for (model,) in await tx._rows(_MODELS):
        await tx._exec(f"DELETE FROM embeddings WHERE model = ? AND {tx.dialect.any('content_hash')} "
                       "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = embeddings.content_hash)", (model, hashes))
    # Merge the FTS segments: entries behind delete markers are dropped, the old pages freed
    # (and zeroed by secure_delete). Proportional to the index, not to the whole file.
    await tx._exec("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
    return found


async def reclaim_space(db: aiosqlite.Connection) -> None:
    """Return free pages to the file system and truncate the WAL (outside any transaction)."""
    await db.execute_fetchall("PRAGMA incremental_vacuum")
    await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
