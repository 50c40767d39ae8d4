"""What both stores' schemas share, written once: the columns each backend's migrations put between
its own id, reference and time columns (whose types differ), as text SQLite's migrations have always
had, so their SQL is unchanged to the byte; and how a module's migrations are numbered and named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["ARTIFACT_FIELDS", "EVENT_FIELDS", "CHUNK_FIELDS", "STATE_FIELDS", "FRAME_FIELDS", "TURN_FIELDS", "numbered"]


def numbered(constants: Mapping[str, object]) -> list[tuple[int, str, str]]:
    """A migrations module's `Mnnn_NAME` constants (pass its `globals()`) as (number, name, SQL) in
    number order; a database records the name, `mnnn_name`. So adding a migration is adding its
    constant, and one defined but never listed cannot happen. Numbers must run 1, 2, 3... unbroken."""
    found = sorted((int(k[1:4]), k.lower(), v) for k, v in constants.items() if re.fullmatch(r"M\d{3}_[A-Z0-9_]+", k) and isinstance(v, str))
    if [n for n, _, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3... without a gap or a repeat: {[name for _, name, _ in found]}")
    return found

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
