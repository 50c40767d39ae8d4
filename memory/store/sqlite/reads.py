"""Reads shared by the SQLite store (outside a transaction) and its transactions (inside one).

Each is one `execute_fetchall` call, so no cursor stays open across an await."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from memory.records import FrameRecord, StateItem, TranscriptEntry, TurnRecord, UsageTotals
from memory.store.sqlite.rows import frame_from_row, state_from_row, turn_from_row

__all__ = ["SqliteReads", "in_batches"]

# Keys per IN list, well within SQLite's limit on bound parameters.
BATCH = 500


async def in_batches(fetch: Callable[[str, Sequence[Any]], Awaitable[list[sqlite3.Row]]], sql: str, first: Any,
                     keys: Sequence[Any]) -> list[sqlite3.Row]:
    """The rows of `sql` (whose `{marks}` is an IN list) for `first` and each distinct key, fetched
    in batches of at most `BATCH` keys."""
    rows: list[sqlite3.Row] = []
    unique = list(dict.fromkeys(keys))
    for i in range(0, len(unique), BATCH):
        batch = unique[i : i + BATCH]
        rows += await fetch(sql.format(marks=",".join("?" * len(batch))), (first, *batch))
    return rows


class SqliteReads:
    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    async def state_items(self, session_id: str) -> list[StateItem]:
        return [state_from_row(r) for r in await self._all("SELECT * FROM state_items WHERE session_id = ? ORDER BY id", (session_id,))]

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        rows = await self._all(
            "SELECT t.pos, t.msg_hash, t.chain_hash, t.event_id, coalesce(e.role, 'user') FROM transcript t "
            "LEFT JOIN events e ON e.id = t.event_id WHERE t.session_id = ? ORDER BY t.pos",
            (session_id,),
        )
        return [TranscriptEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def frames(self, session_id: str, limit: int = 8) -> list[FrameRecord]:
        """The session's most recent frames, newest first."""
        rows = await self._all("SELECT * FROM frames WHERE session_id = ? ORDER BY id DESC LIMIT ?", (session_id, limit))
        return [frame_from_row(r) for r in rows]

    async def find_turn(self, session_id: str, request_key: str) -> TurnRecord | None:
        rows = await self._all(
            "SELECT * FROM turns WHERE session_id = ? AND request_key = ? ORDER BY id DESC LIMIT 1", (session_id, request_key)
        )
        return turn_from_row(rows[0]) if rows else None

    async def usage_totals(self, session_id: str) -> UsageTotals:
        rows = await self._all(
            "SELECT count(*), coalesce(sum(sent_tokens), 0), coalesce(sum(forwarded_tokens), 0), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(cached_tokens), 0), coalesce(sum(completion_tokens), 0) FROM turns WHERE session_id = ?",
            (session_id,),
        )
        return UsageTotals(*(int(v) for v in rows[0]))

    async def turns(self, session_id: str, limit: int = 1000) -> list[TurnRecord]:
        """The session's forwarded prompts, oldest first (the most recent `limit`)."""
        rows = await self._all(
            "SELECT * FROM (SELECT * FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id", (session_id, limit)
        )
        return [turn_from_row(r) for r in rows]

    async def find_response(self, response_id: str, scope: str) -> tuple[str, int, str] | None:
        """(session id, transcript position, chain hash) recorded for a response id, within `scope`."""
        rows = await self._all(
            "SELECT r.session_id, r.pos, r.chain_hash FROM responses r JOIN sessions s ON s.id = r.session_id "
            "WHERE r.id = ? AND s.scope = ?",
            (response_id, scope),
        )
        return (str(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    async def find_items(self, session_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        """The stored JSON of the session's items with these ids (those it has)."""
        rows = await in_batches(self._all, "SELECT item_id, item FROM response_items WHERE session_id = ? AND item_id IN ({marks})",
                                session_id, item_ids)
        return {str(r[0]): str(r[1]) for r in rows}
