"""Reads shared by the PostgreSQL store (a pooled connection) and its transactions (which see their
own writes), and the conversions from rows to records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from memory.records import EventRow, FrameRecord, StateItem, TranscriptEntry, TurnRecord, UsageTotals

__all__ = ["PgReads", "event_from_row", "state_from_row", "EVENT_COLUMNS", "STATE_COLUMNS"]

EVENT_COLUMNS = "id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id"
STATE_COLUMNS = "id, kind, label, subject, text, status, superseded_by, event_id, source_events"
_FRAME_COLUMNS = "id, window_start, anchor, encoding, budget, base, items"
_TURN_COLUMNS = ("request_key, frame_id, tail_pos, evidence, model, mode, sent_tokens, forwarded_tokens, prompt_tokens, cached_tokens, "
                 "completion_tokens, created_at, cache_write_tokens")


def event_from_row(r: Sequence[Any]) -> EventRow:
    return EventRow(id=r[0], type=r[1], role=r[2], content=r[3], source=r[4], pinned=bool(r[5]), timestamp=r[6],
                    payload=json.loads(r[7]), artifact_id=r[8], parent_event_id=r[9])


def state_from_row(r: Sequence[Any]) -> StateItem:
    return StateItem(id=r[0], kind=r[1], label=r[2], subject=r[3], text=r[4], status=r[5], superseded_by=r[6],
                     event_id=r[7], source_events=tuple(json.loads(r[8])))


def _frame(r: Sequence[Any]) -> FrameRecord:
    return FrameRecord(id=r[0], window_start=r[1], anchor=r[2], encoding=r[3], budget=r[4], base=tuple(json.loads(r[5])),
                       items=tuple(json.loads(r[6])))


def _turn(r: Sequence[Any]) -> TurnRecord:
    return TurnRecord(request_key=r[0], frame_id=r[1], tail_pos=r[2], evidence=json.loads(r[3]) if r[3] else None, model=r[4],
                      mode=r[5], sent_tokens=r[6], forwarded_tokens=r[7], prompt_tokens=r[8], cached_tokens=r[9],
                      completion_tokens=r[10], created_at=r[11], cache_write_tokens=r[12])


class PgReads:
    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def state_items(self, session_id: str) -> list[StateItem]:
        rows = await self._rows(f"SELECT {STATE_COLUMNS} FROM state_items WHERE session_id = %s ORDER BY id", (session_id,))
        return [state_from_row(r) for r in rows]

    async def transcript(self, session_id: str) -> list[TranscriptEntry]:
        rows = await self._rows(
            "SELECT t.pos, t.msg_hash, t.chain_hash, t.event_id, coalesce(e.role, 'user') FROM transcript t "
            "LEFT JOIN events e ON e.id = t.event_id WHERE t.session_id = %s ORDER BY t.pos",
            (session_id,),
        )
        return [TranscriptEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def frames(self, session_id: str, limit: int = 8) -> list[FrameRecord]:
        """The session's most recent frames, newest first."""
        rows = await self._rows(f"SELECT {_FRAME_COLUMNS} FROM frames WHERE session_id = %s ORDER BY id DESC LIMIT %s", (session_id, limit))
        return [_frame(r) for r in rows]

    async def find_turn(self, session_id: str, request_key: str) -> TurnRecord | None:
        rows = await self._rows(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id = %s AND request_key = %s ORDER BY id DESC LIMIT 1", (session_id, request_key)
        )
        return _turn(rows[0]) if rows else None

    async def usage_totals(self, session_id: str) -> UsageTotals:
        rows = await self._rows(
            "SELECT count(*), coalesce(sum(sent_tokens), 0), coalesce(sum(forwarded_tokens), 0), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(cached_tokens), 0), coalesce(sum(completion_tokens), 0) FROM turns WHERE session_id = %s",
            (session_id,),
        )
        return UsageTotals(*(int(v) for v in rows[0]))

    async def turns(self, session_id: str, limit: int = 1000) -> list[TurnRecord]:
        """The session's forwarded prompts, oldest first (the most recent `limit`)."""
        rows = await self._rows(
            f"SELECT {_TURN_COLUMNS} FROM (SELECT * FROM turns WHERE session_id = %s ORDER BY id DESC LIMIT %s) AS t ORDER BY id",
            (session_id, limit),
        )
        return [_turn(r) for r in rows]

    async def find_response(self, response_id: str, scope: str) -> tuple[str, int, str] | None:
        """(session id, transcript position, chain hash) recorded for a response id, within `scope`."""
        rows = await self._rows(
            "SELECT r.session_id, r.pos, r.chain_hash FROM responses r JOIN sessions s ON s.id = r.session_id "
            "WHERE r.id = %s AND s.scope = %s",
            (response_id, scope),
        )
        return (str(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    async def find_items(self, session_id: str, item_ids: Sequence[str]) -> dict[str, str]:
        """The stored JSON of the session's items with these ids (those it has)."""
        unique = list(dict.fromkeys(item_ids))
        if not unique:
            return {}
        rows = await self._rows(
            "SELECT item_id, item FROM response_items WHERE session_id = %s AND item_id = ANY(%s)", (session_id, unique)
        )
        return {str(r[0]): str(r[1]) for r in rows}
