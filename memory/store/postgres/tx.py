"""Write operations of the PostgreSQL store, each inside the caller's transaction.

`add_events` allocates every id it needs from the sequences in one round trip, builds all rows in
order, and sends each table's rows as one pipelined batch: a 300-message history is a handful of
round trips instead of a thousand. Ids come out in the order the SQLite store would assign them
(an event's artifact, the event, its chunks each followed by their probes, a diff and its chunks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from memory.records import NewChunk, NewEvent
from memory.store.dialect import POSTGRES
from memory.store.postgres.fts import TS_CONFIG, fts_text, session_lexeme, token_count
from memory.store.writes import SqlWrites

__all__ = ["PgTx", "Conn", "together"]

Conn = psycopg.AsyncConnection[Any]
_INSERT_CHUNK = (
    "INSERT INTO chunks(id, session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, parent_id, "
    f"doc_len, tsv) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('{TS_CONFIG}'::regconfig, %s::text) || array_to_tsvector(ARRAY[%s::text]))"
)
_INSERT_ARTIFACT = (
    "INSERT INTO artifacts(id, session_id, sha256, kind, source, version, content, pinned, previous_id, first_event_id, last_event_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_EVENT = (
    "INSERT INTO events(id, session_id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass
class _Batch:
    """Rows of one `add_events` call, built in id order before anything is sent."""

    session_id: str
    key: str
    artifacts: list[list[Any]] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    touched: list[tuple[int, int, int]] = field(default_factory=list)  # (event, pinned, artifact) of known artifacts
    docs: int = 0
    tokens: int = 0

    def add_chunks(self, chunks: Sequence[NewChunk], ids: Iterable[int], event_id: int | None, artifact_id: int | None) -> None:
        ids = iter(ids)
        for i, c in enumerate(chunks):
            chunk_id = next(ids)
            self._chunk(chunk_id, event_id, artifact_id, i, c.text, c, c.content_hash, c.tokens, None)
            for text, digest in c.probes:
                self._chunk(next(ids), event_id, artifact_id, i, text, c, digest, 0, chunk_id)

    def _chunk(self, chunk_id: int, event_id: int | None, artifact_id: int | None, ord_: int, text: str, c: NewChunk,
               digest: str, tokens: int, parent: int | None) -> None:
        folded = fts_text(text)
        length = token_count(folded)
        self.docs += 1
        self.tokens += length
        self.chunks.append((chunk_id, self.session_id, event_id, artifact_id, ord_, text, c.start_line, c.end_line, digest, tokens,
                            parent, length, folded, self.key))


def _chunk_count(chunks: Sequence[NewChunk]) -> int:
    return sum(1 + len(c.probes) for c in chunks)


async def together(conn: Conn, queries: Sequence[tuple[str, Sequence[Any]]], named: bool, snapshot: bool) -> list[list[Any]]:
    """Several reads pipelined (one round trip), as tuples or (`named`) dicts; in a read-only
    snapshot of their own when `snapshot` (outside a transaction)."""
    async with conn.pipeline():
        if snapshot:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursors = []
        for query, params in queries:
            cur = conn.cursor(row_factory=dict_row) if named else conn.cursor()
            cursors.append(await cur.execute(POSTGRES.sql(query), params))
        if snapshot:
            await conn.execute("COMMIT")
    return [list(await cur.fetchall()) for cur in cursors]


class PgTx(SqlWrites):
    """Write operations inside one transaction (and every read, seeing its own writes)."""

    dialect = POSTGRES

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await (await self.conn.execute(self.dialect.sql(query), params)).fetchall())

    async def _together(self, queries: Sequence[tuple[str, Sequence[Any]]], named: bool = False) -> list[list[Any]]:
        return await together(self.conn, queries, named, snapshot=False)

    async def _exec(self, query: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(self.dialect.sql(query), params)

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.dialect.sql(query), rows)

    async def _allocate(self, events: int, artifacts: int, chunks: int) -> tuple[list[int], list[int], list[int]]:
        rows = await self._rows(
            "SELECT (SELECT coalesce(array_agg(nextval('events_id_seq')), '{}') FROM generate_series(1, ?)), "
            "(SELECT coalesce(array_agg(nextval('artifacts_id_seq')), '{}') FROM generate_series(1, ?)), "
            "(SELECT coalesce(array_agg(nextval('chunks_id_seq')), '{}') FROM generate_series(1, ?))",
            (events, artifacts, chunks),
        )
        return sorted(rows[0][0]), sorted(rows[0][1]), sorted(rows[0][2])

    async def add_events(self, session_id: str, events: Sequence[NewEvent]) -> list[int]:
        """Append events (and their artifacts and chunks); returns the new event ids in order."""
        now = time.time()
        shas = [s for ev in events for s in (ev.artifact_sha, ev.diff[0] if ev.diff else None) if s is not None]
        known: dict[str, int | None] = {r[0]: r[1] for r in await self._rows(
            "SELECT sha256, id FROM artifacts WHERE session_id = ? AND sha256 = ANY(?)", (session_id, shas))} if shas else {}
        # Plan which artifacts are new (None: to be created in this batch) and count the ids needed.
        plan: list[tuple[bool, bool]] = []  # per event: (creates its artifact, creates a diff artifact)
        new_artifacts = n_chunks = 0
        for ev in events:
            creates = ev.artifact_sha is not None and ev.artifact_sha not in known
            diff = creates and ev.diff is not None and ev.diff[0] not in known
            if creates:
                known[ev.artifact_sha] = None  # type: ignore[index]
                new_artifacts += 1
            if diff:
                known[ev.diff[0]] = None  # type: ignore[index]
                new_artifacts += 1
            if ev.artifact_sha is None:
                n_chunks += _chunk_count(ev.chunks)
            elif creates:
                n_chunks += _chunk_count(ev.chunks) + (_chunk_count(ev.diff[2]) if diff and ev.diff else 0)
            plan.append((creates, diff))
        event_ids, artifact_ids, chunk_ids = await self._allocate(len(events), new_artifacts, n_chunks)
        next_artifact, next_chunk = iter(artifact_ids), iter(chunk_ids)
        batch = _Batch(session_id, session_lexeme(session_id))
        created: dict[str, list[Any]] = {}  # sha -> artifact row built in this batch
        for ev, event_id, (creates, diff) in zip(events, event_ids, plan, strict=True):
            artifact_id: int | None = None
            if ev.artifact_sha is not None:
                if creates:
                    artifact_id = next(next_artifact)
                    row: list[Any] = [artifact_id, session_id, ev.artifact_sha, ev.artifact_kind, ev.source, ev.version, ev.content, int(ev.pinned),
                           ev.previous_id, event_id, event_id]
                    batch.artifacts.append(row)
                    created[ev.artifact_sha] = row
                elif ev.artifact_sha in created:  # a second event of this batch with the same content
                    row = created[ev.artifact_sha]
                    artifact_id = int(row[0])
                    row[10] = event_id
                    row[7] = max(row[7], int(ev.pinned))
                else:
                    artifact_id = known[ev.artifact_sha]
                    assert artifact_id is not None
                    batch.touched.append((event_id, int(ev.pinned), artifact_id))
            parent = event_ids[ev.parent_index] if ev.parent_index is not None else None
            batch.events.append([event_id, session_id, ev.type, ev.role, "" if artifact_id is not None else ev.content, ev.source,
                                 int(ev.pinned), ev.timestamp, ev.payload, artifact_id, parent, now])
            if artifact_id is None:
                batch.add_chunks(ev.chunks, next_chunk, event_id, None)
            elif creates:
                batch.add_chunks(ev.chunks, next_chunk, None, artifact_id)
                if diff and ev.diff is not None:
                    sha, text, chunks = ev.diff
                    diff_id = next(next_artifact)
                    batch.artifacts.append([diff_id, session_id, sha, "diff", ev.source, ev.version, text, 0, ev.previous_id, event_id, event_id])
                    batch.add_chunks(chunks, next_chunk, None, diff_id)
        await self._write(batch, now)
        return event_ids

    async def _write(self, batch: _Batch, now: float) -> None:
        async with self.conn.cursor() as cur:
            if batch.artifacts:
                await cur.executemany(_INSERT_ARTIFACT, batch.artifacts)
            if batch.events:
                await cur.executemany(_INSERT_EVENT, batch.events)
            if batch.touched:
                await cur.executemany(
                    "UPDATE artifacts SET first_event_id = coalesce(first_event_id, %s), last_event_id = %s, pinned = greatest(pinned, %s) "
                    "WHERE id = %s",
                    [(e, e, p, a) for e, p, a in batch.touched],
                )
            if batch.chunks:
                await cur.executemany(_INSERT_CHUNK, batch.chunks)
            await cur.execute(
                "UPDATE sessions SET updated_at = %s, fts_docs = fts_docs + %s, fts_tokens = fts_tokens + %s WHERE id = %s",
                (now, batch.docs, batch.tokens, batch.session_id),
            )

    async def add_probes(self, session_id: str, probes: Sequence[tuple[int, str, str]]) -> None:
        """Probe rows (parent chunk id, text, content hash): extra search keys for a chunk."""
        if not probes:
            return
        key = session_lexeme(session_id)
        rows = []
        tokens = 0
        for parent, text, digest in probes:
            folded = fts_text(text)
            length = token_count(folded)
            tokens += length
            rows.append((text, digest, length, folded, key, parent))
        async with self.conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO chunks(session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, parent_id, "
                f"doc_len, tsv) SELECT session_id, event_id, artifact_id, ord, %s, start_line, end_line, %s, 0, id, %s, "
                f"to_tsvector('{TS_CONFIG}'::regconfig, %s::text) || array_to_tsvector(ARRAY[%s::text]) FROM chunks WHERE id = %s",
                rows,
            )
            await cur.execute(
                "UPDATE sessions SET fts_docs = fts_docs + %s, fts_tokens = fts_tokens + %s WHERE id = %s", (len(rows), tokens, session_id)
            )

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # The session's lexeme in each chunk's full-text vector derives from the id: replaced too.
        await self._exec("UPDATE chunks SET session_id = ?, tsv = ts_delete(tsv, ?::text) || array_to_tsvector(ARRAY[?::text]) "
                         "WHERE session_id = ?", (new_id, session_lexeme(old_id), session_lexeme(new_id), old_id))
