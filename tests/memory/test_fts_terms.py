"""The full-text query keeps a question's rarest words when all of them would match too many rows."""

from __future__ import annotations

from pathlib import Path

import psycopg

from memory import create_runtime
from memory.store.postgres.fts import stem
from memory.store.postgres.store import PgStore
from memory.store.fulltext import or_query, rarest_within, split_or_query
from memory.store.sqlite.store import INDEX_TOKENIZE, TermRows, Tokenizer
from memory.recall.retrieval import fts_query


def test_words_are_looked_up_by_the_terms_the_index_stems_them_to() -> None:
    terms = Tokenizer(INDEX_TOKENIZE).terms(["memory", "sqlite_reads", "Caching", "78571"])
    assert terms == {"memory": ("memori",), "sqlite_reads": ("sqlite", "read"), "Caching": ("cach",), "78571": ("78571",)}


def test_an_or_query_round_trips_and_other_expressions_are_left_alone() -> None:
    query = fts_query('What did "Bob" change in sqlite_reads about retries?')
    assert or_query(split_or_query(query) or []) == query
    assert split_or_query('session_key:"x" AND "y"') is None and split_or_query("") == []
    assert split_or_query('qzword OR "two words"') == ["qzword", "two words"] and split_or_query("a OR") is None


def test_the_most_common_words_leave_first_and_the_rarest_always_stay() -> None:
    words = ["py", "retries", "sweeper", "config"]
    terms = {"py": ("py",), "retries": ("retri",), "sweeper": ("sweeper",), "config": ("config",)}
    rows = {"py": 64_000, "retri": 40, "sweeper": 200, "config": 7_000}
    assert rarest_within(words, terms, rows, max_postings=100_000) == words  # under the cap: unchanged
    assert rarest_within(words, terms, rows, max_postings=10_000, min_words=1) == ["retries", "sweeper", "config"]
    assert rarest_within(words, terms, rows, max_postings=100, min_words=2) == ["retries", "sweeper"]


async def test_a_large_store_searches_by_the_rare_words_and_still_finds_their_rows(tmp_path: Path) -> None:
    async with create_runtime(storage_path=str(tmp_path / "fts.sqlite"), embedding_model="none") as rt:
        filler = [{"type": "user_message", "payload": {"content": f"the common widget note number {n}"}} for n in range(60)]
        await rt.session("s").ingest_many(filler + [{"type": "assistant_message", "payload": {"content": "qzrare widget fix"}}])
        match = fts_query("widget qzrare note number common")
        full = await rt.store.bm25("s", match, 100)
        rt.store.max_postings = 10  # every word but qzrare is in 60 rows or more: over the cap
        assert await rt.store._rarest(["widget", "qzrare", "note", "number", "common"]) == ["qzrare", "note", "number"]  # the three rarest stay
        pruned = await rt.store.bm25("s", match, 100)
        assert pruned[0][0] == full[0][0]  # the rare word's row still ranks first
        assert len(full) == 61 and len(pruned) == 61  # the kept words still match the same rows here


async def test_remembered_word_counts_follow_this_connections_writes_and_anothers(tmp_path: Path) -> None:
    def messages(text: str, n: int) -> list[dict[str, object]]:
        return [{"type": "user_message", "payload": {"content": f"{text} note {i}"}} for i in range(n)]

    path = str(tmp_path / "fts.sqlite")
    words = ["alpha", "beta", "gamma", "delta"]
    async with create_runtime(storage_path=path, embedding_model="none") as rt:
        await rt.session("s").ingest_many(messages("alpha", 5) + messages("beta", 1) + messages("gamma", 1))
        rt.store.max_postings = 6
        assert await rt.store._rarest(words) == ["beta", "gamma", "delta"]  # alpha: 5 rows
        assert await rt.store._rarest(words) == ["beta", "gamma", "delta"]  # (from the remembered counts)
        await rt.session("s").ingest_many(messages("delta", 10))
        assert await rt.store._rarest(words) == ["alpha", "beta", "gamma"]  # delta: 10 rows
        async with create_runtime(storage_path=path, embedding_model="none") as other:
            await other.session("t").ingest_many(messages("beta", 20))
        assert await rt.store._rarest(words) == ["alpha", "gamma", "delta"]  # beta: 21 rows


def test_counts_are_remembered_under_their_stamp_only_and_never_inside_a_transaction() -> None:
    rows = TermRows()
    rows.add((), {"alpha": 1})  # () : counted inside a transaction
    assert rows.known((), ["alpha"]) == ({}, ["alpha"])
    assert rows.known((4, 1), ["alpha"]) == ({}, ["alpha"])
    rows.add((4, 1), {"alpha": 3})
    assert rows.known((4, 1), ["alpha", "beta"]) == ({"alpha": 3}, ["beta"])
    assert rows.known((5, 1), ["alpha"]) == ({}, ["alpha"]) and rows.known((4, 1), ["alpha"]) == ({}, ["alpha"])


def test_a_full_memo_still_answers_for_every_word_asked() -> None:
    tokenizer = Tokenizer(INDEX_TOKENIZE)
    tokenizer.terms(["boats", "photography"], cache_size=2)
    # "boats" is remembered, the new words push it and each other out of a memo of two.
    terms = tokenizer.terms(["boats", "running", "walked", "photography"], cache_size=2)
    assert terms == {"boats": ("boat",), "running": ("run",), "walked": ("walk",), "photography": ("photographi",)}


