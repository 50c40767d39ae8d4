"""Choosing the store: an embedded SQLite file by default, PostgreSQL when a URL says so."""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidArgumentError, StorageError
from .sqlite_store import SqliteStore
from .store import Store

__all__ = ["store_for", "is_postgres_url"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.strip().lower().startswith(_POSTGRES_SCHEMES)  # type: ignore[union-attr]


def store_for(storage_path: str | Path, storage_url: str | None = None) -> Store:
    """The store for a runtime: `storage_url` (postgresql://user@host:port/db) when given, else
    the SQLite file at `storage_path`."""
    if not storage_url:
        return SqliteStore(storage_path)
    if not is_postgres_url(storage_url):
        raise InvalidArgumentError("storage_url must be a postgresql:// URL (leave it unset for the SQLite file at storage_path)")
    try:
        # Imported only when a PostgreSQL URL is used: psycopg is an optional extra
        # (`memory-runtime[postgres]`), and `import memory` must work without it.
        from .pg_store import PgStore
    except ImportError as exc:
        raise StorageError(
            f"storage_url is a PostgreSQL URL but the driver is missing ({exc.name}): pip install 'memory-runtime[postgres]'"
        ) from exc
    return PgStore(storage_url.strip())
