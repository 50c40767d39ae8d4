"""Rows to records, written once for both stores: a read selects the columns named here, in this
order, and one function turns such a row into its record (a record whose fields are those columns
in order, `ChunkRow` or `SessionSummary`, is built from the row itself). Also the tables a session
owns (what an export, a rename and the import from SQLite walk) and the full-text token of a session."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from memory.records import ArtifactInfo, ArtifactRow, EventRow, FrameRecord, LoggedEvent, StateItem, TurnRecord, UsageTotals

__all__ = ["EVENT", "LOGGED_EVENT", "ARTIFACT", "CHUNK", "STATE", "FRAME", "TURN", "SUMS", "SUMMARY", "SESSION_TABLES", "EXPORTED",
           "event", "logged_event", "artifact", "artifact_info", "state", "frame", "turn", "totals", "session_key"]

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


def event(r: Row) -> EventRow:
    # Nearly every payload is "{}": decoding 100,000 of them took ~1 s of a view's load.
    return EventRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], {} if r[7] == "{}" else json.loads(r[7]), r[8], r[9], r[10])


def logged_event(r: Row) -> LoggedEvent:
    return LoggedEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], json.loads(r[7]), r[8], r[9], r[10], bool(r[11]), float(r[12]))


def artifact(r: Row) -> ArtifactRow:
    return ArtifactRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8])


def artifact_info(r: Row) -> ArtifactInfo:
    """An `ARTIFACT` row followed by the content's length."""
    return ArtifactInfo(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], int(r[9]))


def state(r: Row) -> StateItem:
    return StateItem(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(json.loads(r[8])))


def frame(r: Row) -> FrameRecord:
    return FrameRecord(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), tuple(json.loads(r[6])))


def turn(r: Row) -> TurnRecord:
    return TurnRecord(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12])


def totals(r: Row) -> UsageTotals:
    return UsageTotals(*(int(v) for v in r))


def session_key(session_id: str) -> str:
    """The one full-text token that stands for a session in every row of it ('k' + 24 hex digits
    of the id's sha256), so a search intersects the session's posting list inside the index."""
    return "k" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]
