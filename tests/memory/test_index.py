"""The session view's vectors: int8 codes with a scale per row, scanned without a float copy, and
a view loaded in slices equal to one loaded at once."""

from __future__ import annotations

import numpy as np

from memory.recall.embeddings import Embedder
from memory.recall.index import SessionView, delta_parts, quantize
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
