"""The per-session lock: one session at a time, other sessions never wait, nothing kept after."""

from __future__ import annotations

import asyncio

from memory.store.locks import SessionLocks


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
