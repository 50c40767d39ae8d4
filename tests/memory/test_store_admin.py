"""Whole-session operations and in-process footprint: rename (with the FTS index re-keyed), pages
of the session list, expiry, erase without rewriting the file, 0600 files, the bounded view cache,
views that notice a session replaced under them, and a first compile over a huge backlog that
embeds a bounded number of chunks and leaves the rest to the background."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from memory import InvalidArgumentError, create_runtime
from memory.recall.embedding_queue import EMBED_BATCH_CHARS, EMBED_NOW_CHARS
from memory.runtime import Runtime


@pytest.fixture
async def runtime(tmp_path: Path):
    rt = create_runtime(storage_path=tmp_path / "m.sqlite", embedding_model="none")
    async with rt:
        yield rt


def _msg(text: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": text}


async def test_rename_moves_every_row_and_the_full_text_index(runtime: Runtime) -> None:
    await runtime.session("k_old/plan").sync_messages([_msg("Decision: we ship qzrenamed on Friday.")], scope="k_old/alice")
    assert await runtime.rename_session("k_old/plan", "k_new/plan", "k_old/", "k_new/") is True
    assert not await runtime.session("k_old/plan").exists()
    moved = runtime.session("k_new/plan")
    export = await moved.export()
    assert {e["session_id"] for e in export["events"]} == {"k_new/plan"} and export["state"]["decisions"]
    assert await runtime.store.bm25("k_new/plan", "qzrenamed", 5) and not await runtime.store.bm25("k_old/plan", "qzrenamed", 5)
    result = await moved.compile("what do we ship?", budget_tokens=200)
    assert "qzrenamed" in str(result.messages)
    # The transcript scope moved with it: the new principal's requests match it, the old one's do not.
    assert await runtime.resolve_session([_msg("Decision: we ship qzrenamed on Friday."), _msg("more")], scope="k_new/alice") == "k_new/plan"
    assert await runtime.resolve_session([_msg("Decision: we ship qzrenamed on Friday."), _msg("more")], scope="k_old/alice") is None
    await runtime.session("k_other/plan").sync_messages([_msg("x")])
    with pytest.raises(InvalidArgumentError):
        await runtime.rename_session("k_new/plan", "k_other/plan")
    assert await runtime.rename_session("missing", "k_new/missing") is False


async def test_a_view_notices_its_session_was_replaced(runtime: Runtime) -> None:
    old = runtime.session("k_a/s")
    await old.sync_messages([_msg("the old secret is qzoldsecret")])
    await old.compile("secret?", budget_tokens=100)  # builds the in-process view
    await runtime.store.rename_session("k_a/s", "k_b/s")  # behind the runtime's back, as the CLI does
    await runtime.session("k_a/s").sync_messages([_msg("a brand new conversation")])
    result = await runtime.session("k_a/s").compile("secret?", budget_tokens=500)
    assert "qzoldsecret" not in str(result.messages)


async def test_pages_are_bounded_by_prefix_and_cursor(runtime: Runtime) -> None:
    for sid in ("a/1", "a/2", "a/3", "a0", "b/1", "legacy"):
        await runtime.session(sid).sync_messages([_msg(sid)])
    first = await runtime.page_sessions("a/", None, 2)
    assert [s.id for s in first] == ["a/1", "a/2"]
    assert [s.id for s in await runtime.page_sessions("a/", "a/2", 2)] == ["a/3"]
    assert [s.id for s in await runtime.page_sessions("", None, 10)] == ["a/1", "a/2", "a/3", "a0", "b/1", "legacy"]
    with pytest.raises(InvalidArgumentError):
        await runtime.page_sessions("a/", None, 0)


async def test_pages_count_events_as_the_session_list_does(runtime: Runtime) -> None:
    session = runtime.session("a/edited")
    await session.sync_messages([_msg("first"), _msg("reply one", "assistant"), _msg("second")])
    await session.sync_messages([_msg("first"), _msg("reply one, edited", "assistant"), _msg("second, edited")])
    (paged,) = await runtime.page_sessions("a/", None, 10)
    assert paged == (await runtime.store.list_sessions("a/edited"))[0]
    assert paged.messages == 3  # the edited-away events are not counted
    assert [s.id for s in await runtime.page_sessions("a/", None, 10, contains="EDIT")] == ["a/edited"]
    assert await runtime.page_sessions("a/", None, 10, contains="a/") == []


async def test_expiry_by_age_and_per_namespace_cap(runtime: Runtime, tmp_path: Path) -> None:
    for sid in ("a/1", "a/2", "a/3", "b/1", "legacy"):
        await runtime.session(sid).sync_messages([_msg(f"text of {sid}")])
    db = runtime.store.db  # type: ignore[attr-defined]
    now = time.time()
    for age, sid in ((5, "a/1"), (4, "a/2"), (3, "a/3"), (10, "b/1"), (1, "legacy")):
        await db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now - age * 86400, sid))
    assert await runtime.expire_sessions(keep_per_namespace=2) == ["a/1"]
    assert await runtime.expire_sessions(updated_before=now - 6 * 86400) == ["b/1"]
    assert [s.id for s in await runtime.page_sessions()] == ["a/2", "a/3", "legacy"]
    assert b"text of a/1" not in Path(tmp_path / "m.sqlite").read_bytes()


async def test_erase_zeroes_the_rows_without_rewriting_the_file(runtime: Runtime, tmp_path: Path) -> None:
    await runtime.session("keep").sync_messages([_msg("keep qzkeepword " * 50)])
    await runtime.session("gone").sync_messages([_msg("erase qzgoneword " * 200), _msg("```python\ndef qzgonefn():\n    return 1\n```", "assistant")])
    statements: list[str] = []
    await runtime.store.db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    assert await runtime.delete_sessions(["gone", "never-was"]) == ["gone"]
    await runtime.store.db.set_trace_callback(None)  # type: ignore[attr-defined]
    assert not [s for s in statements if s.strip().upper().startswith("VACUUM")]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("m.sqlite")]
    assert not [p.name for p in files if b"qzgone" in p.read_bytes()]
    assert any(b"qzkeepword" in p.read_bytes() for p in files)
    assert await runtime.store.bm25("keep", "qzkeepword", 5)


async def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "private.sqlite"
    async with create_runtime(storage_path=path, embedding_model="none") as rt:
        await rt.session("s").sync_messages([_msg("hello")])
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    loose = tmp_path / "loose.sqlite"
    sqlite3.connect(loose).close()
    os.chmod(loose, 0o644)
    async with create_runtime(storage_path=loose, embedding_model="none"):
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600  # an older world-readable file is tightened


async def test_the_view_cache_is_bounded(tmp_path: Path) -> None:
    async with Runtime(tmp_path / "lru.sqlite", embedding_model="none", max_views=3) as rt:
        for n in range(8):
            await rt.session(f"s{n}").sync_messages([_msg(f"note {n} qzlru{n}")])
            await rt.session(f"s{n}").compile("note?", budget_tokens=100)
        assert len(rt._views) == 3 and list(rt._views) == ["s5", "s6", "s7"]
        again = await rt.session("s0").compile("note?", budget_tokens=100)  # rebuilt from the store
        assert "qzlru0" in str(again.messages) and len(rt._views) == 3


@dataclass
class CountingEmbedder:
    """Deterministic vectors; counts the characters embedded per call, to see what a compile waits for."""

    name: str = "counting-test-embedder"
    dim: int = 8
    calls: list[int] = field(default_factory=list)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(sum(len(t) for t in texts))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8).astype(np.float32) + 1 for t in texts]
        matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def test_a_huge_first_history_embeds_a_bounded_batch_then_the_rest_in_the_background(tmp_path: Path) -> None:
    """The `bounded` consistency (the proxy's per-request path; the library's default is `strict`,
    see test_compile_consistency)."""
    embedder = CountingEmbedder()
    async with Runtime(tmp_path / "huge.sqlite", embedder=embedder, consistency="bounded") as rt:
        session = rt.session("huge")
        filler = " with enough words around it to make a paragraph of realistic length for one chat turn" * 4
        history = [_msg(f"message {n} about topic {n % 17} and item qzitem{n}{filler}", "user" if n % 2 == 0 else "assistant") for n in range(600)]
        await _sync_without_background(rt, session.id, history)  # ~1,200 chunks and probes (~400 KB), none embedded yet
        embedder.calls.clear()
        query = "what about item qzitem599?"
        result = await session.compile(query, budget_tokens=300)
        assert result.messages
        assert embedder.calls and embedder.calls[0] <= EMBED_NOW_CHARS + len(query)  # the compile waited for one bounded batch
        view = rt._views["huge"]
        assert view.missing  # the rest is left to the background...
        deadline = time.monotonic() + 60
        while rt._views["huge"].missing:
            assert time.monotonic() < deadline, "background embedding never finished"
            await asyncio.sleep(0.01)  # poll, bounded by the deadline
        assert max(embedder.calls[1:]) <= EMBED_BATCH_CHARS  # ...in bounded batches too


async def _sync_without_background(rt: Runtime, session_id: str, history: list[dict[str, str]]) -> None:
    scheduled = rt.embed_soon
    rt.embed_soon = lambda _sid: None  # type: ignore[method-assign]
    try:
        await rt.session(session_id).sync_messages(history)
    finally:
        rt.embed_soon = scheduled  # type: ignore[method-assign]
