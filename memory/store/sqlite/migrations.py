"""Schema as numbered migrations. Each is applied once, in a transaction, and recorded in
`_migrations`. Never edit a migration after it lands: add the next number instead (both stores)."""

from __future__ import annotations

from typing import Final

from memory.store.schema import (ARTIFACTS, CACHE_WRITES, CHUNK_FIELDS, EMBEDDINGS, EVENT_FIELDS, EVENT_TOKENS, FRAMES, RESPONSES,
                                 STATE_ITEMS, TRANSCRIPT, TURNS, VIEW_SNAPSHOTS, VIEW_SNAPSHOT_PARTS, SQLITE, numbered)

__all__ = ["MIGRATIONS"]

M001_INITIAL: Final = SQLITE.typed("""
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    scope         TEXT NOT NULL DEFAULT '',
    head_hash     TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    last_manifest TEXT
);
CREATE INDEX sessions_head ON sessions(scope, head_hash);
""" + ARTIFACTS + """
CREATE TABLE events (
$row
""" + EVENT_FIELDS + """\
    created_at    REAL NOT NULL
);
CREATE INDEX events_session ON events(session_id, id);

CREATE TABLE chunks (
$row
""" + CHUNK_FIELDS + """\
    session_key   TEXT NOT NULL,
    parent_id     INTEGER REFERENCES chunks(id) ON DELETE CASCADE
);
CREATE INDEX chunks_session ON chunks(session_id, id);
CREATE INDEX chunks_hash ON chunks(content_hash);

-- session_key (a hash of the session id, one token) lets a query intersect the session's posting
-- list inside FTS5 instead of scoring every session's matches and filtering afterwards.
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, session_key, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, session_key) VALUES (new.id, new.text, new.session_key);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, session_key) VALUES ('delete', old.id, old.text, old.session_key);
END;
""" + EMBEDDINGS + STATE_ITEMS + TRANSCRIPT)

# Cache-stable prompts (frames), retries (turns) and branches (detached events):
# - an edited or regenerated message leaves the transcript; its events stay in the log, marked
#   detached, and out of retrieval; `generation` tells in-process views to reload;
# - `frames` hold the stable top of the prompt the proxy forwards (state block and the start of the
#   verbatim window), so consecutive prompts share a byte-identical prefix across restarts and
#   instances;
# - `turns` record each forwarded prompt: what a retry must reuse, and the tokens sent, forwarded
#   and cached by the provider.
M002_FRAMES_TURNS: Final = SQLITE.typed("""
ALTER TABLE events ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE INDEX transcript_chain ON transcript(chain_hash);
CREATE INDEX events_parent ON events(parent_event_id);
""" + FRAMES + """
CREATE TABLE turns (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
""" + TURNS)

# Every column a foreign key points through gets an index: erasing a session cascades over its
# events, chunks and artifacts, and without these each deleted row scanned whole tables for rows
# referring to it (erasing one 20-message session among 300 took ~350 ms, nearly all of it here).
M003_FOREIGN_KEY_INDEXES: Final = """
CREATE INDEX chunks_event ON chunks(event_id);
CREATE INDEX chunks_artifact ON chunks(artifact_id);
CREATE INDEX chunks_parent ON chunks(parent_id);
CREATE INDEX events_artifact ON events(artifact_id);
CREATE INDEX artifacts_previous ON artifacts(previous_id);
CREATE INDEX state_event ON state_items(event_id);
CREATE INDEX state_superseded ON state_items(superseded_by);
CREATE INDEX transcript_event ON transcript(event_id);
CREATE INDEX turns_frame ON turns(frame_id);
"""

# The Responses API's own references, served from memory:
# - `responses`: each response id the proxy answered for a session, with the transcript position
#   its reply ends at and the chain hash of the transcript up to there (a later edit that rewrites
#   that prefix makes the id stale, and it is then treated as unknown). A request naming one with
#   `previous_response_id` continues the conversation from there without the provider's storage.
# - `response_items`: items with an id (the output items of replies, and input items), redacted as
#   everything stored, for `item_reference` inputs.
M004_RESPONSES: Final = SQLITE.typed(RESPONSES)

# - `turns.cache_write_tokens`: prompt tokens the provider wrote to its cache for the turn (Anthropic
#   bills them apart, at 1.25x; `cached_tokens` stays what it read from the cache).
M005_CACHE_WRITES: Final = CACHE_WRITES

# - `events.tokens`: a message's token count under `memory.recall.tokens.STORED_ENCODING` (OpenAI's
#   chat formula, as the layout counts it), taken at ingest: a view rebuilt after a restart reads it
#   instead of tokenising the whole history again (1.5 s of a 10,000-event session's first compile).
#   NULL for what was stored before and for events that are not messages; a view counts those when
#   it loads them, and the runtime writes the counts back.
M006_EVENT_TOKENS: Final = EVENT_TOKENS

# - `view_snapshots`: a session's in-process view as it was at its marks (`memory.recall.snapshot`),
#   so a restart reads one row instead of every event and chunk. Derived and never exported: a
#   snapshot whose generation, model, format or marks do not fit is ignored (and replaced later);
#   deleting every row changes nothing but the first compile's speed.
M007_VIEW_SNAPSHOTS: Final = SQLITE.typed(VIEW_SNAPSHOTS)

# - `view_snapshot_parts`: the rest of a snapshot, ~1 MiB a part, after its head's `data`: one blob
#   of a 100,000-event view (40 MB) doubled the memory of saving and reading it. They belong to
#   their snapshot (so export and import skip them, and a snapshot replaced drops its parts).
M008_VIEW_SNAPSHOT_PARTS: Final = SQLITE.typed(VIEW_SNAPSHOT_PARTS)

# (number, name, sql), from the constants above; append only.
MIGRATIONS: Final = numbered(globals())
