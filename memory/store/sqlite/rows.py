"""Row conversions shared by the SQLite store and its transactions."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from memory.records import EventRow, FrameRecord, StateItem, TurnRecord

__all__ = ["event_from_row", "state_from_row", "session_key", "frame_from_row", "turn_from_row"]


def event_from_row(row: sqlite3.Row) -> EventRow:
    return EventRow(
        id=row["id"], type=row["type"], role=row["role"], content=row["content"], source=row["source"],
        pinned=bool(row["pinned"]), timestamp=row["timestamp"], payload=json.loads(row["payload"]),
        artifact_id=row["artifact_id"], parent_event_id=row["parent_event_id"],
    )


def state_from_row(row: sqlite3.Row) -> StateItem:
    return StateItem(
        id=row["id"], kind=row["kind"], label=row["label"], subject=row["subject"], text=row["text"],
        status=row["status"], superseded_by=row["superseded_by"], event_id=row["event_id"],
        source_events=tuple(json.loads(row["source_events"])),
    )


def session_key(session_id: str) -> str:
    """One FTS token standing for a session: 'k' + 24 hex digits of the id's sha256."""
    return "k" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]


def frame_from_row(row: sqlite3.Row) -> FrameRecord:
    return FrameRecord(
        id=row["id"], window_start=row["window_start"], anchor=row["anchor"], encoding=row["encoding"], budget=row["budget"],
        base=tuple(json.loads(row["base"])), items=tuple(json.loads(row["items"])),
    )


def turn_from_row(row: sqlite3.Row) -> TurnRecord:
    return TurnRecord(
        request_key=row["request_key"], frame_id=row["frame_id"], tail_pos=row["tail_pos"],
        evidence=json.loads(row["evidence"]) if row["evidence"] else None, model=row["model"], mode=row["mode"],
        sent_tokens=row["sent_tokens"], forwarded_tokens=row["forwarded_tokens"], prompt_tokens=row["prompt_tokens"],
        cached_tokens=row["cached_tokens"], completion_tokens=row["completion_tokens"], created_at=row["created_at"],
        cache_write_tokens=row["cache_write_tokens"],
    )
