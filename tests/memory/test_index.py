"""The session view's vectors: int8 codes with a scale per row, scanned without a float copy, and
a view loaded in slices equal to one loaded at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import memory.recall.views as views_module
from memory import create_runtime
from memory.recall.embeddings import Embedder
from memory.recall.index import SessionView, quantize
from memory.records import ChunkRow, EventRow, SessionDelta

DIM = 384


def _unit_rows(n: int, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    normed: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normed


def _delta(n: int) -> SessionDelta:
    events = [EventRow(i + 1, "user_message", "user", f"text {i}", None, False, None, {}, None, None, 5) for i in range(n)]
    chunks = [ChunkRow(100 + i, i + 1, None, 0, f"text {i}", 1, 1, f"h{i}", None, 3) for i in range(n)]
    return SessionDelta(events, [], chunks)


def delta_parts(delta: SessionDelta, chunks: int) -> list[SessionDelta]:
    """`delta` as parts applied in order: the first has every event and the first `chunks` chunks."""
    parts = [SessionDelta(delta.events, delta.artifacts, delta.chunks[:chunks])]
    return parts + [SessionDelta([], [], delta.chunks[i : i + chunks]) for i in range(chunks, len(delta.chunks), chunks)]


def test_codes_give_back_each_vector_within_half_a_step() -> None:
    rows = _unit_rows(500)
    codes, scales = quantize(rows)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and codes.shape == rows.shape
    back = codes.astype(np.float32) * scales[:, None]
    assert np.all(np.abs(back - rows) <= scales[:, None] / 2 + 1e-7)
    assert np.abs(codes).max() == 127  # each row uses the whole range
    zero_codes, zero_scales = quantize(np.zeros((2, DIM), dtype=np.float32))
    assert not zero_codes.any() and np.all(zero_scales == 1.0)


def test_similarities_rank_as_float32_does(real_embedder: Embedder) -> None:
    texts = [f"The parser cache holds {n} entries after the {w} migration" for n in range(40) for w in ("first", "second")]
    texts += ["How do I bake bread?", "The weather in Lisbon is mild", "Token counts are stored at ingest"]
    rows = real_embedder.embed(texts)
    view = SessionView(real_embedder.dim)
    delta = SessionDelta([EventRow(i + 1, "user_message", "user", t, None, False, None, {}, None, None, None) for i, t in enumerate(texts)], [],
                         [ChunkRow(i + 1, i + 1, None, 0, t, 1, 1, f"h{i}", None, 0) for i, t in enumerate(texts)])
    view.apply(delta, {f"h{i}": rows[i].tobytes() for i in range(len(texts))})
    for query in ("how many entries does the parser cache hold", "counting tokens when ingesting"):
        q = real_embedder.embed([query])[0]
        exact, coded = rows @ q, view.similarities(q)
        assert np.abs(exact - coded).max() < 0.01
        assert list(np.argsort(-exact)[:5]) == list(np.argsort(-coded)[:5])
    assert np.abs(view.vector(3) - rows[3]).max() < 0.01


def test_a_view_loaded_in_parts_is_the_view_loaded_at_once() -> None:
    rows = _unit_rows(50)
    vectors = {f"h{i}": rows[i].tobytes() for i in range(50) if i % 7}  # every 7th missing
    whole, parted = SessionView(DIM), SessionView(DIM)
    whole.apply(_delta(50), vectors)
    parts = delta_parts(_delta(50), 16)
    assert [len(p.chunks) for p in parts] == [16, 16, 16, 2] and [len(p.events) for p in parts] == [50, 0, 0, 0]
    for part in parts:
        parted.apply(part, {c.content_hash: vectors[c.content_hash] for c in part.chunks if c.content_hash in vectors})
    q = rows[1]
    assert np.array_equal(whole.similarities(q), parted.similarities(q))
    assert whole.missing == parted.missing == {i for i in range(50) if i % 7 == 0}
    assert whole.chunk_ids == parted.chunk_ids and [u.tokens for u in parted.messages] == [5] * 50
    parted.set_vector(7, rows[7])
    assert 7 not in parted.missing and abs(float(parted.similarities(rows[7])[7]) - 1.0) < 0.01


def test_chunks_are_given_back_as_stored_and_texts_share_one_vector_row() -> None:
    rows = _unit_rows(3)
    events = [EventRow(i + 1, "user_message", "user", f"text {i}", None, False, None, {}, None, None, 5) for i in range(4)]
    chunks = [ChunkRow(10, 1, None, 0, "same words", 1, 2, "hA", None, 3), ChunkRow(11, 1, None, 0, "probe of 10", 0, 0, "hP", 10, 4),
              ChunkRow(12, 2, None, 0, "same words", 1, 2, "hA", None, 3), ChunkRow(13, 3, None, 0, "no vector yet", 1, 1, "hB", None, 2),
              ChunkRow(14, 4, None, 0, "probe, no vector", 0, 0, "hQ", 13, 2)]
    view = SessionView(DIM)
    view.apply(SessionDelta(events, [], chunks), {"hA": rows[0].tobytes(), "hP": rows[1].tobytes()})
    assert [view.chunk_rows[p] for p in range(5)] == [c._replace(text="") if c.id == 11 else c for c in chunks]  # a probe with a vector keeps no text
    assert list(view.render_pos) == [0, 0, 2, 3, 3] and view.missing == {3, 4}
    assert view.chunk_pos.get(12) == 2 and view.chunk_pos.get(99) is None and view.unknown_hashes(SessionDelta([], [], chunks)) == ["hB", "hQ"]
    sims = view.similarities(rows[0])
    assert sims[0] == sims[2] and abs(float(sims[0]) - 1.0) < 0.01 and sims[3] == 0.0
    view.set_vector(4, rows[2])
    assert 4 not in view.missing and view.chunk_rows[4].text == "" and abs(float(view.similarities(rows[2])[4]) - 1.0) < 0.01
    assert view.chunk_rows[3].text == "no vector yet"  # still to be embedded


async def test_a_session_reopened_in_pages_compiles_as_one_loaded_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        real_embedder: Embedder) -> None:
    db = tmp_path / "m.sqlite"
    async with create_runtime(storage_path=db, embedder=real_embedder) as runtime:
        session = runtime.session("s")
        for i in range(12):
            await session.ingest({"type": "user_message", "payload": {"content": f"The cache for module {i} holds {i * 7} entries"}})
            await session.ingest({"type": "assistant_message", "payload": {"content": f"Noted: module {i} and its {i * 7} entries"}})
            await session.ingest({"type": "snippet", "payload": {"source": f"src/m{i % 3}.py", "content": f"def m{i}():\n    return {i}\n" * 3}})
        await session.flush()

    async def compiled() -> tuple[list[dict[str, object]], list[int]]:
        async with create_runtime(storage_path=db, embedder=real_embedder) as runtime:
            out = [(await runtime.session("s").compile(q, budget_tokens=300)).manifest for q in ("entries of module 5?", "what does m2 return")]
            return out, list((await runtime.loaded_view("s")).render_pos)

    whole = await compiled()
    monkeypatch.setattr(views_module, "LOAD_PAGE", 4)  # pages that split chunks from their probes
    assert await compiled() == whole and len(whole[1]) > 8
