"""Moving up: copy every session of a SQLite memory file into the PostgreSQL store.

Each session is copied in one PostgreSQL transaction, so a run that stops half way (Ctrl-C, a lost
connection) leaves whole sessions or nothing; running it again skips what is already there and
goes on. A session that already exists in the target with other contents (the proxy may have been
running on PostgreSQL meanwhile) is never overwritten: it is reported as a conflict.

Rows get new ids from the target's sequences (the target may already hold other sessions), in the
same order as in the source, and every reference is rewritten: events, artifacts, chunks, state
(including the event ids in `source_events`), transcript, frames and turns, the Responses API's
response ids and items (keyed by the provider's ids and transcript positions), and the vectors the
session's chunks use. View snapshots are not: derived, and valid only at the generation they were
taken at, which the copy gives afresh (the target builds its own at the first compile). The last compile manifest is copied as it was (a record of that compile, in
the source's ids). Columns are copied by name wherever both schemas have them, so a column added by a later
migration on both sides travels without a change here; chunks go through the store's own chunk
insert (`PgTx._add_chunks`, which builds their full-text entries and counts). After the copy, counts
are compared per session and per table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memory.errors import StorageError
from memory.store.schema import SQLITE
from memory.store.postgres.store import PgStore, PgTx
from memory.store.reads import SESSION_TABLES, SqlReads
from memory.store.writes import CHUNK_ROW, DISTINCT_MODELS

__all__ = ["SessionCopy", "ImportReport", "import_sqlite"]

# The ids each table's rows carry: column -> the table whose ids it holds, rewritten to the ids the
# target allocates (a table referring to itself by `id` gets new ids).
_REFS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "artifacts": {"id": "artifacts", "previous_id": "artifacts", "first_event_id": "events", "last_event_id": "events"},
    "events": {"id": "events", "artifact_id": "artifacts", "parent_event_id": "events"},
    "chunks": {"id": "chunks", "event_id": "events", "artifact_id": "artifacts", "parent_id": "chunks"},
    "state_items": {"id": "state_items", "event_id": "events"},
    "transcript": {"event_id": "events"}, "frames": {"id": "frames"}, "turns": {"id": "turns", "frame_id": "frames"},
})
# Columns the copy sets itself besides those: a fresh generation, PostgreSQL's full-text counters
# (the chunk insert adds to them), state items' event ids (JSON) and successors (set once every item exists).
_SET = {"sessions": {"fts_docs", "fts_tokens", "generation"}, "state_items": {"superseded_by", "source_events"}}
_COPIED = tuple(t for t in SESSION_TABLES if t != "view_snapshots")
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


class _Source(SqlReads):
    """The SQLite file, read-only, through the reads every store shares."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StorageError(f"no SQLite memory file at {path}")
        try:
            self.db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, isolation_level=None)
            self.db.execute("SELECT count(*) FROM sessions").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {path} as a memory file: {exc}") from exc

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return self.db.execute(query, params).fetchall()


async def _counts(reads: SqlReads, session_id: str, tables: Container[str]) -> dict[str, int]:
    return {t: int((await reads._rows(f"SELECT count(*) FROM {t} WHERE session_id = ?", (session_id,)))[0][0]) if t in tables else 0
            for t in _COPIED}


