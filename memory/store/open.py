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


def _postgres() -> ModuleType:
    """The importer from SQLite, which holds the PostgreSQL store too."""
    try:
        # Imported only when PostgreSQL is asked for: psycopg is an optional extra
        # (`memory-runtime[postgres]`), and `import memory` must work without it.
        from memory.store.postgres import import_sqlite
    except ImportError as exc:
        raise StorageError(
            f"PostgreSQL storage needs its driver, which is missing ({exc.name}): pip install 'memory-runtime[postgres]'"
        ) from exc
    return import_sqlite


def store_for(storage_path: str | Path, storage_url: str | None = None) -> Store:
    """The store for a runtime: `storage_url` (postgresql://user@host:port/db) when given, else
    the SQLite file at `storage_path`."""
    if not storage_url:
        return SqliteStore(storage_path)
    if not is_postgres_url(storage_url):
        raise InvalidArgumentError("storage_url must be a postgresql:// URL (leave it unset for the SQLite file at storage_path)")
    store: Store = _postgres().PgStore(storage_url.strip())
    return store


async def import_sqlite_file(source: str | Path, storage_url: str, progress: Progress | None = None) -> ImportReport:
    """Copy every session of the SQLite memory file `source` into the PostgreSQL database at
    `storage_url` (idempotent and resumable, counts verified; see `memory.store.postgres.import_sqlite`)."""
    if not is_postgres_url(storage_url):
        raise InvalidArgumentError("the target must be a postgresql:// URL")
    report: ImportReport = await _postgres().import_sqlite(source, storage_url.strip(), progress)
    return report
