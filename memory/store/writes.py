"""Writes inside one transaction, written once for both backends; a backend's transaction class
adds the methods that differ in kind (those below that raise NotImplementedError).

Appending events: every id is allocated up front (one round trip), every row built in order, and
each table's rows sent as one batch. A 300-message history is a handful of statements instead of a
thousand. Ids come out in the order rows are built: an event's artifact, the event, its chunks
each followed by their probes, a diff and its chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from memory.errors import InvalidArgumentError
from memory.records import FrameRecord, NewChunk, NewEvent, TurnRecord
from memory.store.fulltext import MAX_POSTINGS, split_or_query
from memory.store.locks import SessionLocks
from memory.store.reads import SqlReads

__all__ = ["SqlWrites", "SqlStore", "CHUNK_ROW", "DISTINCT_MODELS"]

# Columns of the generic chunk row a backend's `_add_chunks` receives.
CHUNK_ROW = "id, session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, parent_id"
INSERT_ARTIFACT = ("INSERT INTO artifacts(id, session_id, sha256, kind, source, version, content, pinned, previous_id, first_event_id, "
                   "last_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_EVENT = ("INSERT INTO events(id, session_id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id, "
                "created_at, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# The distinct models of the embeddings table by index seeks (a loose index scan), not a table scan.
DISTINCT_MODELS = (
    "WITH RECURSIVE m(model) AS (SELECT min(model) FROM embeddings "
    "UNION ALL SELECT (SELECT min(model) FROM embeddings WHERE model > m.model) FROM m WHERE m.model IS NOT NULL) "
    "SELECT model FROM m WHERE model IS NOT NULL"
)


@dataclass
class Batch:
    """Rows of one `add_events` call, built in id order before anything is sent."""

    session_id: str
    event_ids: list[int]
    artifacts: list[list[Any]] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    touched: list[tuple[int, int, int, int | None]] = field(default_factory=list)  # (event, event, pinned, artifact) of stored artifacts
    now: float = field(default_factory=time.time)

    def add_chunks(self, chunks: Sequence[NewChunk], ids: Iterator[int], event_id: int | None, artifact_id: int | None) -> None:
        for i, c in enumerate(chunks):
            chunk_id = next(ids)
            self.chunks.append((chunk_id, self.session_id, event_id, artifact_id, i, c.text, c.start_line, c.end_line, c.content_hash,
                                c.tokens, None))
            self.chunks += [(next(ids), self.session_id, event_id, artifact_id, i, text, c.start_line, c.end_line, digest, 0, chunk_id)
                            for text, digest in c.probes]


def _chunk_count(chunks: Sequence[NewChunk]) -> int:
    return sum(1 + len(c.probes) for c in chunks)


def plan_events(events: Sequence[NewEvent], known: dict[str, int | None]) -> tuple[list[tuple[bool, bool]], int, int]:
    """Per event (creates its artifact, creates a diff artifact), and the artifact and chunk ids
    needed. `known` (sha -> id of the session's stored artifacts) gains the shas to be created (None)."""
    plan: list[tuple[bool, bool]] = []
    new_artifacts = n_chunks = 0
    for ev in events:
        creates = ev.artifact_sha is not None and ev.artifact_sha not in known
        diff = creates and ev.diff is not None and ev.diff[0] not in known
        for sha in ([ev.artifact_sha] if creates else []) + ([ev.diff[0]] if diff and ev.diff else []):
            known[str(sha)] = None
            new_artifacts += 1
        if ev.artifact_sha is None or creates:
            n_chunks += _chunk_count(ev.chunks) + (_chunk_count(ev.diff[2]) if diff and ev.diff else 0)
        plan.append((creates, diff))
    return plan, new_artifacts, n_chunks


def build(batch: Batch, events: Sequence[NewEvent], known: dict[str, int | None], plan: list[tuple[bool, bool]],
          artifact_ids: Iterator[int], chunk_ids: Iterator[int]) -> None:
    """Every row of `events`, in id order, into `batch`."""
    created: dict[str, list[Any]] = {}  # sha -> artifact row built in this batch
    for ev, event_id, (creates, diff) in zip(events, batch.event_ids, plan, strict=True):
        artifact_id: int | None = None
        if ev.artifact_sha is not None:
            if creates:
                artifact_id = next(artifact_ids)
                created[ev.artifact_sha] = [artifact_id, batch.session_id, ev.artifact_sha, ev.artifact_kind, ev.source, ev.version,
                                            ev.content, int(ev.pinned), ev.previous_id, event_id, event_id]
                batch.artifacts.append(created[ev.artifact_sha])
            elif ev.artifact_sha in created:  # a second event of this batch with the same content
                row = created[ev.artifact_sha]
                artifact_id, row[10], row[7] = int(row[0]), event_id, max(row[7], int(ev.pinned))
            else:
                artifact_id = known[ev.artifact_sha]
                batch.touched.append((event_id, event_id, int(ev.pinned), artifact_id))
        parent = batch.event_ids[ev.parent_index] if ev.parent_index is not None else None
        batch.events.append([event_id, batch.session_id, ev.type, ev.role, "" if artifact_id is not None else ev.content, ev.source,
                             int(ev.pinned), ev.timestamp, ev.payload, artifact_id, parent, batch.now, ev.tokens])
        if artifact_id is None:
            batch.add_chunks(ev.chunks, chunk_ids, event_id, None)
        elif creates:
            batch.add_chunks(ev.chunks, chunk_ids, None, artifact_id)
            if diff and ev.diff is not None:
                sha, text, chunks = ev.diff
                diff_id = next(artifact_ids)
                batch.artifacts.append([diff_id, batch.session_id, sha, "diff", ev.source, ev.version, text, 0, ev.previous_id, event_id,
                                        event_id])
                batch.add_chunks(chunks, chunk_ids, None, diff_id)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class SqlWrites(SqlReads):
    """Write operations inside one transaction (and every read, seeing its own writes)."""

    async def _exec(self, query: str, params: Sequence[Any] = ()) -> None:
        await self._rows(query, params)  # a backend's `_rows` runs statements that return no rows too

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        """Move the session's chunks, and their full-text entries (keyed by the session id), to `new_id`."""
        raise NotImplementedError

    async def _allocate(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
        """That many new ids of each table (table -> count), ascending, never used before."""
        raise NotImplementedError

    async def _add_chunks(self, session_id: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert chunk rows (`CHUNK_ROW`) with this backend's full-text entries."""
        raise NotImplementedError

    async def _erase(self, session_ids: Sequence[str]) -> list[str]:
        """Delete every row of these sessions and the vectors nobody else uses; returns the ids
        that existed, in id order (their rows locked until commit, where the dialect locks rows)."""
        any_of, ids = self.dialect.any, self.dialect.many(dict.fromkeys(session_ids))
        found = [str(r[0]) for r in await self._rows(f"SELECT id FROM sessions WHERE {any_of('id')} ORDER BY id{self.dialect.lock_rows}",
                                                     (ids,))]
        if found:
            # Per model, so the primary key (model, content_hash) finds the rows.
            for (model,) in await self._rows(DISTINCT_MODELS):
                await self._exec(f"DELETE FROM embeddings WHERE model = ? AND content_hash IN (SELECT content_hash FROM chunks WHERE "
                                 f"{any_of('session_id')}) AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = "
                                 f"embeddings.content_hash AND NOT ({any_of('c.session_id')}))", (model, ids, ids))
            await self._exec(f"DELETE FROM chunks WHERE {any_of('session_id')}", (ids,))  # SQLite's FTS delete markers, by trigger
            await self._exec(f"DELETE FROM sessions WHERE {any_of('id')}", (ids,))  # the rest of their rows cascade
        return found

    async def add_events(self, session_id: str, events: Sequence[NewEvent]) -> list[int]:
        """Append events (and their artifacts and chunks); returns the new event ids in order (see
        the module's docstring)."""
        shas = [s for ev in events for s in (ev.artifact_sha, ev.diff[0] if ev.diff else None) if s is not None]
        known: dict[str, int | None] = {r[0]: r[1] for r in await self._rows(
            f"SELECT sha256, id FROM artifacts WHERE session_id = ? AND {self.dialect.any('sha256')}", (session_id, self.dialect.many(shas)))
        } if shas else {}
        plan, n_artifacts, n_chunks = plan_events(events, known)
        ids = await self._allocate({"events": len(events), "artifacts": n_artifacts, "chunks": n_chunks})
        batch = Batch(session_id, ids["events"])
        build(batch, events, known, plan, iter(ids["artifacts"]), iter(ids["chunks"]))
        if batch.artifacts:
            await self._exec_many(INSERT_ARTIFACT, batch.artifacts)
        if batch.events:
            await self._exec_many(INSERT_EVENT, batch.events)
        if batch.touched:
            await self._exec_many(f"UPDATE artifacts SET first_event_id = coalesce(first_event_id, ?), last_event_id = ?, "
                                  f"pinned = {self.dialect.greatest}(pinned, ?) WHERE id = ?", batch.touched)
        if batch.chunks:
            await self._add_chunks(session_id, batch.chunks)
        await self._exec("UPDATE sessions SET updated_at = ? WHERE id = ?", (batch.now, session_id))
        return batch.event_ids

    async def add_probes(self, session_id: str, probes: Sequence[tuple[int, str, str]]) -> None:
        """Probe rows (parent chunk id, text, content hash): extra search keys for a chunk."""
        if not probes:
            return
        parents = {r[0]: r for r in await self._rows(f"SELECT id, event_id, artifact_id, ord, start_line, end_line FROM chunks WHERE "
                                                     f"session_id = ? AND {self.dialect.any('id')}",
                                                     (session_id, self.dialect.many(sorted({p for p, _, _ in probes}))))}
        kept = [(parents[parent], text, digest) for parent, text, digest in probes if parent in parents]
        ids = await self._allocate({"chunks": len(kept)})
        await self._add_chunks(session_id, [(i, session_id, p[1], p[2], p[3], text, p[4], p[5], digest, 0, p[0])
                                            for i, (p, text, digest) in zip(ids["chunks"], kept, strict=True)])

    async def ensure_session(self, session_id: str, scope: str = "") -> None:
        # The upsert locks the session's row until commit (on PostgreSQL, what serialises one
        # session's writes across instances: see memory.store.postgres.store), so it must stay the
        # first write of a transaction.
        now = time.time()
        await self._exec(f"INSERT INTO sessions(id, scope, created_at, updated_at, generation) VALUES (?, ?, ?, ?, {self.dialect.new_generation}) "
                         "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at", (session_id, scope, now, now))

    async def set_event_tokens(self, counts: Sequence[tuple[int, int]]) -> None:
        """Store token counts (event id, count) of events stored before they were counted at ingest."""
        if counts:
            await self._exec_many("UPDATE events SET tokens = ? WHERE id = ?", [(n, event_id) for event_id, n in counts])

    async def add_state_item(self, session_id: str, kind: str, label: str, subject: str | None, text: str, norm: str, event_id: int | None) -> int:
        (r,) = await self._rows(
            "INSERT INTO state_items(session_id, kind, label, subject, text, norm, event_id, source_events, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (session_id, kind, label, subject, text, norm, event_id, json.dumps([event_id] if event_id else []), time.time()))
        return int(r[0])

    async def set_state_status(self, item_id: int, status: str, superseded_by: int | None = None) -> None:
        await self._exec("UPDATE state_items SET status = ?, superseded_by = ? WHERE id = ?", (status, superseded_by, item_id))

    async def add_state_source(self, item_id: int, event_id: int) -> None:
        r = await self._one("SELECT source_events FROM state_items WHERE id = ?", (item_id,))
        if r is not None and event_id not in (sources := json.loads(r[0])):
            await self._exec("UPDATE state_items SET source_events = ? WHERE id = ?", (json.dumps([*sources, event_id]), item_id))

    async def replace_transcript(self, session_id: str, from_pos: int, rows: Sequence[tuple[int, str, str, int | None]], head: str | None) -> None:
        """Drop transcript positions >= from_pos and append `rows` (pos, msg_hash, chain_hash, event_id)."""
        await self._exec("DELETE FROM transcript WHERE session_id = ? AND pos >= ?", (session_id, from_pos))
        if rows:
            await self._exec_many("INSERT INTO transcript(session_id, pos, msg_hash, chain_hash, event_id) VALUES (?, ?, ?, ?, ?)",
                                  [(session_id, *r) for r in rows])
        await self._exec("UPDATE sessions SET head_hash = ? WHERE id = ?", (head, session_id))

    async def detach_from(self, session_id: str, pos: int) -> list[tuple[int, str]]:
        """Take transcript positions >= `pos` out of the transcript: their events (and artifacts
        extracted from them) stay in the log, marked detached, and leave retrieval. Returns the
        detached messages as (event id, content), so the caller can tell whether state came from
        them. Moves the session's generation on, so every in-process view reloads."""
        found = await self._rows("SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id "
                                 "WHERE t.session_id = ? AND t.pos >= ?", (session_id, pos))
        if found:
            ids = self.dialect.many(int(r[0]) for r in found)
            await self._exec(f"UPDATE events SET detached = 1 WHERE {self.dialect.any('id')} OR {self.dialect.any('parent_event_id')}", (ids, ids))
        await self._exec("DELETE FROM transcript WHERE session_id = ? AND pos >= ?", (session_id, pos))
        await self._exec(f"UPDATE sessions SET generation = {self.dialect.next_generation} WHERE id = ?", (session_id,))
        return [(int(r[0]), str(r[1])) for r in found]

    async def clear_state(self, session_id: str) -> None:
        await self._exec("DELETE FROM state_items WHERE session_id = ?", (session_id,))

    async def save_frame(self, session_id: str, frame: FrameRecord) -> int:
        (r,) = await self._rows(
            "INSERT INTO frames(session_id, window_start, anchor, encoding, budget, base, items, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (session_id, frame.window_start, frame.anchor, frame.encoding, frame.budget, _json(list(frame.base)), _json(list(frame.items)),
             time.time()))
        return int(r[0])

    async def add_turn(self, session_id: str, turn: TurnRecord) -> None:
        await self._exec(
            "INSERT INTO turns(session_id, request_key, frame_id, tail_pos, evidence, model, mode, sent_tokens, forwarded_tokens, "
            "prompt_tokens, cached_tokens, completion_tokens, created_at, cache_write_tokens) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, turn.request_key, turn.frame_id, turn.tail_pos, None if turn.evidence is None else _json(turn.evidence), turn.model,
             turn.mode, turn.sent_tokens, turn.forwarded_tokens, turn.prompt_tokens, turn.cached_tokens, turn.completion_tokens, time.time(),
             turn.cache_write_tokens))

    async def add_response(self, session_id: str, response_id: str, pos: int, chain_hash: str) -> None:
        """Record a response id of the session: its reply ends at transcript position `pos` (the
        transcript's length then), whose prefix has `chain_hash`. A regenerated id moves (keeping
        its first creation time)."""
        await self._exec("INSERT INTO responses(id, session_id, pos, chain_hash, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) "
                         "DO UPDATE SET session_id = excluded.session_id, pos = excluded.pos, chain_hash = excluded.chain_hash",
                         (response_id, session_id, pos, chain_hash, time.time()))

    async def add_items(self, session_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Remember wire items by id (item id, the item's JSON), for later references to them."""
        # One row per id (the last wins), sorted: two writers of overlapping items take their row
        # locks in one order (never a deadlock between two PostgreSQL instances).
        rows = sorted({item_id: item for item_id, item in items}.items())
        if rows:
            await self._exec_many("INSERT INTO response_items(session_id, item_id, item) VALUES (?, ?, ?) "
                                  "ON CONFLICT (session_id, item_id) DO UPDATE SET item = excluded.item", [(session_id, *r) for r in rows])

    async def put_vectors(self, model: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Store vectors of text some session holds; the others are dropped (a batch embedded while
        its session was erased leaves nothing of it behind)."""
        rows = sorted({h: v for h, v in items}.items())  # sorted, as in add_items
        if rows:
            await self._exec_many("INSERT INTO embeddings(model, content_hash, vector) SELECT ?, ?, ? "
                                  "WHERE EXISTS (SELECT 1 FROM chunks WHERE content_hash = ?) ON CONFLICT DO NOTHING",
                                  [(model, h, v, h) for h, v in rows])

    async def save_view_snapshot(self, session_id: str, generation: int, model: str, fmt: str, marks: tuple[int, int, int],
                                 data: bytes) -> bool:
        """Store the head of a view snapshot taken at `marks` (max event, artifact, chunk), replacing
        the session's last and its parts; only while the session is still at `generation`. True
        when stored."""
        await self._exec("DELETE FROM view_snapshots WHERE session_id = ?", (session_id,))  # its parts go with it
        await self._exec("INSERT INTO view_snapshots(session_id, generation, model, format, max_event, max_artifact, max_chunk, data, "
                         "created_at) SELECT id, generation, ?, ?, ?, ?, ?, ?, ? FROM sessions WHERE id = ? AND generation = ?",
                         (model, fmt, *marks, data, time.time(), session_id, generation))
        return await self._one("SELECT 1 FROM view_snapshots WHERE session_id = ? AND generation = ? AND max_chunk = ?",
                               (session_id, generation, marks[2])) is not None

    async def put_view_snapshot_part(self, session_id: str, part: int, data: bytes) -> None:
        """Store part `part` (from 1) of the session's view snapshot, after its head."""
        await self._exec("INSERT INTO view_snapshot_parts(snapshot, part, data) VALUES (?, ?, ?)", (session_id, part, data))

    async def save_manifest(self, session_id: str, manifest_json: str) -> None:
        await self._exec("UPDATE sessions SET last_manifest = ? WHERE id = ?", (manifest_json, session_id))

class SqlStore(SqlReads):
    """What both stores do alike over their own transactions, and what each does in its own way.
    Session ids are opaque to the store, but for expiry's namespaces (`expired_sessions`)."""

    def __init__(self) -> None:
        self._session_locks = SessionLocks()
        self.max_postings = MAX_POSTINGS  # the full-text query's cap (`memory.store.fulltext`)

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[SqlWrites]:
        """One atomic unit of writes: all of them land, or none."""
        raise NotImplementedError

    def session_lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Serialises one session's read-decide-write sequences (a proxy request's sync and
        compile, its commit) across every process that shares the store; a process's own waiters
        queue on `_session_locks` first."""
        raise NotImplementedError

    async def check_writable(self) -> None:
        """Raise `StorageError` unless a write could start now: a turn must not go out as if memory
        will record it when it cannot."""
        raise NotImplementedError

    async def health(self) -> str | None:
        """None when what is written lands in durable storage; otherwise a one-line reason."""
        raise NotImplementedError

    async def bm25(self, session_id: str, match: str, limit: int) -> list[tuple[int, float]]:
        """Chunk ids of the session holding any word of `match`, best first, with FTS5's bm25 (lower
        is better). `match` is words joined by OR (`memory.store.fulltext`; a word may be a phrase,
        "user_id" is "user id"): the one query both stores rank alike; other FTS5 syntax is refused."""
        words = split_or_query(match)
        if words is None:
            raise InvalidArgumentError(f"a full-text query is quoted words joined by OR, not {match[:80]!r}")
        return await self._bm25(session_id, words, limit) if words else []

    async def _bm25(self, session_id: str, words: list[str], limit: int) -> list[tuple[int, float]]:
        """`bm25` of at least one word (their rarest, `memory.store.fulltext`)."""
        raise NotImplementedError

    async def delete_sessions(self, session_ids: Sequence[str]) -> list[str]:
        """Erase sessions for good: their rows, full-text entries and the vectors no other session
        uses, without rewriting the whole store. Returns the ids that existed."""
        if not session_ids:
            return []
        async with self.transaction() as tx:
            found = await tx._erase(session_ids)
        if found:
            await self._reclaim()
        return found

    async def _reclaim(self) -> None:
        """Hand back the space erased rows held, after the erase has committed."""

    async def rename_session(self, old_id: str, new_id: str, old_scope_prefix: str = "", new_scope_prefix: str = "") -> bool:
        """Move every row of `old_id` to `new_id`; a scope starting with `old_scope_prefix` gets
        `new_scope_prefix` instead. False when `old_id` does not exist, `InvalidArgumentError` when
        `new_id` does. The renamed session starts at a new generation, so no view of the old id's
        rows is reused."""
        async with self.transaction() as tx:
            if not await tx.session_exists(old_id):
                return False
            if await tx.session_exists(new_id):
                raise InvalidArgumentError(f"session {new_id!r} already exists")
            tables = await tx.table_columns()
            kept = ", ".join(c for c in tables["sessions"] if c not in ("id", "scope", "generation"))
            cut = len(old_scope_prefix)
            await tx._exec(f"INSERT INTO sessions(id, scope, generation, {kept}) SELECT ?, CASE WHEN substr(scope, 1, ?) = ? "
                           f"THEN ? || substr(scope, ? + 1) ELSE scope END, {tx.dialect.new_generation}, {kept} FROM sessions WHERE id = ?",
                           (new_id, cut, old_scope_prefix, new_scope_prefix, cut, old_id))
            # Every table that belongs to a session, whatever later migrations add; chunks carry the
            # session in their full-text entries too.
            for table in sorted(t for t, columns in tables.items() if "session_id" in columns and t not in ("sessions", "chunks")):
                await tx._exec(f"UPDATE {table} SET session_id = ? WHERE session_id = ?", (new_id, old_id))
            await tx._rekey_chunks(old_id, new_id)
            await tx._exec("DELETE FROM sessions WHERE id = ?", (old_id,))
            return True
