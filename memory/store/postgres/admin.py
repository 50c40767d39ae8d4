"""Whole-session operations of the PostgreSQL store: pages of the session list, erase, rename, expiry.

Each runs inside the caller's transaction. Session ids compare as the SQLite store compares them,
by code point (`sessions.id` is `COLLATE "C"`), so pages and prefixes agree between the stores.
Erase deletes rows (their full-text entries live in them) and the vectors nobody else uses; every
query stops seeing them at commit, and (auto)vacuum reclaims the space later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from memory.errors import InvalidArgumentError
from memory.store.postgres.fts import session_lexeme
from memory.records import SessionSummary

__all__ = ["page_sessions", "erase_sessions", "rename_session", "expired_sessions", "SUMMARY"]

Conn = psycopg.AsyncConnection[Any]
SUMMARY = (
    "SELECT s.id, s.created_at, s.updated_at, "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.detached = 0), "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.role IS NOT NULL AND e.detached = 0), "
    "(SELECT count(*) FROM artifacts a WHERE a.session_id = s.id), "
    "(SELECT count(*) FROM chunks c WHERE c.session_id = s.id) FROM sessions s "
)
# The part of an id before its first "/" (with the "/"), "" without one: a caller's namespace.
_NAMESPACE = "CASE WHEN strpos(id, '/') > 0 THEN left(id, strpos(id, '/')) ELSE '' END"


async def _rows(conn: Conn, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    return await (await conn.execute(query, params)).fetchall()


def summaries(rows: list[tuple[Any, ...]]) -> list[SessionSummary]:
    return [SessionSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


async def page_sessions(conn: Conn, prefix: str, after: str | None, limit: int, contains: str = "") -> list[SessionSummary]:
    """Sessions whose id starts with `prefix` (and contains `contains` after it, case-insensitive),
    in id order, after the id `after`, at most `limit`."""
    # A range on the primary key (code point order) so the index does the filtering.
    where = ["s.id >= %s", "starts_with(s.id, %s)"]
    params: list[Any] = [prefix, prefix]
    if prefix and ord(prefix[-1]) < 0x10FFFF:
        where.append("s.id < %s")
        params.append(prefix[:-1] + chr(ord(prefix[-1]) + 1))
    if after is not None:
        where.append("s.id > %s")
        params.append(after)
    if contains:
        # Searched in what follows the prefix (the part of the id its owner chose and sees), folding
        # ASCII case only, as SQLite's lower() does: the "C" collation's lower() is that.
        where.append('strpos(lower(substr(s.id, %s) COLLATE "C"), lower(%s COLLATE "C")) > 0')
        params += [len(prefix) + 1, contains]
    return summaries(await _rows(conn, SUMMARY + f"WHERE {' AND '.join(where)} ORDER BY s.id LIMIT %s", (*params, limit)))


async def erase_sessions(conn: Conn, session_ids: Sequence[str]) -> list[str]:
    """Delete every row of these sessions (cascade) and the vectors no other session uses; returns
    the ids that existed, in id order."""
    ids = list(dict.fromkeys(session_ids))
    found = [r[0] for r in await _rows(conn, "SELECT id FROM sessions WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))]
    if not found:
        return []
    await conn.execute(
        "DELETE FROM embeddings e WHERE e.content_hash IN (SELECT content_hash FROM chunks WHERE session_id = ANY(%s)) "
        "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = e.content_hash AND c.session_id <> ALL(%s))",
        (found, found),
    )
    await conn.execute("DELETE FROM sessions WHERE id = ANY(%s)", (found,))
    return found


async def rename_session(conn: Conn, old_id: str, new_id: str, old_scope_prefix: str, new_scope_prefix: str) -> bool:
    """Move every row of `old_id` to `new_id`; False when `old_id` does not exist. The session's
    lexeme in its chunks' full-text vectors is replaced too (it derives from the id), and the
    session gets a new generation, so no instance keeps a view of the old id's rows."""
    if not await _rows(conn, "SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (old_id,)):
        return False
    if await _rows(conn, "SELECT 1 FROM sessions WHERE id = %s", (new_id,)):
        raise InvalidArgumentError(f"session {new_id!r} already exists")
    keep = [r[0] for r in await _rows(
        conn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'sessions' "
        "AND column_name NOT IN ('id', 'scope', 'generation') ORDER BY ordinal_position",
    )]
    columns = sql.SQL(", ").join(map(sql.Identifier, keep))
    cut = len(old_scope_prefix)
    await conn.execute(
        sql.SQL(
            "INSERT INTO sessions(id, scope, {columns}) SELECT %s, "
            "CASE WHEN left(scope, %s) = %s THEN %s || substr(scope, %s + 1) ELSE scope END, {columns} FROM sessions WHERE id = %s"
        ).format(columns=columns),
        (new_id, cut, old_scope_prefix, new_scope_prefix, cut, old_id),
    )
    # Every table that belongs to a session, whatever later migrations add.
    tables = [r[0] for r in await _rows(
        conn,
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'session_id' "
        "AND table_name NOT IN ('sessions', 'chunks') ORDER BY table_name",
    )]
    for table in tables:
        await conn.execute(sql.SQL("UPDATE {} SET session_id = %s WHERE session_id = %s").format(sql.Identifier(table)), (new_id, old_id))
    await conn.execute(
        "UPDATE chunks SET session_id = %s, tsv = ts_delete(tsv, %s::text) || array_to_tsvector(ARRAY[%s::text]) WHERE session_id = %s",
        (new_id, session_lexeme(old_id), session_lexeme(new_id), old_id),
    )
    await conn.execute("DELETE FROM sessions WHERE id = %s", (old_id,))
    return True


async def expired_sessions(conn: Conn, updated_before: float | None, keep_per_namespace: int | None, limit: int) -> list[str]:
    """Ids to expire: not updated since `updated_before`, or beyond the newest `keep_per_namespace`
    of their namespace, in id order, at most `limit`."""
    parts: list[str] = []
    params: list[Any] = []
    if updated_before is not None:
        parts.append("SELECT id FROM sessions WHERE updated_at < %s")
        params.append(updated_before)
    if keep_per_namespace is not None:
        parts.append(
            f"SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY {_NAMESPACE} ORDER BY updated_at DESC, id DESC) AS rank "
            "FROM sessions) AS ranked WHERE rank > %s"
        )
        params.append(keep_per_namespace)
    if not parts:
        return []
    rows = await _rows(conn, f"SELECT id FROM ({' UNION '.join(parts)}) AS expired ORDER BY id LIMIT %s", (*params, limit))
    return [r[0] for r in rows]
