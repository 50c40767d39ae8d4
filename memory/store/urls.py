"""Storage locations as the operator writes them: which URLs name PostgreSQL, and how one is shown
in logs (never with its password)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["is_postgres_url", "redact_url", "describe_storage"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    return url is not None and url.strip().lower().startswith(_POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """A storage URL fit for logs: the password, if any, replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
    except ValueError:
        return "(an unparsable storage URL)"


def describe_storage(storage_path: str | Path, storage_url: str | None) -> str:
    """Where a runtime stores its memory, for logs and start-up messages (never a password)."""
    return redact_url(storage_url) if storage_url else str(storage_path)
