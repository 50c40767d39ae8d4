"""A session view's chunks as columns, and its vectors as one row per distinct content hash.

A 100,000-event session has ~290,000 chunks (two thirds of them pair probes). Holding each as a
record (a named tuple with its text, a dict entry from id to position, a float copy of its vector)
made a reopened view cost seconds of CPU and hundreds of MiB. Here each field is one compact
array (8 or 4 bytes a chunk, no object per value); a chunk's record is built only when
asked for (`ChunkRows[pos]`: the few a compile renders); a probe's text is kept only while it has
no vector (its one use is being embedded); and vectors are held once per content hash, as the
store keys them, with each chunk pointing at its row.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from memory.records import ChunkRow

__all__ = ["ChunkColumns", "ChunkRows", "Positions", "HashVectors", "quantize"]

QUANTIZE_ROWS = 8_192  # rows quantized at a time while loading: a bounded float32 copy
RECENT_ROWS = 4_096  # chunk records kept once built (see `ChunkRows`)


def quantize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors as int8 codes and one float32 scale per row (`row ~= codes * scale`). A view holds
    its vectors this way: a quarter of float32's memory, and the full scan stays cheap. float16
    was measured first: numpy converts it in software, 140 ms per scan of 200k rows against 12 ms
    for float32 and 23 ms for these codes. The error is under half a step (scale/2) per
    component: cosine similarities move by about 1e-3, far below the gaps ranking works on."""
    rows = np.asarray(rows, dtype=np.float32)
    peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows), dtype=np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.rint(rows / scales[:, None]).astype(np.int8)
    return codes, scales


class ChunkColumns:
    """Per-chunk fields in insertion order (position = index). `unit` holds the owning unit's key
    (one shared string per unit); `render` a probe's chunk position (a chunk's own position for a
    chunk); `hash_row` the chunk's row in `HashVectors`; `text` None for a probe that has a vector
    (its text is not needed) and for a chunk whose text is its unit's content (a one-chunk message)."""

    def __init__(self) -> None:
        # Ids are 8 bytes (a store's ids may pass 2**31); positions, rows, lines and counts 4.
        self.ids = array("q")
        self.unit: list[str] = []
        self.render = array("i")
        self.hash_row = array("i")
        self.parent = array("q")  # parent chunk id, -1: none
        self.ord = array("i")
        self.start = array("i")
        self.end = array("i")
        self.tokens = array("i")
        self.text: list[str | None] = []


class Positions:
    """Chunk id -> position, by bisection over the ids (they only grow: a view appends chunks in
    id order), instead of a dict entry per chunk."""

    def __init__(self, ids: array[int]) -> None:
        self._ids = ids

    def get(self, chunk_id: int, default: int | None = None) -> int | None:
        i = bisect_left(self._ids, chunk_id)
        return i if i < len(self._ids) and self._ids[i] == chunk_id else default

    def __getitem__(self, chunk_id: int) -> int:
        found = self.get(chunk_id)
        if found is None:
            raise KeyError(chunk_id)
        return found

    def __contains__(self, chunk_id: object) -> bool:
        return isinstance(chunk_id, int) and self.get(chunk_id) is not None

    def __len__(self) -> int:
        return len(self._ids)