async def _recount(store: PgStore) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """The kept per-lexeme counts, and the same counted afresh from the chunks."""
    async with store.pool.connection() as conn:
        kept = await (await conn.execute("SELECT session_id, lexeme, docs FROM fts_terms ORDER BY 1, 2")).fetchall()
        fresh = await (await conn.execute(
            "SELECT c.session_id, u.lexeme, count(*) FROM chunks c, unnest(c.tsv) AS u WHERE left(u.lexeme, 1) <> '#' "
            "GROUP BY 1, 2 ORDER BY 1, 2")).fetchall()
    return [tuple(r) for r in kept], [tuple(r) for r in fresh]  # type: ignore[misc]


async def _reindex(store: PgStore) -> tuple[list[tuple[str, str, int, int, int]], list[tuple[str, str, int, int, int]]]:
    """The kept postings (session, lexeme, chunk, occurrences, row length), and the same read
    afresh from the chunks' tsvectors."""
    async with store.pool.connection() as conn:
        kept = await (await conn.execute("SELECT session_id, lexeme, chunk_id, tf, doc_len FROM fts_postings ORDER BY 1, 2, 3")).fetchall()
        fresh = await (await conn.execute(
            "SELECT c.session_id, u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u "
            "WHERE left(u.lexeme, 1) <> '#' ORDER BY 1, 2, 3")).fetchall()
    return [tuple(r) for r in kept], [tuple(r) for r in fresh]


async def test_postgres_searches_by_the_rare_words_from_counts_kept_at_ingest(pg_url: str) -> None:
    async with create_runtime(storage_url=pg_url, embedding_model="none") as rt:
        store = rt.store
        assert isinstance(store, PgStore)
        filler = [{"type": "user_message", "payload": {"content": f"the common widget note number {n}"}} for n in range(60)]
        await rt.session("s").ingest_many(filler[:30])
        await rt.session("s").ingest_many(filler[30:] + [{"type": "assistant_message", "payload": {"content": "qzrare widget fix"}}])
        match = fts_query("widget qzrare note number common")
        full = await store.bm25("s", match, 100)
        store.max_postings = 10  # every word but qzrare is in 60 rows or more: over the cap
        async with store.pool.connection() as conn:
            stems, docs = await stem(conn, ["widget", "qzrare", "note", "number", "common"], "s")
        assert rarest_within(list(stems), stems, docs, 10) == ["qzrare", "note", "number"]
        pruned = await store.bm25("s", match, 100)
        assert pruned[0][0] == full[0][0]  # the rare word's row still ranks first
        assert len(full) == 61 and len(pruned) == 61
        store.max_postings = 1_000  # under the cap: the query is unchanged
        assert await store.bm25("s", match, 100) == full
        # The counts follow the chunks through another session's writes, a rename and an erase.
        await rt.session("t").ingest({"type": "user_message", "payload": {"content": "widget widget elsewhere"}})
        await store.rename_session("t", "u")
        kept, fresh = await _recount(store)
        assert kept == fresh and ("s", "widget", 61) in kept and ("u", "widget", 1) in kept
        postings, read = await _reindex(store)
        assert postings == read and [p[3] for p in postings if p[:2] == ("u", "widget")] == [2]
        await store.delete_sessions(["s"])
        kept, fresh = await _recount(store)
        assert kept == fresh and {r[0] for r in kept} == {"u"}
        postings, read = await _reindex(store)
        assert postings == read and {p[0] for p in postings} == {"u"}


def _before_migration(pg_url: str, schema: str, number: int, table: str) -> None:
    """Turn the database back into one from before migration `number`, which created `table`."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".{table}')
        conn.execute(f'DELETE FROM "{schema}"._migrations WHERE number = {number}')


async def test_postgres_migration_counts_what_was_stored_before_it(pg_url: str) -> None:
    async with create_runtime(storage_url=pg_url, embedding_model="none") as rt:
        await rt.session("old").ingest_many([{"type": "user_message", "payload": {"content": f"legacy words {n}"}} for n in range(5)])
        assert isinstance(rt.store, PgStore)
        schema = rt.store.schema
    _before_migration(pg_url, schema, 4, "fts_terms")
    async with create_runtime(storage_url=pg_url, embedding_model="none") as rt:
        assert isinstance(rt.store, PgStore)
        kept, fresh = await _recount(rt.store)
        assert kept == fresh and ("old", "legaci", 5) in kept


async def test_postgres_migration_posts_what_was_stored_before_it(pg_url: str) -> None:
    async with create_runtime(storage_url=pg_url, embedding_model="none") as rt:
        await rt.session("old").ingest_many([{"type": "user_message", "payload": {"content": f"legacy legacy words {n}"}} for n in range(5)])
        assert isinstance(rt.store, PgStore)
        schema = rt.store.schema
        before = await rt.store.bm25("old", fts_query("legacy words 3"), 10)
    _before_migration(pg_url, schema, 6, "fts_postings")
    async with create_runtime(storage_url=pg_url, embedding_model="none") as rt:
        assert isinstance(rt.store, PgStore)
        postings, read = await _reindex(rt.store)
        assert postings == read and len([p for p in postings if p[1] == "legaci" and p[3] == 2]) == 5
        assert await rt.store.bm25("old", fts_query("legacy words 3"), 10) == before and len(before) == 5
