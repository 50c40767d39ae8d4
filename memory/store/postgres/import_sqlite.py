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
migration on both sides travels without a change here; chunks go through the store's own chunk
insert (`PgTx._add_chunks`, which builds their full-text entries and counts). After the copy, counts
are compared per session and per table.
"""

from __future__ import annotations

import json
import sqlite3
from itertools import groupby
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memory.errors import StorageError
from memory.store.dialect import SQLITE, by_table
from memory.store.events import CHUNK_ROW
from memory.store.postgres.store import PgStore
from memory.store.postgres.tx import PgTx
from memory.store.rows import SESSION_TABLES

__all__ = ["SessionCopy", "ImportReport", "import_sqlite"]

# The ids each table's rows carry: column -> the table whose ids it holds, rewritten to the ids the
# target allocates (a table referring to itself by `id` gets new ids). Responses are keyed by the
# provider's ids and transcript positions: nothing to rewrite.
_REFS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "artifacts": {"id": "artifacts", "previous_id": "artifacts", "first_event_id": "events", "last_event_id": "events"},
    "events": {"id": "events", "artifact_id": "artifacts", "parent_event_id": "events"},
    "chunks": {"id": "chunks", "event_id": "events", "artifact_id": "artifacts", "parent_id": "chunks"},
    "state_items": {"id": "state_items", "event_id": "events"},
    "transcript": {"event_id": "events"}, "frames": {"id": "frames"}, "turns": {"id": "turns", "frame_id": "frames"},
    "responses": {}, "response_items": {},
})
# Columns the copy sets itself besides those: a fresh generation, PostgreSQL's full-text counters
# (the chunk insert adds to them), state items' event ids (JSON) and successors (set once every item exists).
_SET = {"sessions": {"fts_docs", "fts_tokens", "generation"}, "state_items": {"superseded_by", "source_events"}}
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


def _source_counts(db: sqlite3.Connection, session_id: str, present: Mapping[str, list[str]]) -> dict[str, int]:
    return {t: int(db.execute(f"SELECT count(*) FROM {t} WHERE session_id = ?", (session_id,)).fetchone()[0]) if t in present else 0
            for t in SESSION_TABLES}


async def _target_counts(tx: PgTx, session_id: str) -> dict[str, int]:
    return {t: int((await tx._rows(f"SELECT count(*) FROM {t} WHERE session_id = ?", (session_id,)))[0][0]) for t in SESSION_TABLES}


class _Copier:
    """Copies one session's rows inside one target transaction."""

    def __init__(self, tx: PgTx, db: sqlite3.Connection, session_id: str, shared: dict[str, list[str]]) -> None:
        self.tx, self.db, self.session_id = tx, db, session_id
        self.shared = shared  # table -> columns copied as they are
        self.ids: dict[str, dict[int, int]] = {}

    def rows(self, table: str) -> list[sqlite3.Row]:
        if table not in self.shared:  # a file written before the table existed
            return []
        return self.db.execute(f"SELECT * FROM {table} WHERE session_id = ? ORDER BY {SESSION_TABLES[table]}", (self.session_id,)).fetchall()

    async def allocate(self, table: str, old: Sequence[int]) -> None:
        (row,) = await self.tx._rows("SELECT coalesce(array_agg(nextval(?::regclass)), '{}') FROM generate_series(1, ?)",
                                     (f"{table}_id_seq", len(old)))
        self.ids[table] = dict(zip(sorted(old), sorted(row[0]), strict=True))

    def ref(self, table: str, old: int | None) -> int | None:
        return None if old is None else self.ids[table].get(old)

    async def insert(self, table: str, extra: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Rows of the shared columns then `extra`."""
        columns = [*self.shared[table], *extra]
        await self.tx._exec_many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})", rows)

    async def copy(self) -> None:
        (session,) = self.db.execute("SELECT * FROM sessions WHERE id = ?", (self.session_id,)).fetchall()
        rows = {t: self.rows(t) for t in SESSION_TABLES}
        for table, refs in _REFS.items():
            if "id" in refs:
                await self.allocate(table, [r["id"] for r in rows[table]])
        await self.insert("sessions", [], [self.plain("sessions", session)])
        for table in SESSION_TABLES:
            refs = _REFS[table]
            values = [(*self.plain(table, r), *(self.ref(refs[c], r[c]) for c in refs)) for r in rows[table]]
            if table == "chunks":
                named = [dict(zip([*self.shared[table], *refs], v, strict=True)) for v in values]
                await self.tx._add_chunks(self.session_id, [tuple(n[c] for c in CHUNK_ROW.split(", ")) for n in named])
            elif table == "state_items":
                await self.insert(table, [*refs, "source_events"], [
                    (*v, json.dumps([e for e in (self.ref("events", old) for old in json.loads(r["source_events"])) if e is not None]))
                    for v, r in zip(values, rows[table], strict=True)])
            else:
                await self.insert(table, list(refs), values)
        await self.tx._exec_many("UPDATE state_items SET superseded_by = ? WHERE id = ?", [
            (self.ref("state_items", r["superseded_by"]), self.ref("state_items", r["id"])) for r in rows["state_items"] if r["superseded_by"]])
        vectors = self.db.execute(
            "SELECT model, content_hash, vector FROM embeddings WHERE content_hash IN (SELECT content_hash FROM chunks WHERE session_id = ?) "
            "ORDER BY model, content_hash", (self.session_id,)).fetchall()
        for model, found in groupby(vectors, key=lambda v: str(v[0])):
            await self.tx.put_vectors(model, ((h, v) for _, h, v in found))

    def plain(self, table: str, row: sqlite3.Row) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.shared[table])


async def _missing_vectors(tx: PgTx, db: sqlite3.Connection) -> int:
    missing = 0
    for (model,) in db.execute("SELECT DISTINCT model FROM embeddings").fetchall():
        hashes = [r[0] for r in db.execute(
            "SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN (SELECT content_hash FROM chunks)", (model,)).fetchall()]
        found = {h for (h,) in await tx._rows("SELECT content_hash FROM embeddings WHERE model = ? AND content_hash = ANY(?)", (model, hashes))}
        missing += len(set(hashes) - found)
    return missing


async def import_sqlite(source: str | Path, target: PgStore, progress: Progress | None = None) -> ImportReport:
    """Copy every session of the SQLite file `source` into `target` (opened here if needed), then
    verify counts. Safe to run again: sessions already copied are checked, not copied twice."""
    db = _source(Path(source))
    report = ImportReport()
    try:
        await target.open()
        session_ids = [r[0] for r in db.execute("SELECT id FROM sessions ORDER BY created_at, id").fetchall()]
        present = by_table(db.execute(SQLITE.columns))  # a file written before a table existed lacks it
        async with target.transaction() as tx:
            columns = await tx.table_columns()
        skip = {t: set(_REFS.get(t, {})) | _SET.get(t, set()) for t in ("sessions", *SESSION_TABLES)}
        shared = {t: [c for c in present[t] if c in columns[t] and c not in skip[t]] for t in ("sessions", *SESSION_TABLES) if t in present}
        for n, session_id in enumerate(session_ids, 1):
            db.execute("BEGIN")  # one snapshot of the source per session, even while a proxy writes to it
            try:
                counts = _source_counts(db, session_id, present)
                async with target.transaction() as tx:
                    if await tx._rows("SELECT 1 FROM sessions WHERE id = ? FOR UPDATE", (session_id,)):
                        found = await _target_counts(tx, session_id)
                        status = "already there" if found == counts else "conflict"
                    else:
                        await _Copier(tx, db, session_id, shared).copy()
                        status, found = "copied", await _target_counts(tx, session_id)
            finally:
                db.execute("COMMIT")
            report.sessions.append(SessionCopy(session_id, status, counts, found))
            if progress is not None:
                progress(n, len(session_ids), report.sessions[-1])
        async with target.transaction() as tx:
            report.vectors = await _missing_vectors(tx, db)
    except sqlite3.Error as exc:
        raise StorageError(f"reading {source} failed: {exc}") from exc
    finally:
        db.close()
    return report
