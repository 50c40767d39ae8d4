"""The PostgreSQL store: several processes (proxy instances) share one memory.

psycopg 3 with its connection pool. Reads take a pooled connection for one statement (or one
read-only snapshot when several statements must agree); writes go through `transaction()`, which
yields a `PgTx` on one connection inside one transaction. Two pools: one for statements, and one
for the per-session advisory locks, each of which holds its connection for a whole request; a lock
holder only ever needs a statement connection for a moment, so exhausting either pool can never
deadlock the other.

Ordering across processes: every write transaction of a session starts with `ensure_session`,
whose upsert locks the session's row until commit. So a session's writes are serialised across
instances, and its ids are allocated and committed in increasing order; a reader that has seen id
N of a session has seen everything of that session below N, which is what the in-process views'
high-water marks rely on. `session_lock` serialises a whole request (sync, compile, reply) on top.

`PgTx` writes what PostgreSQL does in its own way: ids drawn from its sequences, chunks with their
`tsvector` and the per-session BM25 counters, and the full-text re-keying of a renamed session. An
erase's full-text entries go with its rows; (auto)vacuum reclaims their space later.

Vectors are stored as bytes, keyed by content hash, and searched in process (each instance's view),
as with SQLite. pgvector's HNSW was measured against that (`benchmarks.pg_vectors`): with a
session filter it returns only part of a session's nearest chunks unless ef_search is raised to
its maximum, where it is slower than the in-process product, and the index costs time on every
insert; README "Running several instances" has the figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from memory.errors import StorageError
from memory.store.schema import POSTGRES
from memory.store.postgres.fts import TS_CONFIG, fts_text, rank, session_lexeme, token_count
from memory.store.postgres.migrations import MIGRATIONS
from memory.store.urls import redact_url
from memory.store.writes import CHUNK_ROW, SqlStore, SqlWrites

__all__ = ["PgStore", "PgTx", "advisory_key"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
DEFAULT_SCHEMA = "memory_runtime"
_MIGRATION_LOCK = "memory-runtime migrations"
_CONNECT_TIMEOUT_S = 10
HEALTH_TIMEOUT_S = 2.0  # a health check answers fast, even when the database does not


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (the first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


class PgTx(SqlWrites):
    dialect = POSTGRES

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        cur = await self.conn.execute(self.dialect.sql(query), params)
        return list(await cur.fetchall()) if cur.description else []

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.dialect.sql(query), rows)

    async def _allocate(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
        # From each table's sequence, in one round trip.
        (r,) = await self._rows("SELECT " + ", ".join(f"(SELECT coalesce(array_agg(nextval('{t}_id_seq')), '{{}}') FROM generate_series(1, ?))"
                                                      for t in counts), tuple(counts.values()))
        return {t: sorted(ids) for t, ids in zip(counts, r, strict=True)}

    async def _add_chunks(self, session_id: str, rows: Sequence[Sequence[Any]]) -> None:
        # Each row's text as FTS5 would tokenize it, its length for BM25, and the session's lexeme;
        # the session's BM25 counters grow with them.
        key = session_lexeme(session_id)
        folded = [fts_text(r[5]) for r in rows]
        lengths = [token_count(f) for f in folded]
        await self._exec_many(
            f"INSERT INTO chunks({CHUNK_ROW}, doc_len, tsv) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_tsvector('{TS_CONFIG}'::regconfig, ?::text) "
            "|| array_to_tsvector(ARRAY[?::text]))", [(*r, n, f, key) for r, n, f in zip(rows, lengths, folded, strict=True)])
        await self._exec("UPDATE sessions SET fts_docs = fts_docs + ?, fts_tokens = fts_tokens + ? WHERE id = ?",
                         (len(rows), sum(lengths), session_id))
        # Each lexeme's postings (`fts_postings`) and rows (`fts_terms`) grow too, in one statement;
        # the counts in lexeme order so that two writers never wait on each other's rows in opposite orders.
        await self._exec(
            "WITH p AS (INSERT INTO fts_postings(session_id, lexeme, chunk_id, tf, doc_len) "
            "SELECT c.session_id, u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u "
            "WHERE c.id = ANY(?) AND u.lexeme <> ? RETURNING lexeme) "
            "INSERT INTO fts_terms(session_id, lexeme, docs) SELECT ?, lexeme, count(*) FROM p GROUP BY lexeme ORDER BY lexeme "
            "ON CONFLICT (session_id, lexeme) DO UPDATE SET docs = fts_terms.docs + excluded.docs", ([r[0] for r in rows], key, session_id))

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # The session's lexeme in each chunk's full-text vector derives from the id: replaced too.
        await self._exec("UPDATE chunks SET session_id = ?, tsv = ts_delete(tsv, ?::text) || array_to_tsvector(ARRAY[?::text]) "
                         "WHERE session_id = ?", (new_id, session_lexeme(old_id), session_lexeme(new_id), old_id))


class PgStore(SqlStore):
    """Storage for every session in one PostgreSQL database (in its own schema)."""

    dialect = POSTGRES

    def __init__(self, url: str, *, schema: str = DEFAULT_SCHEMA, pool_size: int = 8, lock_pool_size: int = 16) -> None:
        super().__init__()
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.lock_pool_size = lock_pool_size
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._lock_pool: AsyncConnectionPool[Conn] | None = None

    def __repr__(self) -> str:
        return f"PgStore({redact_url(self.url)!r}, schema={self.schema!r})"

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StorageError("the store is not open (use `async with create_runtime(...)` or await runtime.open())")
        return self._pool

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        try:
            if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(self.url):
                kwargs["connect_timeout"] = _CONNECT_TIMEOUT_S
        except psycopg.ProgrammingError as exc:
            raise StorageError(f"invalid PostgreSQL URL {redact_url(self.url)}: {exc}") from exc
        return kwargs

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            await self._migrate()
            self._pool = pool = AsyncConnectionPool(self.url, kwargs=self._kwargs(), min_size=1, max_size=self.pool_size, open=False,
                                                    configure=self._configure, name="memory-runtime", timeout=30.0)
            self._lock_pool = locks = AsyncConnectionPool(self.url, kwargs=self._kwargs(), min_size=1, max_size=self.lock_pool_size, open=False,
                                                          name="memory-runtime-locks", timeout=60.0)
            await pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
            await locks.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open memory store {redact_url(self.url)}: {exc}") from exc
            raise

    async def close(self) -> None:
        pools = [p for p in (self._pool, self._lock_pool) if p is not None]
        self._pool = self._lock_pool = None
        for pool in pools:
            await pool.close()

    async def _migrate(self) -> None:
        """Create the schema if needed and apply the pending migrations in it, each in its own
        transaction, holding an advisory lock meanwhile (`memory.store.postgres.migrations`)."""
        lock = advisory_key(f"{_MIGRATION_LOCK}:{self.schema}")
        async with await psycopg.AsyncConnection.connect(self.url, **self._kwargs()) as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            try:
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                await self._configure(conn)
                await conn.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                                   "applied_at DOUBLE PRECISION NOT NULL)")
                done = {r[0] for r in await (await conn.execute("SELECT number FROM _migrations")).fetchall()}
                for number, name, script in MIGRATIONS:
                    if number not in done:
                        async with conn.transaction():
                            await conn.execute(script.encode("utf-8"))
                            await conn.execute("INSERT INTO _migrations(number, name, applied_at) VALUES (%s, %s, %s)",
                                               (number, name, time.time()))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    async def _first(self, pool: AsyncConnectionPool[Conn], first: Callable[[Conn], Awaitable[T]]) -> tuple[Conn, T]:
        """A pooled connection on which `first`, the first step of a unit of work, has run, and
        what it returned. A pooled connection can die while idle (a database restart, a failover,
        a network blip): when that first step finds it dead, nothing has happened yet, so it runs
        once more on a fresh connection. The caller gives the connection back with `pool.putconn`."""
        for attempt in (1, 2):
            try:
                conn = await pool.getconn()
            except PoolTimeout as exc:
                raise StorageError(f"no database connection free: {exc}") from exc
            try:
                return conn, await first(conn)
            except psycopg.OperationalError as exc:
                await pool.putconn(conn)  # a broken connection is discarded by the pool
                if attempt == 2:
                    raise StorageError(f"database unavailable: {exc}") from exc
            except BaseException:
                # Cancelled (say, while waiting for a lock): closing the connection is the one sure
                # way to leave nothing behind on the server.
                await conn.close()
                await pool.putconn(conn)
                raise
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        pool = self.pool
        conn, _ = await self._first(pool, lambda c: c.execute("BEGIN"))
        try:
            yield PgTx(conn)
            await conn.execute("COMMIT")
        except BaseException as exc:
            if not conn.broken:
                try:
                    await conn.execute("ROLLBACK")
                except psycopg.Error:
                    await conn.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"write failed: {exc}") from exc
            raise
        finally:
            await pool.putconn(conn)

    @asynccontextmanager
    async def session_lock(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's advisory lock, across every process on this database, for the block.

        A session-level `pg_advisory_lock` on a connection kept for the duration: a transaction-level
        lock would end with the first commit inside the block. If this process dies, PostgreSQL ends
        its connection and releases the lock. Waiters of this process queue on an asyncio lock first,
        so one process holds at most one lock connection per session."""
        if self._lock_pool is None:
            raise StorageError("the store is not open")
        pool, key = self._lock_pool, advisory_key(f"memory-runtime session:{self.schema}:{session_id}")
        async with self._session_locks.hold(session_id):
            conn, _ = await self._first(pool, lambda c: c.execute("SELECT pg_advisory_lock(%s)", (key,)))
            try:
                yield
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except BaseException as exc:
                    await conn.close()  # the server releases the lock with the connection
                    if isinstance(exc, psycopg.Error):
                        raise StorageError(f"session unlock failed: {exc}") from exc
                    raise
                finally:
                    await pool.putconn(conn)

    async def _read(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Run a read on a pooled connection (on a fresh one when the first was broken: `_first`)."""
        try:
            conn, found = await self._first(self.pool, work)
        except psycopg.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        await self.pool.putconn(conn)
        return found

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return await self._read(lambda conn: PgTx(conn)._rows(query, params))

    async def _together(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Sequence[Any]]]:
        """One round trip: the reads pipelined inside one read-only snapshot (another instance may
        commit between them otherwise)."""
        async def work(conn: Conn) -> list[list[Sequence[Any]]]:
            async with conn.pipeline():
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursors = [await conn.cursor().execute(self.dialect.sql(query), params) for query, params in queries]
                await conn.execute("COMMIT")
            return [list(await cur.fetchall()) for cur in cursors]

        return await self._read(work)

    async def check_writable(self) -> None:
        """Catches an unreachable database, a read-only standby or a read-only session."""
        rows = await self._rows("SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'")
        if rows[0][0]:
            raise StorageError("the PostgreSQL database is read-only (a standby, or default_transaction_read_only)")

    async def _bm25(self, session_id: str, words: list[str], limit: int) -> list[tuple[int, float]]:
        return await self._read(lambda conn: rank(conn, words, session_id, limit, self.max_postings))

    async def shared_secret(self, name: str, create: bool = True) -> bytes:
        """The named random secret every instance on this database shares (32 bytes), created by
        whichever asks first unless `create` is false. The proxy keys caller identities with it, so
        a caller is the same principal whichever instance it reaches."""
        async with self.transaction() as tx:
            if create:
                await tx._exec("INSERT INTO secrets(name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                               (name, secrets.token_bytes(32), time.time()))
            rows = await tx._rows("SELECT value FROM secrets WHERE name = ?", (name,))
        if not rows:
            raise StorageError(f"no shared secret {name!r} in the database yet: start the proxy once to create it")
        return bytes(rows[0][0])

    async def health(self) -> str | None:
        try:
            await asyncio.wait_for(self.check_writable(), HEALTH_TIMEOUT_S)
        except (StorageError, TimeoutError) as exc:
            return f"PostgreSQL: {exc or 'no answer within ' + str(HEALTH_TIMEOUT_S) + ' s'}"
        return None

