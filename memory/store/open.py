"""Choosing the store: an embedded SQLite file by default, PostgreSQL when a URL says so."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from memory.errors import InvalidArgumentError, StorageError
from memory.store.protocol import Store
from memory.store.sqlite.store import SqliteStore
from memory.store.urls import describe_storage, is_postgres_url, redact_url

if TYPE_CHECKING:
    from memory.store.postgres.import_sqlite import ImportReport, Progress

__all__ = ["store_for", "is_postgres_url", "describe_storage", "redact_url", "import_sqlite_file"]


def _postgres() -> tuple[ModuleType, ModuleType]:
    """The PostgreSQL store and importer modules."""
    try:
        # Imported only when PostgreSQL is asked for: psycopg is an optional extra
        # (`memory-runtime[postgres]`), and `import memory` must work without it. Not a cycle.
        from memory.store.postgres import import_sqlite as pg_import
        from memory.store.postgres import store as pg_store
    except ImportError as exc:
        raise StorageError(
            f"PostgreSQL storage needs its driver, which is missing ({exc.name}): pip install 'memory-runtime[postgres]'"
        ) from exc
    return pg_store, pg_import


def store_for(storage_path: str | Path, storage_url: str | None = None) -> Store:
    """The store for a runtime: `storage_url` (postgresql://user@host:port/db) when given, else
    the SQLite file at `storage_path`."""
    if not storage_url:
        return SqliteStore(storage_path)
    if not is_postgres_url(storage_url):
        raise InvalidArgumentError("storage_url must be a postgresql:// URL (leave it unset for the SQLite file at storage_path)")
    store: Store = _postgres()[0].PgStore(storage_url.strip())
    return store


async def import_sqlite_file(source: str | Path, storage_url: str, progress: Progress | None = None) -> ImportReport:
    """Copy every session of the SQLite memory file `source` into the PostgreSQL database at
    `storage_url` (idempotent and resumable, counts verified; see `memory.store.postgres.import_sqlite`)."""
    if not is_postgres_url(storage_url):
        raise InvalidArgumentError("the target must be a postgresql:// URL")
    pg_store, pg_import = _postgres()
    target = pg_store.PgStore(storage_url.strip())
    try:
        report: ImportReport = await pg_import.import_sqlite(source, target, progress)
    finally:
        await target.close()
    return report
