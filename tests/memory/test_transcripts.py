"""The transcript cache (`memory.turn.transcripts`): a turn reads its session's transcript from
memory while the store's high-water mark stands still, and never serves a stale copy: not after an
edit or a retry, not after another runtime (another process) wrote the session, not after an erase.
Both stores: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from memory import create_runtime
from memory.records import TranscriptEntry
from memory.turn.transcripts import TranscriptCache


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return {"storage_path": tmp_path / "m.sqlite", "storage_url": url, "embedding_model": "none"}


class Reads:
    """Counts the store's full transcript reads (what the cache saves)."""

    def __init__(self, store) -> None:
        self.count = 0
        self._read = store.transcript

        async def counted(session_id):
            self.count += 1
            return await self._read(session_id)

        store.transcript = counted


def _loop(steps: int) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Fix the failing test in pkg/mod.py"}]
    for n in range(steps):
        messages.append({"role": "assistant", "content": f"step {n}",
                         "tool_calls": [{"id": f"c{n}", "type": "function", "function": {"name": "bash", "arguments": f'{{"command": "cat f{n}.py"}}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": f"def f{n}():\n    return {n}\n"})
    return messages


def _reply(n: int) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"c{n}", "type": "function", "function": {"name": "bash", "arguments": f'{{"command": "cat f{n}.py"}}'}}]}


async def _exchange(session, messages: list[dict], answer: str) -> None:
    plan = await session.prepare_turn(messages, 8000)
    await session.commit_turn(plan, {"role": "assistant", "content": answer})


async def _same_as_store(rt, session_id: str) -> None:
    cached = await rt.transcripts.read(rt.store, session_id)
    assert cached == await rt.store.transcript(session_id)


async def test_a_tool_loop_reads_the_transcript_once_then_from_memory(store_args):
    async with create_runtime(**store_args) as rt:
        reads = Reads(rt.store)
        session = rt.session("loop")
        for step in range(1, 7):
            messages = _loop(step - 1)
            before = reads.count
            plan = await session.prepare_turn(messages, 8000)
            await session.commit_turn(plan, _reply(step - 1))
            # The first turn reads the (empty) transcript once; every later one finds it current.
            assert reads.count - before == (1 if step == 1 else 0)
            await _same_as_store(rt, "loop")
        assert len(await rt.store.transcript("loop")) == 2 * 6


async def test_an_edit_and_a_retry_leave_no_stale_copy(store_args):
    async with create_runtime(**store_args) as rt:
        session = rt.session("edits")
        chat = [{"role": "user", "content": "first question"}]
        await _exchange(session, chat, "first answer")
        chat += [{"role": "assistant", "content": "first answer"}, {"role": "user", "content": "second question"}]
        await _exchange(session, chat, "second answer")
        await _same_as_store(rt, "edits")
        # A retry of the last turn regenerates its reply: the old one leaves the transcript.
        await _exchange(session, chat, "second answer, again")
        await _same_as_store(rt, "edits")
        assert [e.role for e in await rt.store.transcript("edits")] == ["user", "assistant", "user", "assistant"]
        before = await rt.transcripts.read(rt.store, "edits")
        # An edit of the second question detaches it and what came after it.
        edited = chat[:2] + [{"role": "user", "content": "the second question, edited"}]
        await _exchange(session, edited, "an answer to the edit")
        await _same_as_store(rt, "edits")
        after = await rt.transcripts.read(rt.store, "edits")
        assert len(after) == 4 and after[:2] == before[:2] and after[2].msg_hash != before[2].msg_hash


async def test_a_write_by_another_runtime_is_seen(store_args):
    async with create_runtime(**store_args) as rt:
        session = rt.session("shared")
        chat = [{"role": "user", "content": "hello"}]
        await _exchange(session, chat, "hi")
        mine = await rt.transcripts.read(rt.store, "shared")
        assert len(mine) == 2
        # Another process serving the same memory continues the conversation.
        async with create_runtime(**store_args) as other:
            more = chat + [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "and then?"}]
            await _exchange(other.session("shared"), more, "then this")
        seen = await rt.transcripts.read(rt.store, "shared")
        assert len(seen) == 4 and seen == await rt.store.transcript("shared")
        # Erased (by anyone) and started again: nothing of the old copy comes back.
        await rt.delete_session("shared")
        assert await rt.transcripts.read(rt.store, "shared") == []
        await _exchange(session, [{"role": "user", "content": "a new start"}], "fresh")
        await _same_as_store(rt, "shared")
        assert len(await rt.transcripts.read(rt.store, "shared")) == 2


class FakeReads:
    """A store's two reads the cache uses, for the bound's arithmetic."""

    def __init__(self, transcripts: dict) -> None:
        self.transcripts = transcripts
        self.reads = 0

    async def high_water(self, session_id):
        return len(self.transcripts[session_id]), 0, 1

    async def transcript(self, session_id):
        self.reads += 1
        return list(self.transcripts[session_id])


def _entries(n: int) -> list[TranscriptEntry]:
    return [TranscriptEntry(i, f"h{i}", f"c{i}", i + 1, "user") for i in range(n)]


async def test_the_copies_stay_within_their_bound():
    reads = FakeReads({"a": _entries(40), "b": _entries(50), "c": _entries(30), "huge": _entries(101)})
    cache = TranscriptCache(max_sessions=10, max_entries=100)
    for sid in ("a", "b"):
        await cache.read(reads, sid)
    assert cache.size == 90
    await cache.read(reads, "a")  # a hit: "a" is now the most recently used
    assert reads.reads == 2
    await cache.read(reads, "c")  # 120 > 100: the least recently used ("b") leaves
    assert cache.size == 70
    await cache.read(reads, "a")
    await cache.read(reads, "b")
    assert reads.reads == 4  # "a" was kept, "b" read again
    await cache.read(reads, "huge")  # longer than the bound: served, never kept
    await cache.read(reads, "huge")
    assert reads.reads == 6 and cache.size <= 100
