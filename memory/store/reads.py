"""Every read of the store, written once for both backends (and their transactions, which see
their own writes). A backend supplies `_rows` (one statement) and its dialect. A read selects the
columns named here, in this order, and one function turns such a row into its record (a record
whose fields are those columns in order, `ChunkRow` or `SessionSummary`, is built from the row
itself). Also the tables a session owns: what an export, a rename and the import from SQLite walk.

Reads for looking into memory (an inspector page, cost reports) are here too: read-only, and one
query each, so a page of a 10,000-event session costs what a page of a small one does. A `prefix`
matches session ids by code point in both stores (PostgreSQL's `sessions.id` is `COLLATE "C"`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from memory.records import (ArtifactInfo, ArtifactRow, ChunkRow, EventRow, FrameRecord, LoggedEvent, SessionDelta, SessionSummary,
                            SessionUsage, StateItem, TranscriptEntry, TurnRecord, UsageTotals)
from memory.store.schema import Dialect

__all__ = ["SqlReads", "SESSION_TABLES", "EXPORTED"]

# Sessions listed by find_session_by_chain: a prefix shared by more is not worth telling apart.
CHAIN_MATCHES = 20
_NEWEST = 2**62  # an event id above every real one

EVENT = "id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id, tokens"
LOGGED_EVENT = f"{EVENT}, detached, created_at"
ARTIFACT = "id, kind, source, version, pinned, previous_id, first_event_id, last_event_id, sha256"
CHUNK = "id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, parent_id, tokens"
STATE = "id, kind, label, subject, text, status, superseded_by, event_id, source_events"
FRAME = "id, window_start, anchor, encoding, budget, base, items"
TURN = ("request_key, frame_id, tail_pos, evidence, model, mode, sent_tokens, forwarded_tokens, prompt_tokens, cached_tokens, "
        "completion_tokens, created_at, cache_write_tokens")
SUMS = ("count(*), coalesce(sum(t.sent_tokens), 0), coalesce(sum(t.forwarded_tokens), 0), coalesce(sum(t.prompt_tokens), 0), "
        "coalesce(sum(t.cached_tokens), 0), coalesce(sum(t.completion_tokens), 0)")
SUMMARY = (
    "SELECT s.id, s.created_at, s.updated_at, "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.detached = 0), "
    "(SELECT count(*) FROM events e WHERE e.session_id = s.id AND e.role IS NOT NULL AND e.detached = 0), "
    "(SELECT count(*) FROM artifacts a WHERE a.session_id = s.id), "
    "(SELECT count(*) FROM chunks c WHERE c.session_id = s.id) FROM sessions s "
)
# Every table with rows of a session (besides `sessions`), parents first, and the column its rows
# are listed in order of. A migration that adds one adds it here, and export and import follow.
SESSION_TABLES: Mapping[str, str] = MappingProxyType({
    "artifacts": "id", "events": "id", "chunks": "id", "state_items": "id", "transcript": "pos", "frames": "id", "turns": "id",
    "responses": "created_at", "response_items": "item_id", "view_snapshots": "session_id",
})
# What an export holds: everything but the chunks (derived from events and artifacts).
EXPORTED = ("events", "artifacts", "state_items", "transcript", "frames", "turns", "responses", "response_items")
Row = Sequence[Any]


def _event(r: Row) -> EventRow:
    # Nearly every payload is "{}": decoding 100,000 of them took ~1 s of a view's load.
    return EventRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], {} if r[7] == "{}" else json.loads(r[7]), r[8], r[9], r[10])


def _logged_event(r: Row) -> LoggedEvent:
    return LoggedEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], json.loads(r[7]), r[8], r[9], r[10], bool(r[11]), float(r[12]))


def _artifact(r: Row) -> ArtifactRow:
    return ArtifactRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8])


def _artifact_info(r: Row) -> ArtifactInfo:
    """An `ARTIFACT` row followed by the content's length."""
    return ArtifactInfo(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], int(r[9]))


def _state(r: Row) -> StateItem:
    return StateItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(json.loads(r[8])))


def _frame(r: Row) -> FrameRecord:
    return FrameRecord(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), tuple(json.loads(r[6])))


def _turn(r: Row) -> TurnRecord:
    return TurnRecord(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12])


