"""Whole-session operations of the SQLite store: pages of the session list, erase, rename, expiry.

Erase never VACUUMs (a full rewrite of the file, every other session's rows and vectors included).
`secure_delete` (set when the connection opens) overwrites deleted rows and freed pages with zeros;
the FTS index gets a delete marker per chunk from its trigger, and one `optimize` merge afterwards
drops the erased terms from its segments; `incremental_vacuum` hands the freed pages back to the
file system and a WAL checkpoint truncates the old page images. All of it runs inside the caller's
transaction except the last two, which need none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from memory.errors import InvalidArgumentError
from memory.records import SessionSummary
from memory.store.sqlite.rows import session_key

__all__ = ["page_sessions", "erase_sessions", "rename_session", "expired_sessions", "reclaim_space"]

_BATCH = 500
_SUMMARY = (
    "SELECT s.id, s.created_at, s.updated_at, "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.detached = 0), "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.role IS NOT NULL AND e.detached = 0), "
    "(SELECT count(*) FROM artifacts a WHERE a.session_id = s.id), "
    "(SELECT count(*) FROM chunks c WHERE c.session_id = s.id) FROM sessions s "
)
# The distinct models of the embeddings table by index seeks (a loose index scan), not a table scan.
_MODELS = (
    "WITH RECURSIVE m(model) AS (SELECT min(model) FROM embeddings "
    "UNION ALL SELECT (SELECT min(model) FROM embeddings WHERE model > m.model) FROM m WHERE m.model IS NOT NULL) "
    "SELECT model FROM m WHERE model IS NOT NULL"
)


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return list(await db.execute_fetchall(sql, params))


def _prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high) of the ids starting with `prefix`, so the primary key index does the filtering."""
    if not prefix:
        return "", None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


async def page_sessions(db: aiosqlite.Connection, prefix: str, after: str | None, limit: int, contains: str = "") -> list[SessionSummary]:
    low, high = _prefix_bounds(prefix)
    where, params = ["s.id >= ?"], [low]
    if high is not None:
        where.append("s.id < ?")
        params.append(high)
    if after is not None:
        where.append("s.id > ?")
        params.append(after)
    if contains:
        # Searched in what follows the prefix: the part of the id its owner chose and sees.
        where.append("instr(lower(substr(s.id, ?)), lower(?)) > 0")
        params += [len(prefix) + 1, contains]
    rows = await _rows(db, _SUMMARY + f"WHERE {' AND '.join(where)} ORDER BY s.id LIMIT ?", (*params, limit))
    return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


async def erase_sessions(db: aiosqlite.Connection, session_ids: Sequence[str]) -> list[str]:
    """Delete every row of these sessions and the vectors nobody else uses; returns the ids that
    existed. Runs inside the caller's write transaction."""
    found: list[str] = []
    for i in range(0, len(session_ids), _BATCH):
        batch = list(dict.fromkeys(session_ids[i : i + _BATCH]))
        marks = ",".join("?" * len(batch))
        found += [r[0] for r in await _rows(db, f"SELECT id FROM sessions WHERE id IN ({marks}) ORDER BY id", batch)]
        hashes = [r[0] for r in await _rows(db, f"SELECT DISTINCT content_hash FROM chunks WHERE session_id IN ({marks})", batch)]
        await db.execute(f"DELETE FROM chunks WHERE session_id IN ({marks})", batch)  # FTS delete markers via trigger
        await db.execute(f"DELETE FROM sessions WHERE id IN ({marks})", batch)  # events, artifacts, state, transcript cascade
        models = [r[0] for r in await _rows(db, _MODELS)] if hashes else []
        for model in models:
            for j in range(0, len(hashes), _BATCH):
                part = hashes[j : j + _BATCH]
                await db.execute(
                    f"DELETE FROM embeddings WHERE model = ? AND content_hash IN ({','.join('?' * len(part))}) "
                    "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = embeddings.content_hash)",
                    (model, *part),
                )
    if found:
        # Merge the FTS segments: entries behind delete markers are dropped, the old pages freed
        # (and zeroed by secure_delete). Proportional to the index, not to the whole file.
        await db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
    return found


async def reclaim_space(db: aiosqlite.Connection) -> None:
    """Return free pages to the file system and truncate the WAL (outside any transaction)."""
    await db.execute_fetchall("PRAGMA incremental_vacuum")
    await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")


async def rename_session(db: aiosqlite.Connection, old_id: str, new_id: str, old_scope_prefix: str, new_scope_prefix: str) -> bool:
    """Move every row of `old_id` to `new_id` (inside the caller's transaction); False when
    `old_id` does not exist. The FTS rows are re-keyed too: their session key derives from the id."""
    if not await _rows(db, "SELECT 1 FROM sessions WHERE id = ?", (old_id,)):
        return False
    if await _rows(db, "SELECT 1 FROM sessions WHERE id = ?", (new_id,)):
        raise InvalidArgumentError(f"session {new_id!r} already exists")
    cut = len(old_scope_prefix)
    columns = [r[1] for r in await _rows(db, "PRAGMA table_info(sessions)") if r[1] not in ("id", "scope")]
    await db.execute(
        f"INSERT INTO sessions(id, scope, {', '.join(columns)}) "
        "SELECT ?, CASE WHEN substr(scope, 1, ?) = ? THEN ? || substr(scope, ? + 1) ELSE scope END, "
        f"{', '.join(columns)} FROM sessions WHERE id = ?",
        (new_id, cut, old_scope_prefix, new_scope_prefix, cut, old_id),
    )
    # Every table that belongs to a session (whatever later migrations add), chunks aside.
    for table in await _session_tables(db):
        await db.execute(f"UPDATE {table} SET session_id = ? WHERE session_id = ?", (new_id, old_id))
    await db.execute(
        "INSERT INTO chunks_fts(chunks_fts, rowid, text, session_key) SELECT 'delete', id, text, session_key FROM chunks WHERE session_id = ?",
        (old_id,),
    )
    await db.execute("UPDATE chunks SET session_id = ?, session_key = ? WHERE session_id = ?", (new_id, session_key(new_id), old_id))
    await db.execute("INSERT INTO chunks_fts(rowid, text, session_key) SELECT id, text, session_key FROM chunks WHERE session_id = ?", (new_id,))
    await db.execute("DELETE FROM sessions WHERE id = ?", (old_id,))
    return True


async def _session_tables(db: aiosqlite.Connection) -> list[str]:
    tables = [r[0] for r in await _rows(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    found = []
    for table in tables:
        if table not in ("sessions", "chunks") and "session_id" in [r[1] for r in await _rows(db, f"PRAGMA table_info({table})")]:
            found.append(table)
    return found


async def expired_sessions(db: aiosqlite.Connection, updated_before: float | None, keep_per_namespace: int | None, limit: int) -> list[str]:
    """Ids to expire: not updated since `updated_before`, or beyond the newest `keep_per_namespace`
    of their namespace (the part of the id before its first "/"; "" for ids without one)."""
    parts: list[str] = []
    params: list[Any] = []
    if updated_before is not None:
        parts.append("SELECT id FROM sessions WHERE updated_at < ?")
        params.append(updated_before)
    if keep_per_namespace is not None:
        parts.append(
            "SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY substr(id, 1, instr(id, '/')) "
            "ORDER BY updated_at DESC, id DESC) AS rank FROM sessions) WHERE rank > ?"
        )
        params.append(keep_per_namespace)
    if not parts:
        return []
    rows = await _rows(db, f"SELECT id FROM ({' UNION '.join(parts)}) ORDER BY id LIMIT ?", (*params, limit))
    return [r[0] for r in rows]