class ChunkRows(Sequence[ChunkRow]):
    """`view.chunk_rows[pos]`: the stored record of one chunk, built from the columns on demand."""

    def __init__(self, columns: ChunkColumns, hashes: HashVectors, units: Mapping[str, Any]) -> None:
        self._c = columns
        self._hashes = hashes
        self._units = units  # key -> Unit (for `content`)
        # Records built lately: a compile asks for each candidate's several times (its hash, its
        # cost, its rendering, its manifest item). Bounded; emptied when full.
        self._recent: dict[int, ChunkRow] = {}

    def __len__(self) -> int:
        return len(self._c.ids)

    def forget(self, pos: int) -> None:
        """Drop a cached record whose columns changed."""
        self._recent.pop(pos, None)

    def __getitem__(self, pos: int) -> ChunkRow:  # type: ignore[override]  # positions only, no slices
        found = self._recent.get(pos)
        if found is not None:
            return found
        if len(self._recent) >= RECENT_ROWS:
            self._recent.clear()
        found = self._recent[pos] = self._build(pos)
        return found

    def _build(self, pos: int) -> ChunkRow:
        c = self._c
        key = c.unit[pos]
        event_id, artifact_id = (int(key[1:]), None) if key[0] == "e" else (None, int(key[1:]))
        parent = c.parent[pos]
        text = c.text[pos]
        if text is None:
            text = "" if parent >= 0 else self._units[key].content
        return ChunkRow(c.ids[pos], event_id, artifact_id, c.ord[pos], text, c.start[pos], c.end[pos],
                        self._hashes.hashes[c.hash_row[pos]], None if parent < 0 else parent, c.tokens[pos])


class HashVectors:
    """One int8 row per distinct content hash (zeros while the hash has no vector). Chunks with
    the same text share a row, as they share the stored embedding."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.hashes: list[str] = []
        self.row_of: dict[str, int] = {}
        self.without: set[int] = set()  # rows whose hash has no vector yet
        self._codes = np.zeros((0, dim), dtype=np.int8)
        self._scales = np.zeros(0, dtype=np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._zeros = 0  # zero rows owed after the pending blocks (one block, however many)

    def _flush_zeros(self) -> None:
        if self._zeros:
            self._pending.append((np.zeros((self._zeros, self.dim), dtype=np.int8), np.ones(self._zeros, dtype=np.float32)))
            self._zeros = 0

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush_zeros()
        if self._pending:
            self._codes = np.vstack([self._codes, *(c for c, _ in self._pending)])
            self._scales = np.concatenate([self._scales, *(s for _, s in self._pending)])
            self._pending = []
        return self._codes, self._scales

    def unknown(self, hashes: Iterable[str]) -> list[str]:
        """The distinct hashes among `hashes` that have no vector here (new ones, or known without)."""
        row_of, without = self.row_of, self.without
        return [h for h in dict.fromkeys(hashes) if (r := row_of.get(h)) is None or r in without]

    def add(self, vectors: dict[str, bytes]) -> None:
        """Take stored vectors (float32 blobs by hash): new hashes get rows, quantized in bulk."""
        fresh = [h for h in vectors if h not in self.row_of]
        for h in vectors:
            row = self.row_of.get(h)
            if row is not None and row in self.without:
                self.set(row, np.frombuffer(vectors[h], dtype=np.float32))
        self._flush_zeros()
        for start in range(0, len(fresh), QUANTIZE_ROWS):
            part = fresh[start : start + QUANTIZE_ROWS]
            rows = np.frombuffer(b"".join(vectors[h] for h in part), dtype=np.float32).reshape(len(part), self.dim)
            self._pending.append(quantize(rows))
            for h in part:
                self.row_of[h] = len(self.hashes)
                self.hashes.append(h)

    def row(self, content_hash: str) -> int:
        """The hash's row, a zero row (and marked without a vector) if it is new."""
        row = self.row_of.get(content_hash)
        if row is None:
            row = self.row_of[content_hash] = len(self.hashes)
            self.hashes.append(content_hash)
            self.without.add(row)
            self._zeros += 1
        return row

    def set(self, row: int, vector: np.ndarray) -> None:
        codes, scales = self.matrix()
        row_codes, row_scale = quantize(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if codes.dtype != row_codes.dtype:  # codes of another kind (benchmarks.scale_vector_codes' float32): never truncate
            codes = self._codes = codes.astype(np.result_type(codes, row_codes))
        codes[row], scales[row] = row_codes[0], row_scale[0]
        self.without.discard(row)
