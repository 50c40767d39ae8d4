"""The two stores' schemas: the same tables with the same columns, but for what each one's
full-text search needs; and migrations that never change once they have landed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from memory.store.postgres.migrations import MIGRATIONS as PG_MIGRATIONS
from memory.store.postgres.store import PgStore
from memory.store.reads import SESSION_TABLES
from memory.store.schema import numbered
from memory.store.sqlite.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from memory.store.sqlite.store import SqliteStore

# What only one backend has, and why: SQLite keys FTS5 rows by a session token kept on the chunk;
# PostgreSQL keeps a tsvector and its length per chunk, BM25 counters per session, rows per lexeme
# and postings (what FTS5's vocabulary table and index give SQLite: index state, not a session's
# data), and the secrets every instance shares.
ONLY_SQLITE = {("chunks", "session_key")}
ONLY_POSTGRES = {("chunks", "doc_len"), ("chunks", "tsv"), ("sessions", "fts_docs"), ("sessions", "fts_tokens"),
                 ("fts_terms", "session_id"), ("fts_terms", "lexeme"), ("fts_terms", "docs"),
                 ("fts_postings", "session_id"), ("fts_postings", "lexeme"), ("fts_postings", "chunk_id"), ("fts_postings", "tf"),
                 ("fts_postings", "doc_len"),
                 ("secrets", "name"), ("secrets", "value"), ("secrets", "created_at")}


async def test_both_stores_have_the_same_tables_and_columns(tmp_path: Path, pg_url: str) -> None:
    sqlite, pg = SqliteStore(tmp_path / "m.sqlite"), PgStore(pg_url)
    await sqlite.open()
    await pg.open()
    try:
        lite = {(t, c) for t, columns in (await sqlite.table_columns()).items() for c in columns}
        post = {(t, c) for t, columns in (await pg.table_columns()).items() for c in columns}
    finally:
        await sqlite.close()
        await pg.close()
    assert lite - post == ONLY_SQLITE
    assert post - lite == ONLY_POSTGRES
    # Every table a session owns is one the export, the rename and the import know about.
    assert {t for t, c in lite if c == "session_id"} == set(SESSION_TABLES)


def test_landed_migrations_never_change() -> None:
    """A migration is never edited once it has landed (databases out there recorded it as applied):
    the next change is the next number. SQLite's text is pinned to the byte, PostgreSQL's up to
    white space: every landed one, since the table descriptions both share (`memory.store.schema`)
    are part of several."""
    lite = [(n, name, hashlib.sha256(sql.encode()).hexdigest()[:16]) for n, name, sql in SQLITE_MIGRATIONS]
    post = [(n, name, hashlib.sha256(" ".join(sql.split()).encode()).hexdigest()[:16]) for n, name, sql in PG_MIGRATIONS]
    assert lite[:7] == [(1, "m001_initial", "0a6076a1655b782a"), (2, "m002_frames_turns", "b1ac606e6fb69423"),
                        (3, "m003_foreign_key_indexes", "c28eec3af87f59bf"), (4, "m004_responses", "a48dc8368ed61148"),
                        (5, "m005_cache_writes", "42656ed3ac035777"), (6, "m006_event_tokens", "7de28fb6c7b9aabd"),
                        (7, "m007_view_snapshots", "d0eaf4ef9635c9d4")]
    assert post[:7] == [(1, "m001_initial", "05541763cc0b0013"), (2, "m002_responses", "518e61504e60b2ff"),
                        (3, "m003_cache_writes", "b67ae19ca17a8d44"), (4, "m004_fts_terms", "87f9aded47ef4151"),
                        (5, "m005_event_tokens", "67603dc75f4069df"), (6, "m006_fts_postings", "87fa6bf450491a1d"),
                        (7, "m007_view_snapshots", "3145f924d8ead1ad")]
    for migrations in (lite, post):
        assert [n for n, _, _ in migrations] == list(range(1, len(migrations) + 1))


def test_a_backends_migrations_are_its_numbered_constants() -> None:
    """Number and recorded name come from the constant (`M002_FRAMES` is 2, "m002_frames"); a gap
    or a repeated number stops the module from loading."""
    assert numbered({"M002_FRAMES": "b", "M001_INITIAL": "a", "SESSION_ROW": "x", "M003_LATER": 3}) == [
        (1, "m001_initial", "a"), (2, "m002_frames", "b")]
    for broken in ({"M001_A": "a", "M003_C": "c"}, {"M001_A": "a", "M001_B": "b"}, {"M002_B": "b"}):
        with pytest.raises(ValueError, match="numbered"):
            numbered(broken)
