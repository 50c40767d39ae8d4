from __future__ import annotations

import asyncio

from proxy.context import SessionLocks, drop_orphan_tool_messages, split_tail
from testkit.checks import orphan_problems

CALL = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_split_tail_starts_at_the_last_user_message() -> None:
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, CALL, {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    assert split_tail(msgs) == 3


def test_split_tail_without_user_keeps_tool_results_with_their_call() -> None:
    msgs = [{"role": "system", "content": "s"}, CALL, {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    assert split_tail(msgs) == 1
    assert split_tail([{"role": "assistant", "content": "x"}]) == 0


def test_orphans_are_dropped() -> None:
    msgs = [
        {"role": "user", "content": "u"},
        {"role": "tool", "tool_call_id": "zz", "content": "orphan"},
        {"role": "assistant", "content": "thinking", "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        CALL,
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "user", "content": "v"},
    ]
    out = drop_orphan_tool_messages(msgs)
    assert orphan_problems(out) == []
    assert {"role": "assistant", "content": "thinking"} in out
    assert CALL in out and len(out) == 5


async def test_session_locks_serialise_one_session_only() -> None:
    locks = SessionLocks()
    order: list[str] = []

    async def work(sid: str, tag: str, hold: asyncio.Event | None, wait: asyncio.Event | None) -> None:
        async with locks.hold(sid):
            order.append(f"start {tag}")
            if hold is not None:
                hold.set()
            if wait is not None:
                await wait.wait()
            order.append(f"end {tag}")

    in_a, release_a = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(work("s1", "a", in_a, release_a))
    await in_a.wait()
    second = asyncio.create_task(work("s1", "b", None, None))
    other = asyncio.create_task(work("s2", "c", None, None))
    await other  # another session is not blocked by s1's holder
    assert order == ["start a", "start c", "end c"]
    release_a.set()
    await asyncio.gather(first, second)
    assert order[3:] == ["end a", "start b", "end b"]
    assert len(locks) == 0
