"""The per-session lock: one session at a time, other sessions never wait, nothing kept after."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory.store.locks import FileSessionLocks, SessionLocks
from memory.store.sqlite.store import SqliteStore


async def test_one_session_is_serialised_and_others_run_alongside() -> None:
    locks = SessionLocks()
    order: list[str] = []
    gate = asyncio.Event()

    async def hold(session: str, name: str, wait: bool) -> None:
        async with locks.hold(session):
            order.append(f"{name}+")
            if wait:
                await gate.wait()
            order.append(f"{name}-")

    first = asyncio.create_task(hold("a", "a1", True))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("a", "a2", False))
    other = asyncio.create_task(hold("b", "b1", False))
    await other
    assert order == ["a1+", "b1+", "b1-"]  # b ran while a1 held a; a2 waits
    gate.set()
    await asyncio.gather(first, second)
    assert order[3:] == ["a1-", "a2+", "a2-"]
    assert len(locks) == 0  # nothing kept once nobody holds or waits


# Across processes: a byte of `<db>-locks` per session (memory.store.locks.FileSessionLocks).

def _file_locks(path: Path) -> FileSessionLocks:
    locks = FileSessionLocks(str(path), SessionLocks())
    locks.open()
    return locks


async def test_two_stores_on_one_file_exclude_each_other_per_session(tmp_path: Path) -> None:
    # Two lock files opened separately stand for two processes (the locks belong to the open file).
    first, second = _file_locks(tmp_path / "m-locks"), _file_locks(tmp_path / "m-locks")
    released = asyncio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with first.hold("a"):
            order.append("first+")
            await released.wait()
            order.append("first-")

    task = asyncio.create_task(holder())
    while not order:
        await asyncio.sleep(0)
    async with second.hold("b"):  # another session: no wait
        order.append("second b")
    waiter = asyncio.create_task(_enter(second, "a", order))
    await asyncio.sleep(0.05)  # room for a wrong lock to be granted; the assertion below does not rely on timing
    assert order == ["first+", "second b"]
    released.set()
    await asyncio.gather(task, waiter)
    assert order == ["first+", "second b", "first-", "second a"]
    first.close()
    second.close()


async def _enter(locks: FileSessionLocks, session: str, order: list[str]) -> None:
    async with locks.hold(session):
        order.append(f"second {session}")


async def test_a_cancelled_waiter_leaves_the_byte_free(tmp_path: Path) -> None:
    first, second, third = (_file_locks(tmp_path / "m-locks") for _ in range(3))
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with first.hold("a"):
            entered.set()
            await gate.wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    waiter = asyncio.create_task(_enter(second, "a", []))
    await asyncio.sleep(0.05)  # let the waiter's thread block on the byte
    waiter.cancel()
    gate.set()  # the holder lets go; the cancelled waiter's thread takes the byte, then gives it back
    await task
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(second.local) == 0
    async with third.hold("a"):  # free again: would wait forever if the cancelled waiter kept it
        pass
    for locks in (first, second, third):
        locks.close()


_HOLD_IN_CHILD = """
import asyncio, sys
from memory.store.locks import FileSessionLocks, SessionLocks

async def main():
    locks = FileSessionLocks(sys.argv[1], SessionLocks())
    locks.open()
    async with locks.hold("a"):
        print("held", flush=True)
        sys.stdin.readline()  # holds until killed

asyncio.run(main())
"""


async def test_a_killed_process_releases_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "m-locks"
    child = subprocess.Popen([sys.executable, "-c", _HOLD_IN_CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        mine = _file_locks(path)
        waiter = asyncio.create_task(_enter(mine, "a", []))
        done, _ = await asyncio.wait([waiter], timeout=0.2)
        assert not done  # the child holds the session
        async with mine.hold("b"):  # and only that one
            pass
        child.kill()  # no unlock, no clean exit: the kernel releases the lock
        await asyncio.wait_for(waiter, timeout=10)
        mine.close()
    finally:
        child.kill()
        child.wait()


async def test_the_sqlite_store_locks_across_stores_of_one_file(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path / "m.sqlite"), SqliteStore(tmp_path / "m.sqlite")
    await one.open()
    await two.open()
    try:
        assert (tmp_path / "m.sqlite-locks").exists() and (tmp_path / "m.sqlite-locks").stat().st_mode & 0o077 == 0
        async with one.session_lock("s"):
            waiter = asyncio.create_task(_hold_store(two, "s"))
            done, _ = await asyncio.wait([waiter], timeout=0.2)
            assert not done
        await asyncio.wait_for(waiter, timeout=10)
    finally:
        await one.close()
        await two.close()


async def _hold_store(store: SqliteStore, session: str) -> None:
    async with store.session_lock(session):
        pass