async def _copy(tx: PgTx, source: _Source, session_id: str, shared: Mapping[str, list[str]]) -> None:
    """Copy one session's rows inside one target transaction, under ids the target allocates."""
    rows = await source.export_rows(session_id, [t for t in _COPIED if t in shared])
    rows["sessions"] = [dict(zip(shared["sessions"], r, strict=True)) for r in await source._rows(
        f"SELECT {', '.join(shared['sessions'])} FROM sessions WHERE id = ?", (session_id,))]
    old = {t: sorted(r["id"] for r in rows.get(t, [])) for t, refs in _REFS.items() if "id" in refs}
    allocated = await tx._allocate({t: len(found) for t, found in old.items()})
    ids = {t: dict(zip(old[t], allocated[t], strict=True)) for t in old}

    def ref(table: str, old: int | None) -> int | None:
        return None if old is None else ids[table].get(old)

    for table in ("sessions", *_COPIED):
        refs = _REFS.get(table, {})
        new = [{**{c: r[c] for c in shared[table]}, **{c: ref(refs[c], r[c]) for c in refs}} for r in rows.get(table, [])]
        if table == "state_items":
            for n, r in zip(new, rows.get(table, []), strict=True):
                n["source_events"] = json.dumps([e for e in (ref("events", old) for old in json.loads(r["source_events"])) if e is not None])
        if table == "chunks":
            await tx._add_chunks(session_id, [tuple(n[c] for c in CHUNK_ROW.split(", ")) for n in new])
        elif new:
            await tx._exec_many(f"INSERT INTO {table} ({', '.join(new[0])}) VALUES ({', '.join(['?'] * len(new[0]))})",
                                [tuple(n.values()) for n in new])
    await tx._exec_many("UPDATE state_items SET superseded_by = ? WHERE id = ?", [
        (ref("state_items", r["superseded_by"]), ref("state_items", r["id"])) for r in rows.get("state_items", []) if r["superseded_by"]])
    hashes = [c["content_hash"] for c in rows.get("chunks", [])]
    for (model,) in await source._rows(DISTINCT_MODELS):
        await tx.put_vectors(model, (await source.get_vectors(model, hashes)).items())


async def _missing_vectors(target: PgStore, source: _Source) -> int:
    missing = 0
    for (model,) in await source._rows(DISTINCT_MODELS):
        hashes = [r[0] for r in await source._rows(
            "SELECT content_hash FROM embeddings WHERE model = ? AND content_hash IN (SELECT content_hash FROM chunks)", (model,))]
        found = {h for (h,) in await target._rows("SELECT content_hash FROM embeddings WHERE model = ? AND content_hash = ANY(?)", (model, hashes))}
        missing += len(set(hashes) - found)
    return missing


async def import_sqlite(source: str | Path, target_url: str, progress: Progress | None = None) -> ImportReport:
    """Copy every session of the SQLite file `source` into the PostgreSQL store at `target_url`,
    then verify counts. Safe to run again: sessions already copied are checked, not copied twice."""
    reads, target = _Source(Path(source)), PgStore(target_url)
    report = ImportReport()
    try:
        await target.open()
        session_ids = [r[0] for r in await reads._rows("SELECT id FROM sessions ORDER BY created_at, id")]
        present = await reads.table_columns()  # a file written before a table existed lacks it
        columns = await target.table_columns()
        skip = {t: set(_REFS.get(t, {})) | _SET.get(t, set()) for t in ("sessions", *_COPIED)}
        shared = {t: [c for c in present[t] if c in columns[t] and c not in skip[t]] for t in ("sessions", *_COPIED) if t in present}
        for n, session_id in enumerate(session_ids, 1):
            reads.db.execute("BEGIN")  # one snapshot of the source per session, even while a proxy writes to it
            try:
                counts = await _counts(reads, session_id, present)
                async with target.transaction() as tx:
                    if await tx._rows("SELECT 1 FROM sessions WHERE id = ? FOR UPDATE", (session_id,)):
                        found = await _counts(tx, session_id, _COPIED)
                        status = "already there" if found == counts else "conflict"
                    else:
                        await _copy(tx, reads, session_id, shared)
                        status, found = "copied", await _counts(tx, session_id, _COPIED)
            finally:
                reads.db.execute("COMMIT")
            report.sessions.append(SessionCopy(session_id, status, counts, found))
            if progress is not None:
                progress(n, len(session_ids), report.sessions[-1])
        report.vectors = await _missing_vectors(target, reads)
    except sqlite3.Error as exc:
        raise StorageError(f"reading {source} failed: {exc}") from exc
    finally:
        reads.db.close()
        await target.close()
    return report
