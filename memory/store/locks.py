"""Per-session mutual exclusion inside one process.

One `asyncio.Lock` per session id, created on first use and dropped as soon as nobody holds or
waits on it, so the map never grows beyond the sessions in flight. A store shared by several
processes (PostgreSQL) adds its own cross-process lock on top; SQLite serves one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["SessionLocks"]


class SessionLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[session_id] -= 1
            if self._users[session_id] == 0:
                del self._users[session_id]
                del self._locks[session_id]

    def users(self, session_id: str) -> int:
        """Tasks holding or waiting for the session's lock (a waiter can be seen waiting)."""
        return self._users.get(session_id, 0)

    def __len__(self) -> int:
        return len(self._locks)
