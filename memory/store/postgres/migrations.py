"""Schema of the PostgreSQL store as numbered migrations, the twin of `memory.store.sqlite.migrations`.

Applied as SQLite's are, while the migrating process holds a PostgreSQL advisory lock: two
instances starting together never race, the second finds the work done. Everything lives in one
schema (`memory_runtime` unless the store is told otherwise), so the store can share a database
with an application's own `sessions` or `events` tables. Tables, columns and their meaning match
the SQLite schema (this m001 holds what SQLite's m001 to m003 hold; exports are identical), plus
what PostgreSQL needs in place of FTS5: a `tsvector` per chunk, its token count, and per-session
BM25 counters.
"""

from __future__ import annotations

from typing import Final

from memory.store.schema import (ARTIFACTS, CACHE_WRITES, CHUNK_FIELDS, EMBEDDINGS, EVENT_FIELDS, EVENT_TOKENS, FRAMES, RESPONSES,
                                 STATE_ITEMS, TRANSCRIPT, TURNS, VIEW_SNAPSHOTS, VIEW_SNAPSHOT_PARTS, POSTGRES, numbered)

__all__ = ["MIGRATIONS"]

M001_INITIAL: Final = POSTGRES.typed("""
CREATE TEXT SEARCH DICTIONARY memory_porter (TEMPLATE = pg_catalog.snowball, Language = porter);
CREATE TEXT SEARCH CONFIGURATION memory_fts (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION memory_fts
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part, numword, numhword, hword_numpart
    WITH memory_porter;

-- Session ids compare by code point, as in SQLite: pages and prefixes of the session list agree.
-- A session's generation changes whenever its in-process views must reload (messages detached by
-- an edit or a retry). Drawn from one sequence, so a session erased and created again never reuses
-- a generation some instance's view was built at: erase reaches every instance on its next touch.
CREATE SEQUENCE session_generation;

CREATE TABLE sessions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    scope         TEXT NOT NULL DEFAULT '',
    head_hash     TEXT,
    created_at    DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    last_manifest TEXT,
    generation    BIGINT NOT NULL DEFAULT nextval('session_generation'),
    fts_docs      BIGINT NOT NULL DEFAULT 0,
    fts_tokens    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_head ON sessions(scope, head_hash);
CREATE INDEX sessions_updated ON sessions(updated_at DESC, id);

""" + ARTIFACTS + """\
CREATE INDEX artifacts_session ON artifacts(session_id, id);
CREATE INDEX artifacts_previous ON artifacts(previous_id) WHERE previous_id IS NOT NULL;

CREATE TABLE events (
$row
""" + EVENT_FIELDS + """\
    created_at      $time NOT NULL,
    detached        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_session ON events(session_id, id);
CREATE INDEX events_artifact ON events(artifact_id) WHERE artifact_id IS NOT NULL;
CREATE INDEX events_parent ON events(parent_event_id) WHERE parent_event_id IS NOT NULL;

CREATE TABLE chunks (
$row
""" + CHUNK_FIELDS + """\
    parent_id    BIGINT REFERENCES chunks(id) ON DELETE CASCADE,
    doc_len      INTEGER NOT NULL,
    tsv          TSVECTOR NOT NULL
);
CREATE INDEX chunks_session ON chunks(session_id, id);
CREATE INDEX chunks_hash ON chunks(content_hash);
CREATE INDEX chunks_event ON chunks(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX chunks_artifact ON chunks(artifact_id) WHERE artifact_id IS NOT NULL;
CREATE INDEX chunks_parent ON chunks(parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX chunks_fts ON chunks USING gin (tsv);
""" + EMBEDDINGS + STATE_ITEMS + """\
CREATE INDEX state_superseded ON state_items(superseded_by) WHERE superseded_by IS NOT NULL;
CREATE INDEX state_event ON state_items(event_id) WHERE event_id IS NOT NULL;
""" + TRANSCRIPT + """\
CREATE INDEX transcript_event ON transcript(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX transcript_chain ON transcript(chain_hash);

-- The stable top of a session's forwarded prompts, and each forwarded prompt (see memory.turn.turns).
""" + FRAMES + """
CREATE TABLE turns (
$row
""" + TURNS + """\
CREATE INDEX turns_session ON turns(session_id, id);
CREATE INDEX turns_frame ON turns(frame_id) WHERE frame_id IS NOT NULL;

-- Secrets every instance must share (the proxy's caller-identity key), created by the first one.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
""")

