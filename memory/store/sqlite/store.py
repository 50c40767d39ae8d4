"""The embedded SQLite store (aiosqlite, one file, WAL).

One connection per runtime: SQLite allows one writer at a time anyway, and aiosqlite runs every
statement on the connection's own thread, so statements never interleave. Writes go through
`transaction()`, which yields a `SqliteTx`; a failure rolls the whole unit back, so a rejected or
crashed ingest leaves nothing behind.

The files are created 0600 (SQLite gives the WAL and shared-memory files the database's mode).
Every commit first checks that the path still names the files the connection opened, and refuses
(rolls back, raises `StorageError`) when it does not (`memory.store.sqlite.files` says why).
`health()` reports that, and a failed last write, for the proxy's /healthz.

Several processes may share the file (`serve --workers N`): `session_lock` holds a lock on the
session's byte of `<db>-locks` across them (`memory.store.locks.FileSessionLocks`), and SQLite
itself serialises their commits (`BEGIN IMMEDIATE`, `busy_timeout`). One writer at a time means
ids are committed in increasing order, which the in-process views' high-water checks rely on.

`SqliteTx` writes what SQLite does in its own way: ids past AUTOINCREMENT's high-water mark, chunks
(whose FTS5 entries come from a trigger), the re-keying of a renamed session's FTS5 entries, and
erase's FTS `optimize`. Erase never VACUUMs (a full rewrite of the file, every other session's
rows and vectors included): `secure_delete` (set when the connection opens) zeroes deleted rows and
freed pages, and after the commit `SqliteStore._reclaim` hands the freed pages back.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from memory.errors import StorageError
from memory.store.schema import SQLITE
from memory.store.fulltext import or_query, rarest_within, session_key
from memory.store.locks import FileSessionLocks
from memory.store.sqlite.files import OpenFiles
from memory.store.sqlite.migrations import MIGRATIONS
from memory.store.writes import CHUNK_ROW, SqlStore, SqlWrites

__all__ = ["SqliteStore", "SqliteTx", "Tokenizer", "TermRows"]

# The tokenizer migration m001 gave chunks_fts (a word is looked up by the terms it indexes as).
INDEX_TOKENIZE = "porter unicode61 remove_diacritics 2"
# The lock (a name no session id has: ids are checked printable) under which a process sets the file up.
_SETUP_LOCK = "\0memory-runtime set-up"
_CACHE = 4_096  # words or terms remembered


class Tokenizer:
    """A word's index terms (the index stems words, and the rare-word rule counts rows by term), as
    SQLite itself makes them in an in-memory FTS5 table with the index's tokenizer (bounded memo)."""

    def __init__(self, tokenize: str) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        quoted = tokenize.replace("'", "''")
        self._db.execute(f"CREATE VIRTUAL TABLE words USING fts5(text, tokenize='{quoted}')")
        self._db.execute("CREATE VIRTUAL TABLE word_terms USING fts5vocab(words, instance)")
        self._memo: dict[str, tuple[str, ...]] = {}

    def terms(self, words: Sequence[str], cache_size: int = _CACHE) -> dict[str, tuple[str, ...]]:
        # The answer is built before the memo is trimmed: trimming may drop any entry, including
        # one this call found there or just added.
        found_here = {w: self._memo[w] for w in dict.fromkeys(words) if w in self._memo}
        todo = [w for w in dict.fromkeys(words) if w not in found_here]
        if todo:
            db = self._db
            with db:
                db.execute("DELETE FROM words")
                db.executemany("INSERT INTO words(rowid, text) VALUES (?, ?)", list(enumerate(todo, 1)))
                found: dict[int, list[tuple[int, str]]] = {}
                for term, doc, offset in db.execute("SELECT term, doc, offset FROM word_terms"):
                    found.setdefault(int(doc), []).append((int(offset), str(term)))
            for i, word in enumerate(todo, 1):
                found_here[word] = tuple(t for _, t in sorted(found.get(i, [])))
                while self._memo and len(self._memo) >= cache_size:
                    del self._memo[next(iter(self._memo))]
                self._memo[word] = found_here[word]
        return {w: found_here[w] for w in words}


class TermRows:
    """Rows per index term, remembered while `stamp` (this connection's total changes, SQLite's
    data version) holds: counting a common term reads its whole posting list (~28 ms a compile at 100k)."""

    def __init__(self) -> None:
        self._stamp: tuple[int, ...] = ()
        self._rows: dict[str, int] = {}

    def known(self, stamp: tuple[int, ...], terms: Sequence[str]) -> tuple[dict[str, int], list[str]]:
        """The remembered counts of `terms` under `stamp`, and the terms still to count."""
        if stamp != self._stamp:
            self._stamp, self._rows = stamp, {}
        return {t: self._rows[t] for t in terms if t in self._rows}, [t for t in terms if t not in self._rows]

    def add(self, stamp: tuple[int, ...], counted: dict[str, int]) -> None:
        if stamp and stamp == self._stamp and len(self._rows) + len(counted) <= _CACHE:  # (): in a transaction
            self._rows.update(counted)


