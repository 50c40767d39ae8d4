"""Per-session mutual exclusion: inside one process, and across the processes sharing a SQLite file.

`SessionLocks`: one `asyncio.Lock` per session id, created on first use and dropped as soon as
nobody holds or waits on it, so the map never grows beyond the sessions in flight.

`FileSessionLocks`: the same, then a lock on one byte of a lock file beside the database (`<db>-locks`),
at an offset drawn from the session id's sha256 (62 bits: two sessions share a byte with
probability ~2^-62, so different sessions never wait on each other). Chosen over PostgreSQL-style
advisory locks (SQLite has none) and over a lock file per session (files that pile up, and a
delete that races a locker): one file, always empty, nothing to clean up. The lock is Linux's
open-file-description lock (`F_OFD_SETLKW`): owned by this open file, not by the process, so two
stores in one process exclude each other too, and closing an unrelated descriptor of the file
releases nothing; the kernel releases it when the process ends, crash included. Elsewhere
(macOS) POSIX record locks (`lockf`), which are per process: enough for `serve --workers`, one
store per process.

A free lock is taken without leaving the event loop; a held one is waited for on a thread of its
own, so a wait never occupies the loop's default executor (which the holder in this process may
need to finish and release). A waiter cancelled meanwhile still waits for its thread, then releases
what the thread took: the byte is never left locked by nobody.

Tree of the errors raised here: none of their own; an unusable lock file raises `StorageError`.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import struct
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from memory.errors import StorageError

__all__ = ["SessionLocks", "FileSessionLocks", "lock_offset"]

# The kernel's struct flock on 64-bit Linux: l_type, l_whence (short), l_start, l_len (off_t),
# l_pid (pid_t, 0 for open-file-description locks), padded to 32 bytes.
_FLOCK = "hhqqi4x"
# (try, wait) commands of open-file-description locks, where the platform has them.
_OFD: tuple[int, int] | None = (fcntl.F_OFD_SETLK, fcntl.F_OFD_SETLKW) if hasattr(fcntl, "F_OFD_SETLKW") else None


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


def lock_offset(session_id: str) -> int:
    """The byte of the lock file that stands for `session_id` (below 2^62)."""
    return int.from_bytes(hashlib.sha256(session_id.encode("utf-8")).digest()[:8], "big") >> 2


class FileSessionLocks:
    """Session locks held across every process that opens the same lock file (see the module docstring).

    Waiters of this process queue on `local` first, so the file sees at most one waiter per session
    per process. Until `open()` (and for an in-memory database, which no other process can share)
    only the in-process lock is taken."""

    def __init__(self, path: str, local: SessionLocks) -> None:
        self.path = path
        self.local = local
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is not None:
            return
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the session lock file {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the lock file (which releases whatever this store still holds)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        async with self.local.hold(session_id):
            fd = self._fd
            if fd is None:
                yield
                return
            offset = lock_offset(session_id)
            if not _try_lock(fd, offset):
                await _wait_for_lock(fd, offset)
            try:
                yield
            finally:
                _unlock(fd, offset)


def _try_lock(fd: int, offset: int) -> bool:
    """Take the byte if it is free; False when another holder has it."""
    try:
        if _OFD is None:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        else:
            fcntl.fcntl(fd, _OFD[0], struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise StorageError(f"session lock failed: {exc}") from exc
    return True


def _lock(fd: int, offset: int) -> None:
    """Take the byte, waiting as long as another holder has it (on the calling thread)."""
    if _OFD is None:
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)  # POSIX locks: per process (see the module docstring)
    else:
        fcntl.fcntl(fd, _OFD[1], struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))


def _unlock(fd: int, offset: int) -> None:
    if _OFD is None:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
    else:
        fcntl.fcntl(fd, _OFD[0], struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0))


async def _wait_for_lock(fd: int, offset: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.cancelled():
            done.set_result(None) if error is None else done.set_exception(error)

    def wait() -> None:
        try:
            _lock(fd, offset)
        except BaseException as exc:  # reported to the waiter, never lost on this thread
            loop.call_soon_threadsafe(settle, StorageError(f"session lock failed: {exc}"))
            return
        loop.call_soon_threadsafe(settle, None)

    threading.Thread(target=wait, name="memory session lock", daemon=True).start()
    cancelled = False
    while True:
        try:
            await asyncio.shield(done)
            break
        except asyncio.CancelledError:
            # The thread cannot be interrupted: keep the in-process lock until it returns, then
            # give back what it took, and only then let the cancellation through.
            if done.done():
                break
            cancelled = True
    if cancelled:
        if done.exception() is None:
            _unlock(fd, offset)
        raise asyncio.CancelledError
    done.result()
