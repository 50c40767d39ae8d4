"""Moving up: copy every session of a SQLite memory file into the PostgreSQL store.

Each session is copied in one PostgreSQL transaction, so a run that stops half way (Ctrl-C, a lost
connection) leaves whole sessions or nothing; running it again skips what is already there and
goes on. A session that already exists in the target with other contents (the proxy may have been
running on PostgreSQL meanwhile) is never overwritten: it is reported as a conflict.

Rows get new ids from the target's sequences (the target may already hold other sessions), in the
same order as in the source, and every reference is rewritten: events, artifacts, chunks, state
(including the event ids in `source_events`), transcript, frames and turns, the Responses API's
response ids and items (keyed by the provider's ids and transcript positions), and the vectors the
session's chunks use. The last compile manifest is copied as it was (a record of that compile, in
the source's ids). Columns are copied by name wherever both schemas have them, so a column added by a later
migration on both sides travels without a change here. After the copy, counts are compared per
session and per table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from memory.errors import StorageError
from memory.store.postgres.fts import TS_CONFIG, fts_text, session_lexeme, token_count
from memory.store.postgres.store import PgStore
from memory.store.postgres.tx import Conn
from memory.store.rows import SESSION_TABLES

__all__ = ["SessionCopy", "ImportReport", "import_sqlite", "COUNTED"]

# Tables with a session_id column, copied in this order (parents first).
COUNTED = tuple(SESSION_TABLES)
# Columns the copy sets itself (ids, references, and PostgreSQL's full-text columns).
_HANDLED = {
    "sessions": {"fts_docs", "fts_tokens", "generation"},  # a fresh generation from the target's sequence
    "artifacts": {"id", "previous_id", "first_event_id", "last_event_id"},
    "events": {"id", "artifact_id", "parent_event_id"},
    "chunks": {"id", "event_id", "artifact_id", "parent_id", "session_key", "doc_len", "tsv"},
    "state_items": {"id", "superseded_by", "event_id", "source_events"},
    "transcript": {"event_id"},
    "frames": {"id"},
    "turns": {"id", "frame_id"},
    "responses": set(),  # keyed by the provider's response id and transcript positions: nothing to rewrite
    "response_items": set(),
}
_BATCH = 2000
Progress = Callable[[int, int, "SessionCopy"], None]


@dataclass(frozen=True)
class SessionCopy:
    session_id: str
    status: str  # "copied", "already there", "conflict"
    source: dict[str, int]
    target: dict[str, int]

    @property
    def verified(self) -> bool:
        return self.source == self.target


@dataclass
class ImportReport:
    sessions: list[SessionCopy] = field(default_factory=list)
    vectors: int = 0  # vectors of the source whose hash is missing in the target after the copy

    def count(self, status: str) -> int:
        return sum(1 for s in self.sessions if s.status == status)

    @property
    def ok(self) -> bool:
        return self.vectors == 0 and all(s.verified and s.status != "conflict" for s in self.sessions)


def _source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StorageError(f"no SQLite memory file at {path}")
    try:
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("SELECT count(*) FROM sessions").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {path} as a memory file: {exc}") from exc
    return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}


def _source_counts(db: sqlite3.Connection, session_id: str) -> dict[str, int]:
    """Rows per table; a table an older file does not have yet counts 0."""
    present = _tables(db)
    return {t: int(db.execute(f"SELECT count(*) FROM {t} WHERE session_id = ?", (session_id,)).fetchone()[0]) if t in present else 0
            for t in COUNTED}


async def _target_counts(conn: Conn, session_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in COUNTED:
        row = await (await conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE session_id = %s").format(sql.Identifier(table)), (session_id,))).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


async def _columns(conn: Conn, table: str) -> set[str]:
    rows = await (await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s", (table,)
    )).fetchall()
    return {r[0] for r in rows}


class _Copier:
    """Copies one session's rows inside one target transaction."""

    def __init__(self, conn: Conn, db: sqlite3.Connection, session_id: str, shared: dict[str, list[str]]) -> None:
        self.conn = conn
        self.db = db
        self.session_id = session_id
        self.shared = shared  # table -> columns copied as they are
        self.ids: dict[str, dict[int, int]] = {}
        self.tables = _tables(db)

    def rows(self, table: str) -> list[sqlite3.Row]:
        if table not in self.tables:  # a file written before the table existed
            return []
        return self.db.execute(f"SELECT * FROM {table} WHERE session_id = ? ORDER BY {SESSION_TABLES[table]}", (self.session_id,)).fetchall()

    async def allocate(self, table: str, old: Sequence[int]) -> dict[int, int]:
        if not old:
            self.ids[table] = {}
            return self.ids[table]
        row = await (await self.conn.execute(
            "SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)", (f"{table}_id_seq", len(old))
        )).fetchone()
        assert row is not None
        self.ids[table] = dict(zip(sorted(old), sorted(row[0]), strict=True))
        return self.ids[table]

    def ref(self, table: str, old: int | None) -> int | None:
        return None if old is None else self.ids[table].get(old)

    async def insert(self, table: str, extra: Sequence[str], rows: list[tuple[Any, ...]], values: str | None = None) -> None:
        columns = [*self.shared[table], *extra]
        placeholders = values or ", ".join(["%s"] * len(columns))
        statement = sql.SQL("INSERT INTO {} ({}) VALUES (" + placeholders + ")").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        async with self.conn.cursor() as cur:
            for i in range(0, len(rows), _BATCH):
                await cur.executemany(statement, rows[i : i + _BATCH])

    def plain(self, table: str, row: sqlite3.Row) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.shared[table])

    async def copy(self) -> None:
        (session,) = self.db.execute("SELECT * FROM sessions WHERE id = ?", (self.session_id,)).fetchall()
        artifacts, events, chunks, items, transcript, frames, turns, responses, response_items = (self.rows(t) for t in COUNTED)
        await self.allocate("artifacts", [r["id"] for r in artifacts])
        await self.allocate("events", [r["id"] for r in events])
        await self.allocate("chunks", [r["id"] for r in chunks])
        await self.allocate("state_items", [r["id"] for r in items])
        await self.allocate("frames", [r["id"] for r in frames])
        folded = [fts_text(r["text"]) for r in chunks]
        lengths = [token_count(f) for f in folded]
        await self.insert("sessions", ["fts_docs", "fts_tokens"], [(*self.plain("sessions", session), len(chunks), sum(lengths))])
        await self.insert("artifacts", ["id", "previous_id", "first_event_id", "last_event_id"], [
            (*self.plain("artifacts", r), self.ref("artifacts", r["id"]), self.ref("artifacts", r["previous_id"]),
             self.ref("events", r["first_event_id"]), self.ref("events", r["last_event_id"])) for r in artifacts])
        await self.insert("events", ["id", "artifact_id", "parent_event_id"], [
            (*self.plain("events", r), self.ref("events", r["id"]), self.ref("artifacts", r["artifact_id"]),
             self.ref("events", r["parent_event_id"])) for r in events])
        key = session_lexeme(self.session_id)
        chunk_values = ", ".join(["%s"] * (len(self.shared["chunks"]) + 5)) + f", to_tsvector('{TS_CONFIG}'::regconfig, %s::text) || array_to_tsvector(ARRAY[%s::text])"
        await self.insert("chunks", ["id", "event_id", "artifact_id", "parent_id", "doc_len", "tsv"], [
            (*self.plain("chunks", r), self.ref("chunks", r["id"]), self.ref("events", r["event_id"]), self.ref("artifacts", r["artifact_id"]),
             self.ref("chunks", r["parent_id"]), length, text, key) for r, text, length in zip(chunks, folded, lengths, strict=True)],
            values=chunk_values)
        # superseded_by may point at a later item: set it once every item exists.
        await self.insert("state_items", ["id", "event_id", "source_events"], [
            (*self.plain("state_items", r), self.ref("state_items", r["id"]), self.ref("events", r["event_id"]),
             json.dumps([self.ref("events", e) for e in json.loads(r["source_events"]) if self.ref("events", e) is not None]))
            for r in items])
        async with self.conn.cursor() as cur:
            await cur.executemany("UPDATE state_items SET superseded_by = %s WHERE id = %s", [
                (self.ref("state_items", r["superseded_by"]), self.ref("state_items", r["id"])) for r in items if r["superseded_by"] is not None])
        await self.insert("transcript", ["event_id"], [(*self.plain("transcript", r), self.ref("events", r["event_id"])) for r in transcript])
        await self.insert("frames", ["id"], [(*self.plain("frames", r), self.ref("frames", r["id"])) for r in frames])
        await self.insert("turns", ["frame_id"], [(*self.plain("turns", r), self.ref("frames", r["frame_id"])) for r in turns])
        await self.insert("responses", [], [self.plain("responses", r) for r in responses])
        await self.insert("response_items", [], [self.plain("response_items", r) for r in response_items])
        vectors = self.db.execute(
            "SELECT model, content_hash, vector FROM embeddings WHERE content_hash IN (SELECT content_hash FROM chunks WHERE session_id = ?) "
            "ORDER BY model, content_hash", (self.session_id,),
        ).fetchall()
        async with self.conn.cursor() as cur:
            for i in range(0, len(vectors), _BATCH):
                await cur.executemany("INSERT INTO embeddings(model, content_hash, vector) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                                      [tuple(v) for v in vectors[i : i + _BATCH]])


async def _shared_columns(conn: Conn, db: sqlite3.Connection) -> dict[str, list[str]]:
    shared: dict[str, list[str]] = {}
    for table in ("sessions", *COUNTED):
        source = [r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()]
        target = await _columns(conn, table)
        shared[table] = [c for c in source if c in target and c not in _HANDLED[table]]
    return shared


async def _missing_vectors(conn: Conn, db: sqlite3.Connection) -> int:
    missing = 0
    for model in [r[0] for r in db.execute("SELECT DISTINCT model FROM embeddings").fetchall()]:
        hashes = [r[0] for r in db.execute(
            "SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN (SELECT content_hash FROM chunks)", (model,)
        ).fetchall()]
        for i in range(0, len(hashes), 5000):
            batch = hashes[i : i + 5000]
            row = await (await conn.execute(
                "SELECT count(*) FROM embeddings WHERE model = %s AND content_hash = ANY(%s)", (model, batch)
            )).fetchone()
            missing += len(batch) - (int(row[0]) if row else 0)
    return missing


async def import_sqlite(source: str | Path, target: PgStore, progress: Progress | None = None) -> ImportReport:
    """Copy every session of the SQLite file `source` into `target` (opened here if needed), then
    verify counts. Safe to run again: sessions already copied are checked, not copied twice."""
    db = _source(Path(source))
    report = ImportReport()
    try:
        await target.open()
        session_ids = [r[0] for r in db.execute("SELECT id FROM sessions ORDER BY created_at, id").fetchall()]
        async with target.transaction() as tx:
            shared = await _shared_columns(tx.conn, db)
        for n, session_id in enumerate(session_ids, 1):
            db.execute("BEGIN")  # one snapshot of the source per session, even while a proxy writes to it
            try:
                counts = _source_counts(db, session_id)
                async with target.transaction() as tx:
                    exists = await (await tx.conn.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_id,))).fetchall()
                    if exists:
                        found = await _target_counts(tx.conn, session_id)
                        status = "already there" if found == counts else "conflict"
                    else:
                        await _Copier(tx.conn, db, session_id, shared).copy()
                        status = "copied"
                        found = await _target_counts(tx.conn, session_id)
            finally:
                db.execute("COMMIT")
            report.sessions.append(SessionCopy(session_id, status, counts, found))
            if progress is not None:
                progress(n, len(session_ids), report.sessions[-1])
        async with target.transaction() as tx:
            report.vectors = await _missing_vectors(tx.conn, db)
    except sqlite3.Error as exc:
        raise StorageError(f"reading {source} failed: {exc}") from exc
    finally:
        db.close()
    return report
