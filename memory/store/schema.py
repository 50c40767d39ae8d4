"""What both stores' schemas share, written once: the tables (or the part of a table) whose
definition is the same in both but for the types named by `$` placeholders, in the text SQLite's
migrations have always had, so their SQL is unchanged to the byte (PostgreSQL's up to white space);
and how a module's migrations are numbered and named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from string import Template
from typing import Final

__all__ = ["ARTIFACTS", "EVENT_FIELDS", "CHUNK_FIELDS", "EMBEDDINGS", "STATE_ITEMS", "TRANSCRIPT", "FRAMES", "TURNS", "RESPONSES",
           "CACHE_WRITES", "EVENT_TOKENS", "VIEW_SNAPSHOTS", "numbered", "typed"]


def numbered(constants: Mapping[str, object]) -> list[tuple[int, str, str]]:
    """A migrations module's `Mnnn_NAME` constants (pass its `globals()`) as (number, name, SQL) in
    number order; a database records the name, `mnnn_name`. So adding a migration is adding its
    constant, and one defined but never listed cannot happen. Numbers must run 1, 2, 3... unbroken."""
    found = sorted((int(k[1:4]), k.lower(), v) for k, v in constants.items() if re.fullmatch(r"M\d{3}_[A-Z0-9_]+", k) and isinstance(v, str))
    if [n for n, _, _ in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3... without a gap or a repeat: {[name for _, name, _ in found]}")
    return found


def typed(sql: str, types: Mapping[str, str]) -> str:
    """`sql` with a backend's types in place of the placeholders: $row (the id and session columns
    of a table whose rows have their own id), $ref (an id), $int (any other 64-bit integer), $time (seconds since the epoch), $key
    (text compared by code point, as SQLite's TEXT always is), $blob (bytes), $rowid (SQLite's
    WITHOUT ROWID, after a table's closing parenthesis)."""
    return Template(sql).substitute(types)


# Each block below is part of migrations that have landed (tests/memory/test_store_schema.py pins
# their text): never edit one; a change is the next migration of each backend.
ARTIFACTS: Final = """
CREATE TABLE artifacts (
$row
    sha256        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT,
    version       INTEGER NOT NULL DEFAULT 1,
    content       TEXT NOT NULL,
    pinned        INTEGER NOT NULL DEFAULT 0,
    previous_id   $ref REFERENCES artifacts(id) ON DELETE SET NULL,
    first_event_id $ref,
    last_event_id  $ref,
    UNIQUE (session_id, sha256)
);
CREATE INDEX artifacts_source ON artifacts(session_id, source, id);
"""
EVENT_FIELDS: Final = """\
    type          TEXT NOT NULL,
    role          TEXT,
    content       TEXT NOT NULL,
    source        TEXT,
    pinned        INTEGER NOT NULL DEFAULT 0,
    timestamp     TEXT,
    payload       TEXT NOT NULL DEFAULT '{}',
    artifact_id   $ref REFERENCES artifacts(id) ON DELETE CASCADE,
    parent_event_id $ref REFERENCES events(id) ON DELETE CASCADE,
"""
CHUNK_FIELDS: Final = """\
    event_id      $ref REFERENCES events(id) ON DELETE CASCADE,
    artifact_id   $ref REFERENCES artifacts(id) ON DELETE CASCADE,
    ord           INTEGER NOT NULL,
    text          TEXT NOT NULL,
    start_line    INTEGER NOT NULL,
    end_line      INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    tokens        INTEGER NOT NULL DEFAULT 0,
"""
EMBEDDINGS: Final = """
CREATE TABLE embeddings (
    model         TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    vector        $blob NOT NULL,
    PRIMARY KEY (model, content_hash)
)$rowid;
"""
STATE_ITEMS: Final = """
CREATE TABLE state_items (
$row
    kind          TEXT NOT NULL,
    label         TEXT NOT NULL,
    subject       TEXT,
    text          TEXT NOT NULL,
    norm          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    superseded_by $ref REFERENCES state_items(id) ON DELETE SET NULL,
    event_id      $ref REFERENCES events(id) ON DELETE CASCADE,
    source_events TEXT NOT NULL DEFAULT '[]',
    created_at    $time NOT NULL,
    UNIQUE (session_id, label)
);
CREATE INDEX state_session ON state_items(session_id, kind, status);
"""
TRANSCRIPT: Final = """
CREATE TABLE transcript (
    session_id    $key NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    pos           INTEGER NOT NULL,
    msg_hash      TEXT NOT NULL,
    chain_hash    TEXT NOT NULL,
    event_id      $ref REFERENCES events(id) ON DELETE CASCADE,
    PRIMARY KEY (session_id, pos)
);
"""
FRAMES: Final = """
CREATE TABLE frames (
$row
    window_start  INTEGER NOT NULL,
    anchor        TEXT NOT NULL,
    encoding      TEXT NOT NULL,
    budget        INTEGER NOT NULL,
    base          TEXT NOT NULL,
    items         TEXT NOT NULL DEFAULT '[]',
    created_at    $time NOT NULL
);
CREATE INDEX frames_session ON frames(session_id, id);
"""
TURNS: Final = """\
    request_key       TEXT NOT NULL,
    frame_id          $ref REFERENCES frames(id) ON DELETE SET NULL,
    tail_pos          INTEGER NOT NULL,
    evidence          TEXT,
    model             TEXT NOT NULL,
    mode              TEXT NOT NULL,
    sent_tokens       INTEGER NOT NULL,
    forwarded_tokens  INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    cached_tokens     INTEGER,
    completion_tokens INTEGER,
    created_at        $time NOT NULL
);
CREATE INDEX turns_key ON turns(session_id, request_key);
"""
RESPONSES: Final = """
CREATE TABLE responses (
    id            TEXT PRIMARY KEY,
    session_id    $key NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    pos           INTEGER NOT NULL,
    chain_hash    TEXT NOT NULL,
    created_at    $time NOT NULL
);
CREATE INDEX responses_session ON responses(session_id);

CREATE TABLE response_items (
    session_id    $key NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    item_id       $key NOT NULL,
    item          TEXT NOT NULL,
    PRIMARY KEY (session_id, item_id)
);
"""
CACHE_WRITES: Final = """
ALTER TABLE turns ADD COLUMN cache_write_tokens INTEGER;
"""
EVENT_TOKENS: Final = """
ALTER TABLE events ADD COLUMN tokens INTEGER;
"""
VIEW_SNAPSHOTS: Final = """
CREATE TABLE view_snapshots (
    session_id    $key PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    generation    $int NOT NULL,
    model         TEXT NOT NULL,
    format        TEXT NOT NULL,
    max_event     $int NOT NULL,
    max_artifact  $int NOT NULL,
    max_chunk     $int NOT NULL,
    data          $blob NOT NULL,
    created_at    $time NOT NULL
);
"""
