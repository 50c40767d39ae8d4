"""A session's view saved beside the data (`memory.recall.snapshot`, migrations m007 and m008 on
both backends): a restart reads it instead of every row and compiles exactly what a view built from
the rows compiles; rows stored after it are read on top; a snapshot of another generation, one
that lacks a part or does not decode, is ignored; a running process saves it without closing (so a
crash leaves it); a snapshot saved whole before parts is read; erasing the session erases it."""

from __future__ import annotations

import marshal
import sqlite3
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memory.recall.snapshot as snapshot_module
import memory.recall.views as views_module
from memory import create_runtime
from memory.recall.index import Unit
from memory.recall.snapshot import fmt
from memory.recall.views import Views
from memory.records import SessionDelta
from memory.runtime import Runtime
from memory.store.reads import SqlReads
from testkit.embedders import HashEmbedder
from testkit.raw_sql import run_sql

BUDGET = 600
QUESTION = "Which cache size did we pick for the parser of file 70?"


def _chat(start: int, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        if i % 2 == 0:
            out.append({"type": "user_message", "payload": {"content": f"Message {i}: how big should the parser cache be for file {i * 7}?"}})
        elif i % 10 == 3:
            out.append({"type": "assistant_message", "payload": {"content": f"Message {i}: like this\n```python\nCACHE_{i} = {i * 13}\n"
                                                                            f"def parse_{i}(text):\n    return text[:{i}]\n```\n"}})
        else:
            out.append({"type": "assistant_message", "payload": {"content": f"Message {i}: size it at {i * 13} entries; the parser "
                                                                            f"rereads file {i * 7} otherwise."}})
    return out


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Events and chunks each view load reads from the store; snapshots saved after one row, in
    parts of a few hundred bytes (dozens of parts)."""
    seen: list[int] = []
    original = SqlReads.load_delta

    async def load_delta(self: SqlReads, *args: Any, **kwargs: Any) -> SessionDelta:
        delta = await original(self, *args, **kwargs)
        seen.append(len(delta.events) + len(delta.chunks))
        return delta

    monkeypatch.setattr(SqlReads, "load_delta", load_delta)
    monkeypatch.setattr(views_module, "SNAPSHOT_AFTER", 1)
    monkeypatch.setattr(snapshot_module, "PART_BYTES", 300)
    yield seen


def _runtime(kind: str, where: str) -> Runtime:
    return create_runtime(storage_path=where, embedder=HashEmbedder()) if kind == "sqlite" else \
        create_runtime(embedder=HashEmbedder(), storage_url=where)


def _where(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "m.sqlite") if kind == "sqlite" else str(request.getfixturevalue("pg_url"))


def _sql(kind: str, where: str, statement: str) -> list[Any]:
    return run_sql(kind, where, [statement])[0]


async def _compile(runtime: Runtime) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    result = await runtime.session("s").compile(user_message=QUESTION, budget_tokens=BUDGET, model="gpt-4o-mini")
    assert not result.over_budget
    return result.messages, result.manifest


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_restart_reads_the_snapshot_and_compiles_the_same(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                                  rows_read: list[int]) -> None:
    where = _where(kind, tmp_path, request)
    async with _runtime(kind, where) as runtime:
        await runtime.session("s").ingest_many(_chat(0, 120))
        built = await _compile(runtime)  # a view built from the rows; closing saves it
    assert sum(rows_read) > 120
    assert _sql(kind, where, "SELECT count(*), max(max_event) FROM view_snapshots WHERE session_id = 's'") == \
        _sql(kind, where, "SELECT 1, max(id) FROM events WHERE session_id = 's'")
    assert _sql(kind, where, "SELECT count(*) > 20, min(part), max(part) = count(*) FROM view_snapshot_parts")[0][:2] == (True, 1)

    rows_read.clear()
    async with _runtime(kind, where) as runtime:
        assert await _compile(runtime) == built
        assert sum(rows_read) == 0  # nothing but the snapshot read
        await runtime.session("s").ingest_many(_chat(120, 40))
        grown = await _compile(runtime)  # the snapshot's view, then the rows after its marks
    assert grown != built

    _sql(kind, where, "DELETE FROM view_snapshots")
    async with _runtime(kind, where) as runtime:
        assert await _compile(runtime) == grown  # the same view from the rows alone


@pytest.mark.parametrize("damage", ["UPDATE view_snapshots SET generation = generation + 1",
                                    "UPDATE view_snapshots SET max_chunk = max_chunk + 1000",
                                    "UPDATE view_snapshots SET data = x'0102'",
                                    "UPDATE view_snapshots SET format = 'view0'",
                                    "DELETE FROM view_snapshot_parts WHERE part = (SELECT max(part) FROM view_snapshot_parts)",
                                    "DELETE FROM view_snapshot_parts WHERE part = 3",
                                    "UPDATE view_snapshot_parts SET data = x'0102' WHERE part = 2"])
async def test_a_snapshot_that_does_not_fit_is_ignored(damage: str, tmp_path: Path, rows_read: list[int]) -> None:
    where = str(tmp_path / "m.sqlite")
    async with _runtime("sqlite", where) as runtime:
        await runtime.session("s").ingest_many(_chat(0, 60))
        built = await _compile(runtime)
    _sql("sqlite", where, damage)
    rows_read.clear()
    async with _runtime("sqlite", where) as runtime:
        assert await _compile(runtime) == built
    assert sum(rows_read) > 60  # built from the rows
    # and a fitting one stored again when that runtime closed
    assert _sql("sqlite", where, f"SELECT count(*) FROM view_snapshots WHERE format = '{fmt(HashEmbedder().dim)}' AND length(data) > 2") == [(1,)]


async def test_a_vector_stored_after_the_snapshot_is_read(tmp_path: Path, rows_read: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    where = str(tmp_path / "m.sqlite")
    async with _runtime("sqlite", where) as runtime:
        await runtime.session("s").ingest_many(_chat(0, 60))
        built = await _compile(runtime)
    # A snapshot saved while no chunk had a vector: the vectors taken away, the view built and
    # saved without embedding anything, then the vectors stored again (as the background would).
    held = _sql("sqlite", where, "SELECT model, content_hash, vector FROM embeddings")
    _sql("sqlite", where, "DELETE FROM embeddings")
    _sql("sqlite", where, "DELETE FROM view_snapshots")
    with monkeypatch.context() as patched:
        patched.setattr(Runtime, "embed_for", _no_embedding)
        patched.setattr(Runtime, "embed_soon", lambda self, session_id: None)
        async with _runtime("sqlite", where) as runtime:
            await runtime.loaded_view("s")
    con = sqlite3.connect(where)
    con.executemany("INSERT INTO embeddings(model, content_hash, vector) VALUES (?, ?, ?)", held)
    con.commit()
    con.close()
    embedded: list[str] = []
    original = HashEmbedder.embed

    def embed(self: HashEmbedder, texts: Sequence[str]) -> np.ndarray:
        embedded.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(HashEmbedder, "embed", embed)
    rows_read.clear()
    async with _runtime("sqlite", where) as runtime:
        assert await _compile(runtime) == built
    assert sum(rows_read) == 0
    assert embedded == [QUESTION]  # the chunks' vectors read from the store, none embedded again


async def _no_embedding(*args: Any, **kwargs: Any) -> None:  # the chunks left without vectors
    return None


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_renaming_or_erasing_a_session_carries_or_erases_its_snapshot(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                                            rows_read: list[int]) -> None:
    where = _where(kind, tmp_path, request)
    async with _runtime(kind, where) as runtime:
        await runtime.session("s").ingest_many(_chat(0, 30))
        await _compile(runtime)
    assert _sql(kind, where, "SELECT count(*) FROM view_snapshots") == [(1,)]
    parts = _sql(kind, where, "SELECT count(*) FROM view_snapshot_parts")[0][0]
    assert parts > 1
    async with _runtime(kind, where) as runtime:
        assert await runtime.rename_session("s", "t")  # the parts go with their snapshot
    assert _sql(kind, where, "SELECT count(*) FROM view_snapshot_parts WHERE snapshot = 't'") == [(parts,)]
    async with _runtime(kind, where) as runtime:
        assert await runtime.delete_session("t")
    assert _sql(kind, where, "SELECT count(*) FROM view_snapshots") == [(0,)]
    assert _sql(kind, where, "SELECT count(*) FROM view_snapshot_parts") == [(0,)]


async def test_a_running_process_saves_the_snapshot_a_crash_leaves(tmp_path: Path, rows_read: list[int],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    where = str(tmp_path / "m.sqlite")
    with monkeypatch.context() as patched:
        patched.setattr(Views, "save", _nothing_saved)  # as if the process were killed: nothing saved at close
        async with _runtime("sqlite", where) as runtime:
            await runtime.session("s").ingest_many(_chat(0, 60))
            built = await _compile(runtime)
            await runtime._views.idle()  # the background save, at the first quiet moment
            assert _sql("sqlite", where, "SELECT count(*), max(max_event) FROM view_snapshots") == \
                _sql("sqlite", where, "SELECT 1, max(id) FROM events")
            await runtime.session("s").ingest_many(_chat(60, 10))
            grown = await _compile(runtime)
            await runtime._views.idle()  # 10 messages loaded since: saved again (SNAPSHOT_AFTER is 1 here)
            assert _sql("sqlite", where, "SELECT count(*), max(max_event) FROM view_snapshots") == \
                _sql("sqlite", where, "SELECT 1, max(id) FROM events")
    assert grown != built
    rows_read.clear()
    async with _runtime("sqlite", where) as runtime:
        assert await _compile(runtime) == grown
    assert sum(rows_read) == 0


async def _nothing_saved(self: Views, *args: Any) -> int:
    return 0


async def test_a_snapshot_saved_whole_before_parts_is_read(tmp_path: Path, rows_read: list[int]) -> None:
    where = str(tmp_path / "m.sqlite")
    async with _runtime("sqlite", where) as runtime:
        await runtime.session("s").ingest_many(_chat(0, 60))
        built = await _compile(runtime)
        whole = _whole_blob(runtime._views["s"])
    _sql("sqlite", where, "DELETE FROM view_snapshot_parts")
    con = sqlite3.connect(where)
    con.execute("UPDATE view_snapshots SET data = ?", (whole,))
    con.commit()
    con.close()
    rows_read.clear()
    async with _runtime("sqlite", where) as runtime:
        assert await _compile(runtime) == built
    assert sum(rows_read) == 0


def astuple_shallow(unit: Unit) -> tuple[Any, ...]:
    return tuple(getattr(unit, f.name) for f in fields(Unit))


def _whole_blob(view: Any) -> bytes:
    """A snapshot as 9a8fac9 saved it: the whole view in one marshal blob, no parts."""
    c, hv = view._columns, view._vectors
    codes, scales = hv.matrix()
    keys = list(view.units)
    index = {k: i for i, k in enumerate(keys)}
    texts = [(pos, text) for pos, text in enumerate(c.text) if text is not None]
    return marshal.dumps({
        "dim": view.dim, "generation": view.generation, "marks": (view.max_event, view.max_artifact, view.max_chunk),
        "created_at": view.created_at, "units": [astuple_shallow(u) for u in view.units.values()], "keys": keys,
        "is_message": bytes(u.role is not None and u.key[0] == "e" for u in view.units.values()),
        "unit": array("i", [index[k] for k in c.unit]).tobytes(),
        **{name: getattr(c, name).tobytes() for name in ("render", "hash_row", "ord", "start", "end", "tokens", "ids", "parent")},
        "text_pos": array("i", [p for p, _ in texts]).tobytes(), "texts": [t for _, t in texts],
        "hashes": list(hv.hashes), "without": sorted(hv.without), "codes": codes.tobytes(), "scales": scales.tobytes(),
        "missing": sorted(view.missing), "artifact_ids": list(view._artifact_ids.items()), "pinned": sorted(view.pinned),
        "source_order": dict(view.source_order), "quoted": {k: sorted(v) for k, v in view.quoted.items()},
    })