def _totals(r: Row) -> UsageTotals:
    return UsageTotals(*(int(v) for v in r))


class SqlReads:
    dialect: Dialect

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def _together(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Sequence[Any]]]:
        """The rows of each query, all read from one committed state: here one after the other,
        which is that state inside a transaction and on SQLite's one connection (a commit lands
        between two reads only when another task's transaction waits, as between any two reads).
        A store that other processes write to overrides it."""
        return [await self._rows(q, p) for q, p in queries]

    async def _one(self, query: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        found = await self._rows(query, params)
        return found[0] if found else None

    async def table_columns(self) -> dict[str, list[str]]:
        """Every table of the schema and its columns, as the migrations left them."""
        tables: dict[str, list[str]] = {}
        for table, column in await self._rows(self.dialect.columns):
            tables.setdefault(table, []).append(column)
        return tables

    async def high_water(self, session_id: str) -> tuple[int, int, int]:
        """(max event id, max chunk id, generation) of a session: a cheap freshness check for
        caches. The generation changes when messages leave the transcript (an edit, a retry), and
        a session erased or renamed and then created again starts at a new one (0 while none exists)."""
        (r,) = await self._rows(
            "SELECT (SELECT coalesce(max(id), 0) FROM events WHERE session_id = ?), "
            "(SELECT coalesce(max(id), 0) FROM chunks WHERE session_id = ?), "
            "(SELECT coalesce(max(generation), 0) FROM sessions WHERE id = ?)", (session_id, session_id, session_id))
        return int(r[0]), int(r[1]), int(r[2])

    async def load_delta(self, session_id: str, after_event: int, after_artifact: int, after_chunk: int,
                         chunk_limit: int | None = None) -> SessionDelta:
        """Live events, artifacts and chunks after the marks, read in one snapshot. Detached events
        (edited away or regenerated) are left out, and so are artifacts only they referenced. With
        `chunk_limit`, only the first that many chunks (a caller pages through a large session)."""
        events, artifacts, chunks = await self._together([
            (f"SELECT {EVENT} FROM events WHERE session_id = ? AND id > ? AND detached = 0 ORDER BY id", (session_id, after_event)),
            (f"SELECT {ARTIFACT} FROM artifacts a WHERE session_id = ? AND (id > ? OR last_event_id > ?) "
             "AND EXISTS (SELECT 1 FROM events e WHERE (e.artifact_id = a.id OR e.id = a.first_event_id) AND e.detached = 0) ORDER BY id",
             (session_id, after_artifact, after_event)),
            (f"SELECT {CHUNK} FROM chunks WHERE session_id = ? AND id > ? ORDER BY id" + ("" if chunk_limit is None else " LIMIT ?"),
             (session_id, after_chunk) + (() if chunk_limit is None else (chunk_limit,))),
        ])
        return SessionDelta([_event(r) for r in events], [_artifact(r) for r in artifacts], [ChunkRow._make(r) for r in chunks])

    async def view_snapshot(self, session_id: str, model: str, fmt: str) -> tuple[int, int, int, int, bytes] | None:
        """(generation, max event, max artifact, max chunk, data) of the session's stored view
        snapshot under `model` and format `fmt`, or None (`memory.recall.snapshot`)."""
        r = await self._one("SELECT generation, max_event, max_artifact, max_chunk, data FROM view_snapshots "
                            "WHERE session_id = ? AND model = ? AND format = ?", (session_id, model, fmt))
        return None if r is None else (int(r[0]), int(r[1]), int(r[2]), int(r[3]), bytes(r[4]))

    async def view_snapshot_part(self, session_id: str, part: int) -> bytes | None:
        """Part `part` (from 1) of the session's stored view snapshot, or None."""
        r = await self._one("SELECT data FROM view_snapshot_parts WHERE snapshot = ? AND part = ?", (session_id, part))
        return None if r is None else bytes(r[0])

    async def get_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
        if not hashes:
            return {}
        found = await self._rows(f"SELECT content_hash, vector FROM embeddings WHERE model = ? AND {self.dialect.any('content_hash')}",
                                 (model, self.dialect.many(dict.fromkeys(hashes))))
        return {r[0]: bytes(r[1]) for r in found}

    async def state_items(self, session_id: str) -> list[StateItem]:
        return [_state(r) for r in await self._rows(f"SELECT {STATE} FROM state_items WHERE session_id = ? ORDER BY id", (session_id,))]

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        found = await self._rows(
            "SELECT t.pos, t.msg_hash, t.chain_hash, t.event_id, coalesce(e.role, 'user') FROM transcript t "
            "LEFT JOIN events e ON e.id = t.event_id WHERE t.session_id = ? ORDER BY t.pos", (session_id,))
        return [TranscriptEntry(r[0], r[1], r[2], r[3], r[4]) for r in found]

    async def frames(self, session_id: str, limit: int = 8) -> list[FrameRecord]:
        """The session's most recent frames, newest first."""
        found = await self._rows(f"SELECT {FRAME} FROM frames WHERE session_id = ? ORDER BY id DESC LIMIT ?", (session_id, limit))
        return [_frame(r) for r in found]

    async def find_turn(self, session_id: str, request_key: str) -> TurnRecord | None:
        r = await self._one(f"SELECT {TURN} FROM turns WHERE session_id = ? AND request_key = ? ORDER BY id DESC LIMIT 1",
                            (session_id, request_key))
        return None if r is None else _turn(r)

    async def turns(self, session_id: str, limit: int = 1000) -> list[TurnRecord]:
        """The session's forwarded prompts, oldest first (the most recent `limit`)."""
        found = await self._rows(f"SELECT {TURN} FROM (SELECT * FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?) AS t ORDER BY id",
                                 (session_id, limit))
        return [_turn(r) for r in found]

    async def usage_totals(self, session_id: str) -> UsageTotals:
        return _totals((await self._rows(f"SELECT {SUMS} FROM turns t WHERE t.session_id = ?", (session_id,)))[0])

    async def find_response(self, response_id: str, scope: str) -> tuple[str, int, str] | None:
        """(session id, transcript position, chain hash) recorded for a response id, within `scope`."""
        r = await self._one("SELECT r.session_id, r.pos, r.chain_hash FROM responses r JOIN sessions s ON s.id = r.session_id "
                            "WHERE r.id = ? AND s.scope = ?", (response_id, scope))
        return None if r is None else (str(r[0]), int(r[1]), str(r[2]))

    async def find_items(self, session_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        """The stored JSON of the session's items with these ids (those it has)."""
        if not item_ids:
            return {}
        found = await self._rows(f"SELECT item_id, item FROM response_items WHERE session_id = ? AND {self.dialect.any('item_id')}",
                                 (session_id, self.dialect.many(dict.fromkeys(item_ids))))
        return {str(r[0]): str(r[1]) for r in found}

    async def find_session_by_head(self, scope: str, heads: Sequence[str]) -> str | None:
        """The session (in `scope`) whose transcript head is the latest of `heads` (ordered oldest first)."""
        if not heads:
            return None
        rank = {h: i for i, h in enumerate(heads)}
        found = await self._rows(f"SELECT id, head_hash FROM sessions WHERE scope = ? AND {self.dialect.any('head_hash')} "
                                 "ORDER BY updated_at DESC, id", (scope, self.dialect.many(rank)))
        best = max(found, key=lambda r: rank[r[1]], default=None)  # the first of the latest: most recently updated
        return None if best is None else str(best[0])

    async def find_session_by_chain(self, scope: str, chain_hash: str) -> list[tuple[str, int, int]]:
        """Sessions (in `scope`) whose transcript holds the prefix `chain_hash`: (id, position of
        that prefix's last message, transcript length), most recently updated first."""
        found = await self._rows(
            "SELECT t.session_id, t.pos, (SELECT count(*) FROM transcript x WHERE x.session_id = t.session_id) "
            "FROM transcript t JOIN sessions s ON s.id = t.session_id WHERE t.chain_hash = ? AND s.scope = ? "
            f"ORDER BY s.updated_at DESC, s.id LIMIT {CHAIN_MATCHES}", (chain_hash, scope))
        return [(r[0], int(r[1]), int(r[2])) for r in found]

    async def session_exists(self, session_id: str) -> bool:
        return await self._one("SELECT 1 FROM sessions WHERE id = ?", (session_id,)) is not None

    async def list_sessions(self, session_id: str | None = None) -> list[SessionSummary]:
        """Every session with its counts, newest first; or just `session_id`'s."""
        where, params = ("WHERE s.id = ? ", (session_id,)) if session_id is not None else ("", ())
        return [SessionSummary(*r) for r in await self._rows(SUMMARY + f"{where}ORDER BY s.updated_at DESC, s.id", params)]

    async def last_manifest(self, session_id: str) -> str | None:
        r = await self._one("SELECT last_manifest FROM sessions WHERE id = ?", (session_id,))
        return None if r is None else r[0]

    async def export_rows(self, session_id: str, tables: Sequence[str] = EXPORTED) -> dict[str, list[dict[str, Any]]]:
        """Every row of the session in `tables` (an export's: `EXPORTED`) by column name, read in one snapshot."""
        columns = await self.table_columns()
        found = await self._together([(f"SELECT {', '.join(columns[t])} FROM {t} WHERE session_id = ? ORDER BY {SESSION_TABLES[t]}",
                                       (session_id,)) for t in tables])
        return {t: [dict(zip(columns[t], r, strict=True)) for r in rows] for t, rows in zip(tables, found, strict=True)}

    async def page_sessions(self, prefix: str = "", after: str | None = None, limit: int = 100, contains: str = "") -> list[SessionSummary]:
        """Sessions whose id starts with `prefix` (and contains `contains` after it, case-insensitive),
        in id order, after the id `after`, at most `limit`."""
        # A range on the primary key (code point order), so the index does the filtering.
        where, params = ["s.id >= ?", "substr(s.id, 1, ?) = ?"], [prefix, len(prefix), prefix]
        if prefix and ord(prefix[-1]) < 0x10FFFF:
            where.append("s.id < ?")
            params.append(prefix[:-1] + chr(ord(prefix[-1]) + 1))
        if after is not None:
            where.append("s.id > ?")
            params.append(after)
        if contains:
            # Searched in what follows the prefix (the part of the id its owner chose and sees), ASCII case folded.
            lower = self.dialect.ascii_lower
            where.append(f"{self.dialect.position}({lower.format('substr(s.id, ?)')}, {lower.format('?')}) > 0")
            params += [len(prefix) + 1, contains]
        found = await self._rows(SUMMARY + f"WHERE {' AND '.join(where)} ORDER BY s.id LIMIT ?", (*params, limit))
        return [SessionSummary(*r) for r in found]

    async def expired_sessions(self, updated_before: float | None, keep_per_namespace: int | None, limit: int = 500) -> list[str]:
        """Ids to expire: not updated since `updated_before`, or beyond the newest `keep_per_namespace`
        of their namespace (the part of the id up to its first "/"; "" for ids without one), in id
        order, at most `limit`."""
        parts: list[str] = []
        params: list[Any] = []
        if updated_before is not None:
            parts.append("SELECT id FROM sessions WHERE updated_at < ?")
            params.append(updated_before)
        if keep_per_namespace is not None:
            parts.append(f"SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY substr(id, 1, {self.dialect.position}(id, '/')) "
                         "ORDER BY updated_at DESC, id DESC) AS rank FROM sessions) AS ranked WHERE rank > ?")
            params.append(keep_per_namespace)
        if not parts:
            return []
        return [r[0] for r in await self._rows(f"SELECT id FROM ({' UNION '.join(parts)}) AS expired ORDER BY id LIMIT ?", (*params, limit))]

    async def event_page(self, session_id: str, before: int | None, limit: int) -> list[LoggedEvent]:
        """The session's events before the id `before` (None: the newest), newest first, detached ones included."""
        found = await self._rows(f"SELECT {LOGGED_EVENT} FROM events WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                                 (session_id, _NEWEST if before is None else before, limit))
        return [_logged_event(r) for r in found]

    async def events_by_id(self, session_id: str, ids: Sequence[int]) -> list[LoggedEvent]:
        """The session's events with these ids, in id order (ids of other sessions are ignored)."""
        return [_logged_event(r) for r in await self._by_id(LOGGED_EVENT, "events", session_id, ids)]

    async def chunks_by_id(self, session_id: str, ids: Sequence[int]) -> list[ChunkRow]:
        return [ChunkRow._make(r) for r in await self._by_id(CHUNK, "chunks", session_id, ids)]

    async def _by_id(self, columns: str, table: str, session_id: str, ids: Sequence[int]) -> list[Sequence[Any]]:
        if not ids:
            return []
        return await self._rows(f"SELECT {columns} FROM {table} WHERE session_id = ? AND {self.dialect.any('id')} ORDER BY id",
                                (session_id, self.dialect.many(sorted(set(ids)))))

    async def artifact_page(self, session_id: str, after: int, limit: int) -> list[ArtifactInfo]:
        """The session's artifact versions with ids above `after`, in id order, without content."""
        found = await self._rows(f"SELECT {ARTIFACT}, length(content) FROM artifacts WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
                                 (session_id, after, limit))
        return [_artifact_info(r) for r in found]

    async def artifact_content(self, session_id: str, artifact_id: int) -> str | None:
        r = await self._one("SELECT content FROM artifacts WHERE session_id = ? AND id = ?", (session_id, artifact_id))
        return None if r is None else str(r[0])

    async def count_sessions(self, prefix: str = "") -> int:
        return int((await self._rows("SELECT count(*) FROM sessions WHERE substr(id, 1, ?) = ?", (len(prefix), prefix)))[0][0])

    async def usage_overall(self, prefix: str = "") -> UsageTotals:
        """Usage totals over every turn of the sessions whose id starts with `prefix`."""
        return _totals((await self._rows(f"SELECT {SUMS} FROM turns t WHERE substr(t.session_id, 1, ?) = ?", (len(prefix), prefix)))[0])

    async def usage_by_session(self, prefix: str, limit: int) -> list[SessionUsage]:
        """Per-session usage totals of the sessions (id starting with `prefix`) that forwarded
        anything, the most tokens forwarded first, at most `limit`."""
        found = await self._rows(
            f"SELECT t.session_id, s.updated_at, {SUMS} FROM turns t JOIN sessions s ON s.id = t.session_id "
            "WHERE substr(t.session_id, 1, ?) = ? GROUP BY t.session_id, s.updated_at "
            "ORDER BY sum(t.forwarded_tokens) DESC, t.session_id LIMIT ?", (len(prefix), prefix, limit))
        return [SessionUsage(r[0], float(r[1]), _totals(r[2:])) for r in found]

    async def last_message_before(self, session_id: str, event_id: int) -> tuple[int, str] | None:
        """(id, content) of the session's last user/assistant message before `event_id`."""
        r = await self._one("SELECT id, content FROM events WHERE session_id = ? AND id < ? AND role IN ('user', 'assistant') "
                            "ORDER BY id DESC LIMIT 1", (session_id, event_id))
        return None if r is None else (r[0], r[1])

    async def first_chunk_ids(self, event_ids: Sequence[int]) -> dict[int, int]:
        """The first (ord 0, non-probe) chunk of each event that has one."""
        if not event_ids:
            return {}
        found = await self._rows(f"SELECT event_id, min(id) FROM chunks WHERE {self.dialect.any('event_id')} AND parent_id IS NULL "
                                 "GROUP BY event_id", (self.dialect.many(event_ids),))
        return {r[0]: r[1] for r in found}

    async def latest_artifact(self, session_id: str, source: str) -> tuple[int, int, str] | None:
        """(id, version, content) of the newest snapshot of `source`, diffs excluded."""
        r = await self._one("SELECT id, version, content FROM artifacts WHERE session_id = ? AND source = ? AND kind != 'diff' "
                            "ORDER BY id DESC LIMIT 1", (session_id, source))
        return None if r is None else (r[0], r[1], r[2])

    async def artifact_exists(self, session_id: str, sha: str) -> bool:
        return await self._one("SELECT 1 FROM artifacts WHERE session_id = ? AND sha256 = ?", (session_id, sha)) is not None

    async def live_messages(self, session_id: str) -> list[tuple[int, str]]:
        """(event id, content) of the user and assistant messages on the transcript, in order."""
        found = await self._rows("SELECT e.id, e.content FROM transcript t JOIN events e ON e.id = t.event_id "
                                 "WHERE t.session_id = ? AND e.role IN ('user', 'assistant') ORDER BY t.pos", (session_id,))
        return [(int(r[0]), str(r[1])) for r in found]
