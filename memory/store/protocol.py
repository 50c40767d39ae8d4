"""The storage interface the runtime is written against: `Store` (reads, the write transaction,
whole-session operations such as erase, rename and expiry) and `StoreTx` (the writes inside one
transaction, which also reads its own writes).

Both stores share every statement but full-text search, id allocation, chunk inserts and locking,
so the interface is the shared classes themselves (`memory.store.reads`, `memory.store.writes`), each
method written and documented once there; `SqliteStore` (one embedded file) and `PgStore` (several
proxy instances sharing one memory) add only what their backend does in its own way. Everything
above this line speaks in records (`memory.records`), never in rows or SQL.
"""

from __future__ import annotations

from memory.store.writes import SqlStore as Store
from memory.store.writes import SqlWrites as StoreTx

__all__ = ["Store", "StoreTx"]
