"""Background embedding waits for a quiet moment between turns, and never longer than its bound."""

from __future__ import annotations

import asyncio

from memory.recall.quiet import TurnActivity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_while_a_turn_is_busy_then_for_the_quiet_period() -> None:
    clock = Clock()
    activity = TurnActivity(quiet_s=0.25, max_wait_s=2.0, clock=clock)
    assert activity.wait_needed(since=clock.now) == 0.0  # nothing has happened yet: run now

    async def scenario() -> None:
        async with activity.busy():
            assert activity.wait_needed(since=clock.now) == 0.25
            clock.now += 1.0
        # The turn ended at 101.0: a batch waits until 101.25.
        assert activity.wait_needed(since=clock.now) == 0.25
        clock.now += 0.1
        assert abs(activity.wait_needed(since=clock.now) - 0.15) < 1e-9
        clock.now += 0.15
        assert activity.wait_needed(since=clock.now) == 0.0

    asyncio.run(scenario())


def test_never_starved_by_constant_turns() -> None:
    clock = Clock()
    activity = TurnActivity(quiet_s=0.25, max_wait_s=2.0, clock=clock)
    since = clock.now

    async def scenario() -> None:
        async with activity.busy():
            clock.now += 1.9
            assert abs(activity.wait_needed(since) - 0.1) < 1e-9  # capped by what is left of the bound
            clock.now += 0.1
            assert activity.wait_needed(since) == 0.0  # waited max_wait_s: runs, busy or not

    asyncio.run(scenario())


def test_quiet_returns_once_the_turns_are_done() -> None:
    async def scenario() -> None:
        activity = TurnActivity(quiet_s=0.01, max_wait_s=30.0)
        order: list[str] = []
        release = asyncio.Event()

        async def turn() -> None:
            async with activity.busy():
                await release.wait()
                order.append("turn done")

        async def batch() -> None:
            await activity.quiet()
            order.append("batch")

        running = asyncio.create_task(turn())
        await asyncio.sleep(0)  # the turn is now busy
        waiting = asyncio.create_task(batch())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiting.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(running, waiting), timeout=10)
        assert order == ["turn done", "batch"]

    asyncio.run(scenario())
