"""Every read of the store, written once for both backends (and their transactions, which see
their own writes). A backend supplies `_rows` (one statement) and its dialect.

Reads for looking into memory (an inspector page, cost reports) are here too: read-only, and one
query each, so a page of a 10,000-event session costs what a page of a small one does. A `prefix`
matches session ids by code point in both stores (PostgreSQL's `sessions.id` is `COLLATE "C"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memory.records import (ArtifactInfo, ChunkRow, FrameRecord, LoggedEvent, SessionDelta, SessionSummary, SessionUsage, StateItem,
                            TranscriptEntry, TurnRecord, UsageTotals)
from memory.store import rows as R
from memory.store.dialect import Dialect

__all__ = ["SqlReads"]

# Sessions listed by find_session_by_chain: a prefix shared by more is not worth telling apart.
CHAIN_MATCHES = 20
_NEWEST = 2**62  # an event id above every real one


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
            (f"SELECT {R.EVENT} FROM events WHERE session_id = ? AND id > ? AND detached = 0 ORDER BY id", (session_id, after_event)),
            (f"SELECT {R.ARTIFACT} FROM artifacts a WHERE session_id = ? AND (id > ? OR last_event_id > ?) "
             "AND EXISTS (SELECT 1 FROM events e WHERE (e.artifact_id = a.id OR e.id = a.first_event_id) AND e.detached = 0) ORDER BY id",
             (session_id, after_artifact, after_event)),
            (f"SELECT {R.CHUNK} FROM chunks WHERE session_id = ? AND id > ? ORDER BY id" + ("" if chunk_limit is None else " LIMIT ?"),
             (session_id, after_chunk) + (() if chunk_limit is None else (chunk_limit,))),
        ])
        return SessionDelta([R.event(r) for r in events], [R.artifact(r) for r in artifacts], [ChunkRow._make(r) for r in chunks])

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
        return [R.state(r) for r in await self._rows(f"SELECT {R.STATE} FROM state_items WHERE session_id = ? ORDER BY id", (session_id,))]

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        found = await self._rows(
            "SELECT t.pos, t.msg_hash, t.chain_hash, t.event_id, coalesce(e.role, 'user') FROM transcript t "
            "LEFT JOIN events e ON e.id = t.event_id WHERE t.session_id = ? ORDER BY t.pos", (session_id,))
        return [TranscriptEntry(r[0], r[1], r[2], r[3], r[4]) for r in found]

    async def frames(self, session_id: str, limit: int = 8) -> list[FrameRecord]:
        """The session's most recent frames, newest first."""
        found = await self._rows(f"SELECT {R.FRAME} FROM frames WHERE session_id = ? ORDER BY id DESC LIMIT ?", (session_id, limit))
        return [R.frame(r) for r in found]

    async def find_turn(self, session_id: str, request_key: str) -> TurnRecord | None:
        r = await self._one(f"SELECT {R.TURN} FROM turns WHERE session_id = ? AND request_key = ? ORDER BY id DESC LIMIT 1",
                            (session_id, request_key))
        return None if r is None else R.turn(r)

    async def turns(self, session_id: str, limit: int = 1000) -> list[TurnRecord]:
        """The session's forwarded prompts, oldest first (the most recent `limit`)."""
        found = await self._rows(f"SELECT {R.TURN} FROM (SELECT * FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?) AS t ORDER BY id",
                                 (session_id, limit))
        return [R.turn(r) for r in found]

    async def usage_totals(self, session_id: str) -> UsageTotals:
        return R.totals((await self._rows(f"SELECT {R.SUMS} FROM turns t WHERE t.session_id = ?", (session_id,)))[0])

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
        return [SessionSummary(*r) for r in await self._rows(R.SUMMARY + f"{where}ORDER BY s.updated_at DESC, s.id", params)]

    async def last_manifest(self, session_id: str) -> str | None:
        r = await self._one("SELECT last_manifest FROM sessions WHERE id = ?", (session_id,))
        return None if r is None else r[0]

    async def export_rows(self, session_id: str, tables: Sequence[str] = R.EXPORTED) -> dict[str, list[dict[str, Any]]]:
        """Every row of the session in `tables` (an export's: `rows.EXPORTED`) by column name, read in one snapshot."""
        columns = await self.table_columns()
        found = await self._together([(f"SELECT {', '.join(columns[t])} FROM {t} WHERE session_id = ? ORDER BY {R.SESSION_TABLES[t]}",
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
        found = await self._rows(R.SUMMARY + f"WHERE {' AND '.join(where)} ORDER BY s.id LIMIT ?", (*params, limit))
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
        found = await self._rows(f"SELECT {R.LOGGED_EVENT} FROM events WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                                 (session_id, _NEWEST if before is None else before, limit))
        return [R.logged_event(r) for r in found]

    async def events_by_id(self, session_id: str, ids: Sequence[int]) -> list[LoggedEvent]:
        """The session's events with these ids, in id order (ids of other sessions are ignored)."""
        return [R.logged_event(r) for r in await self._by_id(R.LOGGED_EVENT, "events", session_id, ids)]

    async def chunks_by_id(self, session_id: str, ids: Sequence[int]) -> list[ChunkRow]:
        return [ChunkRow._make(r) for r in await self._by_id(R.CHUNK, "chunks", session_id, ids)]

    async def _by_id(self, columns: str, table: str, session_id: str, ids: Sequence[int]) -> list[Sequence[Any]]:
        if not ids:
            return []
        return await self._rows(f"SELECT {columns} FROM {table} WHERE session_id = ? AND {self.dialect.any('id')} ORDER BY id",
                                (session_id, self.dialect.many(sorted(set(ids)))))

    async def artifact_page(self, session_id: str, after: int, limit: int) -> list[ArtifactInfo]:
        """The session's artifact versions with ids above `after`, in id order, without content."""
        found = await self._rows(f"SELECT {R.ARTIFACT}, length(content) FROM artifacts WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
                                 (session_id, after, limit))
        return [R.artifact_info(r) for r in found]

    async def artifact_content(self, session_id: str, artifact_id: int) -> str | None:
        r = await self._one("SELECT content FROM artifacts WHERE session_id = ? AND id = ?", (session_id, artifact_id))
        return None if r is None else str(r[0])

    async def count_sessions(self, prefix: str = "") -> int:
        return int((await self._rows("SELECT count(*) FROM sessions WHERE substr(id, 1, ?) = ?", (len(prefix), prefix)))[0][0])

    async def usage_overall(self, prefix: str = "") -> UsageTotals:
        """Usage totals over every turn of the sessions whose id starts with `prefix`."""
        return R.totals((await self._rows(f"SELECT {R.SUMS} FROM turns t WHERE substr(t.session_id, 1, ?) = ?", (len(prefix), prefix)))[0])

    async def usage_by_session(self, prefix: str, limit: int) -> list[SessionUsage]:
        """Per-session usage totals of the sessions (id starting with `prefix`) that forwarded
        anything, the most tokens forwarded first, at most `limit`."""
        found = await self._rows(
            f"SELECT t.session_id, s.updated_at, {R.SUMS} FROM turns t JOIN sessions s ON s.id = t.session_id "
            "WHERE substr(t.session_id, 1, ?) = ? GROUP BY t.session_id, s.updated_at "
            "ORDER BY sum(t.forwarded_tokens) DESC, t.session_id LIMIT ?", (len(prefix), prefix, limit))
        return [SessionUsage(r[0], float(r[1]), R.totals(r[2:])) for r in found]
