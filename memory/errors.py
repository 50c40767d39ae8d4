"""The one exception hierarchy of the `memory` package.

    MemoryRuntimeError                 base of everything raised on purpose by `memory`
    ├── InvalidInputError              the caller passed something unusable; nothing was stored
    │   ├── InvalidEventError          unknown event type, missing or non-string content, bad payload
    │   └── InvalidArgumentError       bad compile/observe arguments (negative budget, unknown model...)
    ├── SessionNotFoundError           the session id has nothing stored
    ├── StorageError                   the database could not be opened, migrated, read or written
    └── EmbeddingModelError            the embedding model could not be found or loaded
"""

from __future__ import annotations

__all__ = [
    "MemoryRuntimeError",
    "InvalidInputError",
    "InvalidEventError",
    "InvalidArgumentError",
    "SessionNotFoundError",
    "StorageError",
    "EmbeddingModelError",
]


class MemoryRuntimeError(Exception):
    """Base class of every error `memory` raises on purpose."""


class InvalidInputError(MemoryRuntimeError, ValueError):
    """The caller's input was rejected before anything was stored."""


class InvalidEventError(InvalidInputError):
    """An event passed to `ingest` is malformed."""


class InvalidArgumentError(InvalidInputError):
    """An argument to `compile`, `observe` or a session call is out of range or of the wrong type."""


class SessionNotFoundError(MemoryRuntimeError, LookupError):
    """No session with this id has anything stored."""


class StorageError(MemoryRuntimeError):
    """The storage backend failed (locked, read-only, corrupt, missing)."""


class EmbeddingModelError(MemoryRuntimeError):
    """The embedding model could not be located or loaded; the message names the fix."""
