"""Reads for looking into memory (an inspector page, cost reports): pages of a session's event log
and artifact versions, items by id, usage summed per session. Read-only, and each one query, so
a page of a 10,000-event session costs what a page of a small one does."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

from memory.records import ArtifactInfo, ChunkRow, LoggedEvent, SessionUsage, UsageTotals
from memory.store.sqlite.reads import in_batches
from memory.store.sqlite.rows import event_from_row

__all__ = ["SqliteInspect"]

_SUMS = ("count(*), coalesce(sum(sent_tokens), 0), coalesce(sum(forwarded_tokens), 0), coalesce(sum(prompt_tokens), 0), "
         "coalesce(sum(cached_tokens), 0), coalesce(sum(completion_tokens), 0)")


def _event(row: sqlite3.Row) -> LoggedEvent:
    event = event_from_row(row)
    return LoggedEvent(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)}, detached=bool(row["detached"]),
                       created_at=row["created_at"])


def _totals(row: Sequence[Any]) -> UsageTotals:
    return UsageTotals(*(int(v) for v in row))


class SqliteInspect:
    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    async def _by_ids(self, sql: str, session_id: str, ids: Sequence[int]) -> list[sqlite3.Row]:
        # Sorted, so that batches ordered by id concatenate in id order.
        return await in_batches(self._all, sql, session_id, sorted(set(ids)))

    async def event_page(self, session_id: str, before: int | None, limit: int) -> list[LoggedEvent]:
        """The session's events before the id `before` (None: the newest), newest first, detached
        ones included."""
        rows = await self._all(
            "SELECT * FROM events WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (session_id, before if before is not None else 2**62, limit),
        )
        return [_event(r) for r in rows]

    async def events_by_id(self, session_id: str, ids: Sequence[int]) -> list[LoggedEvent]:
        """The session's events with these ids, in id order (ids of other sessions are ignored)."""
        return [_event(r) for r in await self._by_ids("SELECT * FROM events WHERE session_id = ? AND id IN ({marks}) ORDER BY id",
                                                       session_id, ids)]

    async def chunks_by_id(self, session_id: str, ids: Sequence[int]) -> list[ChunkRow]:
        rows = await self._by_ids("SELECT * FROM chunks WHERE session_id = ? AND id IN ({marks}) ORDER BY id", session_id, ids)
        return [ChunkRow(id=r["id"], event_id=r["event_id"], artifact_id=r["artifact_id"], ord=r["ord"], text=r["text"],
                         start_line=r["start_line"], end_line=r["end_line"], content_hash=r["content_hash"], parent_id=r["parent_id"],
                         tokens=r["tokens"]) for r in rows]

    async def artifact_page(self, session_id: str, after: int, limit: int) -> list[ArtifactInfo]:
        """The session's artifact versions with ids above `after`, in id order, without content."""
        rows = await self._all(
            "SELECT id, kind, source, version, pinned, previous_id, first_event_id, last_event_id, sha256, length(content) "
            "FROM artifacts WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
            (session_id, after, limit),
        )
        return [ArtifactInfo(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], int(r[9])) for r in rows]

    async def artifact_content(self, session_id: str, artifact_id: int) -> str | None:
        rows = await self._all("SELECT content FROM artifacts WHERE session_id = ? AND id = ?", (session_id, artifact_id))
        return str(rows[0][0]) if rows else None

    async def count_sessions(self, prefix: str = "") -> int:
        rows = await self._all("SELECT count(*) FROM sessions WHERE substr(id, 1, ?) = ?", (len(prefix), prefix))
        return int(rows[0][0])

    async def usage_overall(self, prefix: str = "") -> UsageTotals:
        """Usage totals over every turn of the sessions whose id starts with `prefix`."""
        rows = await self._all(f"SELECT {_SUMS} FROM turns WHERE substr(session_id, 1, ?) = ?", (len(prefix), prefix))
        return _totals(rows[0])

    async def usage_by_session(self, prefix: str, limit: int) -> list[SessionUsage]:
        """Per-session usage totals of the sessions (id starting with `prefix`) that forwarded
        anything, the most tokens forwarded first, at most `limit`."""
        rows = await self._all(
            f"SELECT t.session_id, s.updated_at, {_SUMS} FROM turns t JOIN sessions s ON s.id = t.session_id "
            "WHERE substr(t.session_id, 1, ?) = ? GROUP BY t.session_id ORDER BY sum(t.forwarded_tokens) DESC, t.session_id LIMIT ?",
            (len(prefix), prefix, limit),
        )
        return [SessionUsage(r[0], r[1], _totals(r[2:])) for r in rows]
