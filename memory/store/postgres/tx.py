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

from memory.store.postgres.fts import TS_CONFIG, fts_text, session_lexeme, token_count
from memory.store.postgres.reads import PgReads
from memory.records import FrameRecord, NewChunk, NewEvent, TurnRecord

__all__ = ["PgTx"]

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


class PgTx(PgReads):
    """Write operations inside one transaction (and the shared reads, seeing its own writes)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await (await self.conn.execute(query, params)).fetchall()

    async def ensure_session(self, session_id: str, scope: str = "") -> None:
        # The upsert locks the session's row until commit: this is what serialises one session's
        # writes across instances (see memory.store.postgres.store), so it must stay the first write.
        now = time.time()
        await self.conn.execute(
            "INSERT INTO sessions(id, scope, created_at, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
            (session_id, scope, now, now),
        )

    async def _allocate(self, events: int, artifacts: int, chunks: int) -> tuple[list[int], list[int], list[int]]:
        rows = await self._rows(
            "SELECT (SELECT coalesce(array_agg(nextval('events_id_seq')), '{}') FROM generate_series(1, %s)), "
            "(SELECT coalesce(array_agg(nextval('artifacts_id_seq')), '{}') FROM generate_series(1, %s)), "
            "(SELECT coalesce(array_agg(nextval('chunks_id_seq')), '{}') FROM generate_series(1, %s))",
            (events, artifacts, chunks),
        )
        return sorted(rows[0][0]), sorted(rows[0][1]), sorted(rows[0][2])

    async def add_events(self, session_id: str, events: Sequence[NewEvent]) -> list[int]:
        """Append events (and their artifacts and chunks); returns the new event ids in order."""
        now = time.time()
        shas = [s for ev in events for s in (ev.artifact_sha, ev.diff[0] if ev.diff else None) if s is not None]
        known: dict[str, int | None] = dict(await self._rows(
            "SELECT sha256, id FROM artifacts WHERE session_id = %s AND sha256 = ANY(%s)", (session_id, shas)
        )) if shas else {}
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

    async def last_message_before(self, session_id: str, event_id: int) -> tuple[int, str] | None:
        """(id, content) of the session's last user/assistant message before `event_id`."""
        rows = await self._rows(
            "SELECT id, content FROM events WHERE session_id = %s AND id < %s AND role IN ('user', 'assistant') ORDER BY id DESC LIMIT 1",
            (session_id, event_id),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def first_chunk_ids(self, event_ids: Sequence[int]) -> dict[int, int]:
        """The first (ord 0, non-probe) chunk of each event that has one."""
        if not event_ids:
            return {}
        rows = await self._rows(
            "SELECT event_id, min(id) FROM chunks WHERE event_id = ANY(%s) AND parent_id IS NULL GROUP BY event_id", (list(event_ids),)
        )
        return {r[0]: r[1] for r in rows}

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

    async def latest_artifact(self, session_id: str, source: str) -> tuple[int, int, str] | None:
        """(id, version, content) of the newest snapshot of `source`, diffs excluded."""
        rows = await self._rows(
            "SELECT id, version, content FROM artifacts WHERE session_id = %s AND source = %s AND kind != 'diff' ORDER BY id DESC LIMIT 1",
            (session_id, source),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def artifact_exists(self, session_id: str, sha: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM artifacts WHERE session_id = %s AND sha256 = %s", (session_id, sha)))

    async def add_state_item(self, session_id: str, kind: str, label: str, subject: str | None, text: str, norm: str, event_id: int | None) -> int:
        rows = await self._rows(
            "INSERT INTO state_items(session_id, kind, label, subject, text, norm, event_id, source_events, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (session_id, kind, label, subject, text, norm, event_id, json.dumps([event_id] if event_id else []), time.time()),
        )
        return int(rows[0][0])

    async def set_state_status(self, item_id: int, status: str, superseded_by: int | None = None) -> None:
        await self.conn.execute("UPDATE state_items SET status = %s, superseded_by = %s WHERE id = %s", (status, superseded_by, item_id))

    async def add_state_source(self, item_id: int, event_id: int) -> None:
        rows = await self._rows("SELECT source_events FROM state_items WHERE id = %s", (item_id,))
        if not rows:
            return
        sources = json.loads(rows[0][0])
        if event_id not in sources:
            await self.conn.execute("UPDATE state_items SET source_events = %s WHERE id = %s", (json.dumps([*sources, event_id]), item_id))

    async def replace_transcript(self, session_id: str, from_pos: int, rows: Sequence[tuple[int, str, str, int | None]], head: str | None) -> None:
        """Drop transcript positions >= from_pos and append `rows` (pos, msg_hash, chain_hash, event_id)."""
        async with self.conn.cursor() as cur:
            await cur.execute("DELETE FROM transcript WHERE session_id = %s AND pos >= %s", (session_id, from_pos))
            if rows:
                await cur.executemany(
                    "INSERT INTO transcript(session_id, pos, msg_hash, chain_hash, event_id) VALUES (%s, %s, %s, %s, %s)",
                    [(session_id, *r) for r in rows],
                )
            await cur.execute("UPDATE sessions SET head_hash = %s WHERE id = %s", (head, session_id))

    async def detach_from(self, session_id: str, pos: int) -> list[tuple[int, str]]:
        """Take transcript positions >= `pos` out of the transcript: their events (and artifacts
        extracted from them) stay in the log, marked detached, and leave retrieval. Returns the
        detached messages as (event id, content). Gives the session a new generation so every
        instance's in-process view reloads."""
        rows = await self._rows(
            "SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id WHERE t.session_id = %s AND t.pos >= %s",
            (session_id, pos),
        )
        ids = [int(r[0]) for r in rows]
        if ids:
            await self.conn.execute("UPDATE events SET detached = 1 WHERE id = ANY(%s) OR parent_event_id = ANY(%s)", (ids, ids))
        await self.conn.execute("DELETE FROM transcript WHERE session_id = %s AND pos >= %s", (session_id, pos))
        await self.conn.execute("UPDATE sessions SET generation = nextval('session_generation') WHERE id = %s", (session_id,))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def live_messages(self, session_id: str) -> list[tuple[int, str]]:
        """(event id, content) of the user and assistant messages on the transcript, in order."""
        rows = await self._rows(
            "SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id "
            "WHERE t.session_id = %s AND e.role IN ('user', 'assistant') ORDER BY t.pos",
            (session_id,),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def clear_state(self, session_id: str) -> None:
        await self.conn.execute("DELETE FROM state_items WHERE session_id = %s", (session_id,))

    async def save_frame(self, session_id: str, frame: FrameRecord) -> int:
        rows = await self._rows(
            "INSERT INTO frames(session_id, window_start, anchor, encoding, budget, base, items, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (session_id, frame.window_start, frame.anchor, frame.encoding, frame.budget,
             json.dumps(list(frame.base), ensure_ascii=False), json.dumps(list(frame.items), ensure_ascii=False), time.time()),
        )
        return int(rows[0][0])

    async def add_turn(self, session_id: str, turn: TurnRecord) -> None:
        await self.conn.execute(
            "INSERT INTO turns(session_id, request_key, frame_id, tail_pos, evidence, model, mode, sent_tokens, forwarded_tokens, "
            "prompt_tokens, cached_tokens, completion_tokens, created_at, cache_write_tokens) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (session_id, turn.request_key, turn.frame_id, turn.tail_pos,
             json.dumps(turn.evidence, ensure_ascii=False) if turn.evidence is not None else None, turn.model, turn.mode,
             turn.sent_tokens, turn.forwarded_tokens, turn.prompt_tokens, turn.cached_tokens, turn.completion_tokens, time.time(),
             turn.cache_write_tokens),
        )

    async def add_response(self, session_id: str, response_id: str, pos: int, chain_hash: str) -> None:
        """Record a response id of the session: its reply ends at transcript position `pos`, whose
        prefix has `chain_hash`. A regenerated id moves (keeping its first creation time, as SQLite)."""
        await self.conn.execute(
            "INSERT INTO responses(id, session_id, pos, chain_hash, created_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, pos = excluded.pos, chain_hash = excluded.chain_hash",
            (response_id, session_id, pos, chain_hash, time.time()),
        )

    async def add_items(self, session_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Remember wire items by id (item id, the item's JSON), for later references to them."""
        # One row per id (the last wins, as in SQLite), sorted: two instances writing overlapping
        # items take their row locks in one order.
        rows = sorted({item_id: item for item_id, item in items}.items())
        if rows:
            async with self.conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO response_items(session_id, item_id, item) VALUES (%s, %s, %s) "
                    "ON CONFLICT (session_id, item_id) DO UPDATE SET item = excluded.item",
                    [(session_id, item_id, item) for item_id, item in rows],
                )

    async def put_vectors(self, model: str, items: Iterable[tuple[str, bytes]]) -> None:
        # Sorted, so two transactions inserting overlapping sets take their row locks in one order
        # (never a deadlock between two instances embedding the same texts).
        rows = sorted({h: v for h, v in items}.items())
        if rows:
            async with self.conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO embeddings(model, content_hash, vector) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    [(model, h, v) for h, v in rows],
                )

    async def save_manifest(self, session_id: str, manifest_json: str) -> None:
        await self.conn.execute("UPDATE sessions SET last_manifest = %s WHERE id = %s", (manifest_json, session_id))