class SqliteTx(SqlWrites):
    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await self._db.execute_fetchall(query, params))

    async def _exec_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.executemany(query, rows)

    async def _allocate(self, counts: Mapping[str, int]) -> dict[str, list[int]]:
        # AUTOINCREMENT keeps the largest id a table ever had in sqlite_sequence; an insert with an
        # explicit larger id moves it on. One writer at a time holds the file, so nobody races.
        (r,) = await self._rows("SELECT " + ", ".join(f"coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{t}'), 0)" for t in counts))
        return {t: list(range(last + 1, last + 1 + n)) for (t, n), last in zip(counts.items(), r, strict=True)}

    async def _add_chunks(self, session_id: str, rows: Sequence[Sequence[Any]]) -> None:
        # FTS5 entries come from the chunks' insert trigger, keyed by the session's token.
        await self._exec_many(f"INSERT INTO chunks({CHUNK_ROW}, session_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              [(*r, session_key(session_id)) for r in rows])

    async def _rekey_chunks(self, old_id: str, new_id: str) -> None:
        # An external-content FTS5 table: the old entries are deleted with the old key, then indexed again.
        await self._exec("INSERT INTO chunks_fts(chunks_fts, rowid, text, session_key) SELECT 'delete', id, text, session_key FROM chunks "
                         "WHERE session_id = ?", (old_id,))
        await self._exec("UPDATE chunks SET session_id = ?, session_key = ? WHERE session_id = ?", (new_id, session_key(new_id), old_id))
        await self._exec("INSERT INTO chunks_fts(rowid, text, session_key) SELECT id, text, session_key FROM chunks WHERE session_id = ?",
                         (new_id,))

    async def _erase(self, session_ids: Sequence[str]) -> list[str]:
        found = await super()._erase(session_ids)
        if found:
            # Merge the FTS segments: entries behind delete markers are dropped, the old pages freed
            # (and zeroed by secure_delete). Proportional to the index, not to the whole file.
            await self._exec("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        return found


class SqliteStore(SqlStore):
    """Storage for every session in one SQLite file."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # The database file and its WAL as the connection opened them.
        self._files = OpenFiles(self.path)
        # Why the last write failed, until one succeeds.
        self._write_failure: str | None = None
        self._tokenizer = Tokenizer(INDEX_TOKENIZE)
        self._term_rows = TermRows()
        self._file_locks = FileSessionLocks(f"{Path(self.path).expanduser().resolve()}-locks", self._session_locks)

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not open (use `async with create_runtime(...)` or await runtime.open())")
        return self._db

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            if self.path != ":memory:":
                _create_private(Path(self.path).expanduser().resolve())
                self._file_locks.open()
            # Held on self at once, so a failure below (a corrupt file fails at the first PRAGMA)
            # still closes the connection and its thread.
            self._db = db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            # Processes opening the file together (`serve --workers`) set it up one at a time.
            async with self._file_locks.hold(_SETUP_LOCK):
                await self._incremental_vacuum_mode()
                for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "secure_delete=ON", "busy_timeout=5000"):
                    await db.execute(f"PRAGMA {pragma}")
                await self._migrate()
            # Rows per index term (for `_rarest`); temp: per connection, nothing in the file.
            await db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_vocab USING fts5vocab(main, chunks_fts, row)")
            self._files.record()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StorageError(f"cannot open memory store {self.path}: {exc}") from exc
        self._write_failure = None

    async def _incremental_vacuum_mode(self) -> None:
        """Erase frees pages with `incremental_vacuum` instead of rewriting the file, which needs
        auto_vacuum=INCREMENTAL; a file created before that setting is converted once."""
        db = self.db
        if await _value(db, "PRAGMA auto_vacuum") == 2:
            return
        await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if await _value(db, "SELECT count(*) FROM sqlite_master"):
            await db.execute("VACUUM")

    async def health(self) -> str | None:
        """None when writes land in the file at the path; otherwise why not. After a failed write
        a probe write (rolled back) checks whether the cause has gone."""
        problem = self._files.problem()
        if problem is not None or self._write_failure is None:
            return problem
        async with self._write_lock:
            db = self.db
            waited = int(await _value(db, "PRAGMA busy_timeout"))
            try:
                await db.execute("PRAGMA busy_timeout = 50")  # a health check must answer fast
                await db.execute("BEGIN IMMEDIATE")
                try:
                    version = await _value(db, "PRAGMA user_version")
                    await db.execute(f"PRAGMA user_version = {int(version)}")
                finally:
                    await db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                return f"writes fail: {exc}"
            finally:
                await db.execute(f"PRAGMA busy_timeout = {waited}")
        self._write_failure = None
        return None

    async def close(self) -> None:
        self._file_locks.close()
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        db = self.db
        await db.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
        done = {r[0] for r in await db.execute_fetchall("SELECT number FROM _migrations")}
        for number, name, sql in MIGRATIONS:
            if number in done:
                continue
            # One transaction per migration; executescript runs its statements (trigger bodies
            # hold ';') without committing the transaction it starts.
            try:
                await db.executescript("BEGIN IMMEDIATE;\n" + sql)
                await db.execute("INSERT INTO _migrations(number, name, applied_at) VALUES (?, ?, ?)", (number, name, time.time()))
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    def session_lock(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """The session's lock in this process, then across the processes sharing the file."""
        return self._file_locks.hold(session_id)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._write_lock:
            db = self.db
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed(f"cannot start a write: {exc}") from exc
            try:
                yield SqliteTx(db)
                problem = self._files.problem()
                if problem is not None:
                    raise self._failed(problem)
                await db.execute("COMMIT")
            except sqlite3.Error as exc:  # a statement or the commit
                await db.execute("ROLLBACK")
                raise self._failed(f"write failed: {exc}") from exc
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            self._write_failure = None

    def _failed(self, reason: str) -> StorageError:
        self._write_failure = reason
        return StorageError(reason)

    async def check_writable(self) -> None:
        """Catches a read-only file, a lock held too long, files replaced under the connection: an
        empty transaction takes the write lock and releases it at once."""
        async with self.transaction():
            pass

    async def _rows(self, query: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        try:
            # One call on the connection's thread: no cursor stays open across an await, so a
            # VACUUM (which needs no statement in progress) can never land in the middle of a read.
            return list(await self.db.execute_fetchall(query, params))
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def _bm25(self, session_id: str, words: list[str], limit: int) -> list[tuple[int, float]]:
        rows = await self._rows(
            "SELECT rowid, bm25(chunks_fts, 1.0, 0.0) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
            "ORDER BY score, rowid LIMIT ?",
            (f'session_key:"{session_key(session_id)}" AND ({or_query(await self._rarest(words))})', limit),
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    async def _rarest(self, words: list[str]) -> list[str]:
        """`words` less the most common ones when together they match too many rows (`memory.store.fulltext`)."""
        if len(words) <= 1:
            return words
        terms = self._tokenizer.terms(words)
        wanted = sorted({t for ts in terms.values() for t in ts})
        # Never remembered inside a transaction: what it wrote may yet be rolled back.
        stamp = () if self.db.in_transaction else tuple(
            (await self._rows("SELECT total_changes(), data_version FROM pragma_data_version"))[0])
        counts, todo = self._term_rows.known(stamp, wanted)
        if todo:
            counts |= (counted := {t: 0 for t in todo} | {str(r[0]): int(r[1]) for r in await self._rows(
                f"SELECT term, doc FROM temp.chunks_vocab WHERE term IN ({','.join('?' * len(todo))})", todo)})
            self._term_rows.add(stamp, counted)
        return rarest_within(words, terms, counts, self.max_postings)

    async def _reclaim(self) -> None:
        """Return the pages an erase freed to the file system and truncate the WAL."""
        async with self._write_lock:
            try:
                await self.db.execute_fetchall("PRAGMA incremental_vacuum")
                await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StorageError(f"reclaiming space after erase failed: {exc}") from exc


async def _value(db: aiosqlite.Connection, query: str) -> Any:
    """The one value `query` reads (a PRAGMA, a count)."""
    return list(await db.execute_fetchall(query))[0][0]


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite copies the mode to the WAL and
    shared-memory files); tighten files an older version left world-readable."""
    if path.is_dir():
        # A folder is never a database; refusing it here also keeps the mode change below off it
        # (`--storage /etc` once left /etc readable by root alone).
        raise IsADirectoryError(f"{path} is a folder, not a database file")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = name.lstat().st_mode
            # Only our own regular files: never a folder, a device or what a symlink points at.
            if stat.S_ISREG(mode) and mode & 0o077:
                name.chmod(0o600)
        except OSError:
            continue  # missing, or not ours to change: opening still works