# The Responses API's references served from memory (SQLite's m004 says what they hold). Item ids
# compare by code point, as in SQLite (exports list them in that order).
M002_RESPONSES: Final = POSTGRES.typed(RESPONSES)

# `turns.cache_write_tokens`: prompt tokens the provider wrote to its cache (Anthropic bills them apart).
M003_CACHE_WRITES: Final = CACHE_WRITES

# Rows per full-text lexeme, per session: what the full-text query's rare-word trimming reads
# (`memory.store.fulltext`; SQLite reads its FTS5 index's vocabulary instead). Kept as chunks are
# written (the chunk insert adds its lexemes' counts), filled here for the chunks already stored;
# a session's rows go with it (cascade) and move with a rename (every `session_id` table does).
# Index state, like the tsvector it counts: not exported.
M004_FTS_TERMS: Final = """
CREATE TABLE fts_terms (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lexeme     TEXT NOT NULL,
    docs       BIGINT NOT NULL,
    PRIMARY KEY (session_id, lexeme)
);
INSERT INTO fts_terms(session_id, lexeme, docs)
SELECT c.session_id, u.lexeme, count(*) FROM chunks c, unnest(c.tsv) AS u
WHERE left(u.lexeme, 1) <> '#' GROUP BY c.session_id, u.lexeme;
"""

# `events.tokens`: a message's token count taken at ingest, NULL until counted (SQLite's m006 says why).
M005_EVENT_TOKENS: Final = EVENT_TOKENS

# Postings: each lexeme's rows in a session, with its occurrences there and the row's length, in
# lexeme order under the primary key (which carries both, so BM25 reads them from the index alone;
# why a tsvector will not do: `memory.store.postgres.fts`). Kept as chunks are written and filled
# here as `fts_terms` is (m004), and like it index state: not exported. Chunks leave only with their
# session, so the session's cascade (and a rename's update of every `session_id` table) keeps
# postings and chunks together; no foreign key to chunks, which would cost an index on chunk_id for
# nothing. An index-only scan reads the table for every row on a page not yet marked all-visible by
# (auto)vacuum, and the pages written last are the active sessions': autovacuum visits after inserts
# of 1% of the table (the default, 20%, leaves a fifth unmarked).
M006_FTS_POSTINGS: Final = """
CREATE TABLE fts_postings (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lexeme     TEXT NOT NULL,
    chunk_id   BIGINT NOT NULL,
    tf         INTEGER NOT NULL,
    doc_len    INTEGER NOT NULL,
    PRIMARY KEY (session_id, lexeme, chunk_id) INCLUDE (tf, doc_len)
) WITH (autovacuum_vacuum_insert_scale_factor = 0.01);
INSERT INTO fts_postings(session_id, lexeme, chunk_id, tf, doc_len)
SELECT c.session_id, u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u
WHERE left(u.lexeme, 1) <> '#' ORDER BY 1, 2, 3;
"""

# `view_snapshots`: a session's view as it was at its marks, derived (SQLite's m007 says why).
M007_VIEW_SNAPSHOTS: Final = POSTGRES.typed(VIEW_SNAPSHOTS)

# `view_snapshot_parts`: the rest of a snapshot, in parts (SQLite's m008 says why).
M008_VIEW_SNAPSHOT_PARTS: Final = POSTGRES.typed(VIEW_SNAPSHOT_PARTS)

# (number, name, sql), from the constants above; append only. PostgreSQL runs a multi-statement string in one call.
MIGRATIONS: Final = numbered(globals())
