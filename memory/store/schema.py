"""The columns both stores' schemas share, written once: each backend's migrations put them between
its own id, reference and time columns (whose types differ). Text as SQLite's migrations have
always had it, so their SQL is unchanged to the byte."""

from __future__ import annotations

from typing import Final

__all__ = ["ARTIFACT_FIELDS", "EVENT_FIELDS", "CHUNK_FIELDS", "STATE_FIELDS", "FRAME_FIELDS", "TURN_FIELDS"]

ARTIFACT_FIELDS: Final = """\
    sha256        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT,
    version       INTEGER NOT NULL DEFAULT 1,
    content       TEXT NOT NULL,
    pinned        INTEGER NOT NULL DEFAULT 0,
"""
EVENT_FIELDS: Final = """\
    type          TEXT NOT NULL,
    role          TEXT,
    content       TEXT NOT NULL,
    source        TEXT,
    pinned        INTEGER NOT NULL DEFAULT 0,
    timestamp     TEXT,
    payload       TEXT NOT NULL DEFAULT '{}',
"""
CHUNK_FIELDS: Final = """\
    ord           INTEGER NOT NULL,
    text          TEXT NOT NULL,
    start_line    INTEGER NOT NULL,
    end_line      INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    tokens        INTEGER NOT NULL DEFAULT 0,
"""
STATE_FIELDS: Final = """\
    kind          TEXT NOT NULL,
    label         TEXT NOT NULL,
    subject       TEXT,
    text          TEXT NOT NULL,
    norm          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
"""
FRAME_FIELDS: Final = """\
    window_start  INTEGER NOT NULL,
    anchor        TEXT NOT NULL,
    encoding      TEXT NOT NULL,
    budget        INTEGER NOT NULL,
    base          TEXT NOT NULL,
    items         TEXT NOT NULL DEFAULT '[]',
"""
TURN_FIELDS: Final = """\
    tail_pos          INTEGER NOT NULL,
    evidence          TEXT,
    model             TEXT NOT NULL,
    mode              TEXT NOT NULL,
    sent_tokens       INTEGER NOT NULL,
    forwarded_tokens  INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    cached_tokens     INTEGER,
    completion_tokens INTEGER,
"""
