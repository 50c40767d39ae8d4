"""What the PostgreSQL store writes in its own way: ids drawn from its sequences, chunks with their
`tsvector` and the per-session BM25 counters, the full-text re-keying of a renamed session, and
erase. Every other write is `memory.store.writes`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from memory.store.dialect import POSTGRES
from memory.store.events import CHUNK_ROW
from memory.store.postgres.fts import TS_CONFIG, fts_text, session_lexeme, token_count
from memory.store.writes import SqlWrites

__all__ = ["PgTx", "Conn"]

Conn = psycopg.AsyncConnection[Any]


class PgTx(SqlWrites):
    dialect = POSTGRES

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        cur = await self.conn.execute(self.dialect.sql(query), params)
        return list(await cur.fetchall()) if cur.description else []

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.dialect.sql(query), rows)

    async def _allocate(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
        # From each table's sequence, in one round trip.
        (r,) = await self._rows("SELECT " + ", ".join(f"(SELECT coalesce(array_agg(nextval('{t}_id_seq')), '{{}}') FROM generate_series(1, ?))"
                                                      for t in counts), tuple(counts.values()))
        return {t: sorted(ids) for t, ids in zip(counts, r, strict=True)}

    async def _add_chunks(self, session_id: str, rows: Sequence[Sequence[Any]]) -> None:
        # Each row's text as FTS5 would tokenize it, its length for BM25, and the session's lexeme;
        # the session's BM25 counters grow with them.
        key = session_lexeme(session_id)
        folded = [fts_text(r[5]) for r in rows]
        lengths = [token_count(f) for f in folded]
        await self._exec_many(
            f"INSERT INTO chunks({CHUNK_ROW}, doc_len, tsv) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_tsvector('{TS_CONFIG}'::regconfig, ?::text) "
            "|| array_to_tsvector(ARRAY[?::text]))", [(*r, n, f, key) for r, n, f in zip(rows, lengths, folded, strict=True)])
        await self._exec("UPDATE sessions SET fts_docs = fts_docs + ?, fts_tokens = fts_tokens + ? WHERE id = ?",
                         (len(rows), sum(lengths), session_id))
        # Each lexeme's postings (`fts_postings`, what BM25 scores one-word terms from) and rows
        # (`fts_terms`, what the rare-word trimming reads) grow too, in one statement; the counts
        # in lexeme order so that two writers never wait on each other's rows in opposite orders.
        await self._exec(
            "WITH p AS (INSERT INTO fts_postings(session_id, lexeme, chunk_id, tf, doc_len) "
            "SELECT c.session_id, u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u "
            "WHERE c.id = ANY(?) AND u.lexeme <> ? RETURNING lexeme) "
            "INSERT INTO fts_terms(session_id, lexeme, docs) SELECT ?, lexeme, count(*) FROM p GROUP BY lexeme ORDER BY lexeme "
            "ON CONFLICT (session_id, lexeme) DO UPDATE SET docs = fts_terms.docs + excluded.docs", ([r[0] for r in rows], key, session_id))

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # The session's lexeme in each chunk's full-text vector derives from the id: replaced too.
        await self._exec("UPDATE chunks SET session_id = ?, tsv = ts_delete(tsv, ?::text) || array_to_tsvector(ARRAY[?::text]) "
                         "WHERE session_id = ?", (new_id, session_lexeme(old_id), session_lexeme(new_id), old_id))

    async def _erase(self, session_ids: Sequence[str]) -> list[str]:
        # The sessions' rows stay locked until commit; their full-text entries live in their rows.
        # (Auto)vacuum reclaims the space later.
        ids = list(dict.fromkeys(session_ids))
        found = [str(r[0]) for r in await self._rows("SELECT id FROM sessions WHERE id = ANY(?) ORDER BY id FOR UPDATE", (ids,))]
        if found:
            await self._exec("DELETE FROM embeddings e WHERE e.content_hash IN (SELECT content_hash FROM chunks WHERE session_id = ANY(?)) "
                             "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = e.content_hash AND c.session_id <> ALL(?))",
                             (found, found))
            await self._exec("DELETE FROM sessions WHERE id = ANY(?)", (found,))
        return found
