"""Reads for looking into memory on PostgreSQL (an inspector page, cost reports), the twin of
`memory.store.sqlite.inspect`: pages of a session's event log and artifact versions, items by id, usage
summed per session. Read-only, and each one query, so a page of a 10,000-event session costs what
a page of a small one does. A `prefix` matches session ids by code point, as everywhere else in
the store (`sessions.id` is `COLLATE "C"`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from memory.store.postgres.reads import EVENT_COLUMNS, event_from_row
from memory.records import ArtifactInfo, ChunkRow, LoggedEvent, SessionUsage, UsageTotals

__all__ = ["PgInspect"]

_SUMS = ("count(*), coalesce(sum(t.sent_tokens), 0), coalesce(sum(t.forwarded_tokens), 0), coalesce(sum(t.prompt_tokens), 0), "
         "coalesce(sum(t.cached_tokens), 0), coalesce(sum(t.completion_tokens), 0)")
_LOGGED = f"{EVENT_COLUMNS}, detached, created_at"
_CHUNK = "id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, parent_id, tokens"


def _event(r: Sequence[Any]) -> LoggedEvent:
    event = event_from_row(r)
    return LoggedEvent(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)}, detached=bool(r[10]),
                       created_at=float(r[11]))


def _totals(r: Sequence[Any]) -> UsageTotals:
    return UsageTotals(*(int(v) for v in r))


class PgInspect:
    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def event_page(self, session_id: str, before: int | None, limit: int) -> list[LoggedEvent]:
        """The session's events before the id `before` (None: the newest), newest first, detached
        ones included."""
        rows = await self._rows(
            f"SELECT {_LOGGED} FROM events WHERE session_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (session_id, before if before is not None else 2**62, limit),
        )
        return [_event(r) for r in rows]

    async def events_by_id(self, session_id: str, ids: Sequence[int]) -> list[LoggedEvent]:
        """The session's events with these ids, in id order (ids of other sessions are ignored)."""
        if not ids:
            return []
        rows = await self._rows(f"SELECT {_LOGGED} FROM events WHERE session_id = %s AND id = ANY(%s) ORDER BY id",
                                (session_id, sorted(set(ids))))
        return [_event(r) for r in rows]

    async def chunks_by_id(self, session_id: str, ids: Sequence[int]) -> list[ChunkRow]:
        if not ids:
            return []
        rows = await self._rows(f"SELECT {_CHUNK} FROM chunks WHERE session_id = %s AND id = ANY(%s) ORDER BY id",
                                (session_id, sorted(set(ids))))
        return [ChunkRow(*r) for r in rows]

    async def artifact_page(self, session_id: str, after: int, limit: int) -> list[ArtifactInfo]:
        """The session's artifact versions with ids above `after`, in id order, without content."""
        rows = await self._rows(
            "SELECT id, kind, source, version, pinned, previous_id, first_event_id, last_event_id, sha256, length(content) "
            "FROM artifacts WHERE session_id = %s AND id > %s ORDER BY id LIMIT %s",
            (session_id, after, limit),
        )
        return [ArtifactInfo(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], int(r[9])) for r in rows]

    async def artifact_content(self, session_id: str, artifact_id: int) -> str | None:
        rows = await self._rows("SELECT content FROM artifacts WHERE session_id = %s AND id = %s", (session_id, artifact_id))
        return str(rows[0][0]) if rows else None

    async def count_sessions(self, prefix: str = "") -> int:
        rows = await self._rows("SELECT count(*) FROM sessions WHERE starts_with(id, %s)", (prefix,))
        return int(rows[0][0])

    async def usage_overall(self, prefix: str = "") -> UsageTotals:
        """Usage totals over every turn of the sessions whose id starts with `prefix`."""
        rows = await self._rows(f"SELECT {_SUMS} FROM turns t WHERE starts_with(t.session_id, %s)", (prefix,))
        return _totals(rows[0])

    async def usage_by_session(self, prefix: str, limit: int) -> list[SessionUsage]:
        """Per-session usage totals of the sessions (id starting with `prefix`) that forwarded
        anything, the most tokens forwarded first, at most `limit`."""
        rows = await self._rows(
            f"SELECT t.session_id, s.updated_at, {_SUMS} FROM turns t JOIN sessions s ON s.id = t.session_id "
            "WHERE starts_with(t.session_id, %s) GROUP BY t.session_id, s.updated_at "
            "ORDER BY sum(t.forwarded_tokens) DESC, t.session_id LIMIT %s",
            (prefix, limit),
        )
        return [SessionUsage(r[0], float(r[1]), _totals(r[2:])) for r in rows]
