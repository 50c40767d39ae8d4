"""The in-process view of one session: its units (messages and artifacts), chunks and vectors.

Loading a 100k-event session from SQLite on every compile would dominate its cost, so each session
keeps a view that is brought up to date incrementally from the store's high-water marks (the store
stays the source of truth; a second process writing the same file is picked up on the next call).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory.ingest.transcript import event_to_message
from memory.recall.columns import ChunkColumns, ChunkRows, HashVectors, Positions, quantize
from memory.recall.tokens import stored_counter
from memory.records import ArtifactRow, ChunkRow, EventRow, SessionDelta

__all__ = ["Unit", "SessionView", "RankArrays", "collector_paused", "dot", "quantize", "release_freed_memory"]

def dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`matrix @ vector` without BLAS. OpenBLAS hands even a 1,000 x 384 product to its thread
    pool; on a busy 2-core machine (the embedder's threads, the event loop) one such product took
    9-19 ms instead of 0.03 ms. einsum's own loop is single-threaded and as fast at every size
    measured (1k-150k rows)."""
    product: np.ndarray = np.einsum("ij,j->i", matrix, vector)
    return product


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        found: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to load by that name (Windows takes no None)
        return None
    return found


_TRIM = _malloc_trim()  # glibc's; None elsewhere


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim`; nothing elsewhere).
    Loading a large view allocates several times what the view keeps (rows, blobs, float32
    slices); glibc keeps what was freed mapped, so the process stayed at its peak: at 10,000 events
    a first compile left 62 MiB more resident, 70 MiB of it returned by one trim."""
    if _TRIM is not None:
        _TRIM(0)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic collector paused while a view is loaded: a 100,000-event load makes over a
    million objects (rows, records, units), none of them garbage, and every allocation threshold
    crossed ran a collection over all made so far. Measured at 100,000 events: the first compile
    after a restart 3.6-3.8 -> 2.4 s of CPU from the rows, a snapshot's load 0.79 -> 0.29 s."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True)
class RankArrays:
    """Per-chunk arrays the ranker needs, rebuilt only when the view has grown."""

    render: np.ndarray  # int64: a probe's chunk position, a chunk's own position
    probe_rows: np.ndarray  # int64: positions of probe rows
    prev_turn: np.ndarray  # int64: the message chunk just before this one in turn order (-1: none)
    next_turn: np.ndarray  # int64: the message chunk just after (-1: none)
    missing: np.ndarray  # bool: no vector yet


@dataclass(slots=True)  # slots: a 100k-event view holds ~100k units
class Unit:
    """A retrievable thing: one message event ("e<id>") or one artifact ("a<id>")."""

    key: str
    kind: str  # user_message, assistant_message, tool_message, snippet, file, repo_diff, doc_chunk, tool_output, diff
    order: int  # event id that places it in time (an artifact's latest ingest)
    first_order: int
    source: str | None
    pinned: bool
    role: str | None = None
    turn: int | None = None
    timestamp: str | None = None
    version: int = 1
    latest: bool = True
    derived: bool = False  # extracted from a message (a code block) rather than ingested on its own
    content: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    chunk_idx: list[int] = field(default_factory=list)
    tokens: int | None = None  # a message's stored count under `STORED_ENCODING` (None: not stored)


class SessionView:
    """Units, chunks and the chunk-vector matrix of one session, in insertion order. Chunks are
    columns (`memory.recall.columns`): `chunk_ids`, `chunk_unit` and `render_pos` index by
    position, `chunk_pos` maps an id to its position, `chunk_rows[pos]` gives the stored record."""

    def __init__(self, dim: int, generation: int = 0) -> None:
        self.dim = dim
        self.generation = generation  # the session's generation this view was loaded at
        self.units: dict[str, Unit] = {}
        self.messages: list[Unit] = []  # message units in order
        self._columns = ChunkColumns()
        self._vectors = HashVectors(dim)  # vectors, quantized (see `quantize`), one row per content hash
        self.chunk_ids = self._columns.ids
        self.chunk_unit = self._columns.unit
        self.render_pos = self._columns.render  # probe position -> its chunk's position (itself for a chunk)
        self.chunk_pos = Positions(self._columns.ids)
        self.chunk_rows = ChunkRows(self._columns, self._vectors, self.units)
        self.missing: set[int] = set()  # chunk positions without a vector yet
        self.max_event = 0
        self.max_artifact = 0
        self.max_chunk = 0
        self.created_at = 0.0  # of the session this view was built from (see Runtime._fresh_view)
        self._artifact_ids: dict[int, str] = {}
        self.token_cache: dict[tuple[str, int | str], int] = {}
        # compiler.history_lines per encoding: (messages covered, their lines, open tool call ids)
        self.history_cache: dict[str, tuple[int, Any, frozenset[str]]] = {}
        # What a compile derives from all the units (compiler._artifacts_block), until `apply` changes them.
        self.derived_cache: dict[str, Any] = {}
        self.pinned: set[str] = set()
        self.source_order: dict[str, int] = {}  # artifact source -> latest event that touched it
        self.quoted: dict[str, set[str]] = {}  # message unit key -> artifacts extracted from it
        self._arrays: RankArrays | None = None
        self._hash_rows: np.ndarray | None = None  # `_columns.hash_row` as numpy, until the next chunk
        # Messages stored before counts were taken at ingest: counted by `count_stored`.
        self.uncounted: list[Unit] = []

    def _rows(self) -> np.ndarray:
        if self._hash_rows is None:
            # A copy: a numpy view would pin the array's buffer, and appending to it would fail.
            self._hash_rows = np.array(self._columns.hash_row, dtype=np.int64)
        return self._hash_rows

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Dot product of every chunk's vector with `query` (float32; 0 where a vector is missing).
        Each distinct vector is scanned once; the int8 codes are cast in einsum's small buffers,
        never as a whole float copy."""
        codes, scales = self._vectors.matrix()
        raw: np.ndarray = np.einsum("ij,j->i", codes, np.asarray(query, dtype=np.float32), dtype=np.float32, casting="unsafe")
        sims: np.ndarray = (raw * scales)[self._rows()]
        return sims

    def vector(self, pos: int) -> np.ndarray:
        """One chunk's vector (float32, as the codes give it back)."""
        codes, scales = self._vectors.matrix()
        row = self._columns.hash_row[pos]
        vec: np.ndarray = codes[row].astype(np.float32) * scales[row]
        return vec

    def content_hash(self, pos: int) -> str:
        """One chunk's content hash (`chunk_rows[pos].content_hash` without building the record)."""
        return self._vectors.hashes[self._columns.hash_row[pos]]

    def chunk_tokens(self, pos: int) -> int:
        """One chunk's stored token count (`chunk_rows[pos].tokens` without building the record)."""
        return self._columns.tokens[pos]

    def vectors(self, positions: Sequence[int]) -> np.ndarray:
        """Chunks' vectors as rows (float32, each row as `vector` gives it)."""
        codes, scales = self._vectors.matrix()
        rows = self._rows()[np.asarray(positions, dtype=np.int64)]
        block: np.ndarray = codes[rows].astype(np.float32) * scales[rows][:, None]
        return block

    def unknown_hashes(self, delta: SessionDelta) -> list[str]:
        """Distinct content hashes of `delta`'s chunks this view has no vector for: what a load
        reads from the store (each once, however many chunks share it)."""
        return self._vectors.unknown(ch.content_hash for ch in delta.chunks)

    def add_vectors(self, vectors: dict[str, bytes]) -> None:
        """Stored vectors (float32 blobs by content hash) for chunks `apply` adds next."""
        self._vectors.add(vectors)

    def apply(self, delta: SessionDelta, vectors: dict[str, bytes] | None = None) -> None:
        """Add `delta` (rows after the view's marks, in id order); `vectors` as for `add_vectors`."""
        self._arrays = None
        self._hash_rows = None
        self.derived_cache.clear()
        if vectors:
            self._vectors.add(vectors)
        for art in delta.artifacts:
            self._add_artifact(art)
            self.max_artifact = max(self.max_artifact, art.id)
        for ev in delta.events:
            self._add_event(ev)
            self.max_event = max(self.max_event, ev.id)
        if delta.chunks:
            self.max_chunk = max(self.max_chunk, max(ch[0] for ch in delta.chunks))
        self._add_chunks(delta.chunks)

    def _add_chunks(self, chunks: Sequence[ChunkRow]) -> None:
        # The loop a 100k-event load runs ~290k times: columns' appends bound once, a unit looked
        # up once per run of its chunks, a hash's row read from the dict without a call.
        c, hv, units, missing = self._columns, self._vectors, self.units, self.missing
        without, row_of = hv.without, hv.row_of
        add_id, add_unit, add_render, add_parent, add_row = c.ids.append, c.unit.append, c.render.append, c.parent.append, c.hash_row.append
        add_ord, add_start, add_end, add_tokens, add_text = c.ord.append, c.start.append, c.end.append, c.tokens.append, c.text.append
        added: dict[int, int] = {}  # chunk id -> position, for this delta's probes to find their chunk
        last: tuple[int | None, int | None] = (0, 0)
        unit: Unit | None = None
        pos = len(c.ids)
        for cid, event_id, artifact_id, order, text, start, end, content_hash, parent, tokens in chunks:
            if (event_id, artifact_id) != last:
                last = (event_id, artifact_id)
                unit = units.get(f"e{event_id}" if event_id is not None else f"a{artifact_id}")
            if unit is None:
                continue
            add_id(cid)
            add_unit(unit.key)  # the unit's own string: one per unit, not per chunk
            row = row_of.get(content_hash)
            if row is None:
                row = hv.row(content_hash)
            add_row(row)
            add_ord(order)
            add_start(start)
            add_end(end)
            add_tokens(tokens or 0)
            if parent is None:
                add_render(pos)
                add_parent(-1)
                unit.chunk_idx.append(pos)
                added[cid] = pos
                add_text(None if text == unit.content else text)  # a one-chunk message: its content
            else:
                found = added.get(parent)
                if found is None:  # its chunk came in an earlier load
                    found = self.chunk_pos.get(parent)
                add_render(pos if found is None else found)
                add_parent(parent)
                add_text(text if row in without else None)  # a probe's text only feeds its embedding
            if row in without:
                missing.add(pos)
            pos += 1

    def count_stored(self) -> list[tuple[int, int]]:
        """Count the messages loaded without a stored count (stored before m006) under
        `STORED_ENCODING`; returns (event id, count) for the caller to store."""
        counter = stored_counter()
        counted = []
        for unit in self.uncounted:
            unit.tokens = counter.message_tokens(event_to_message(unit.role or "user", unit.content, unit.extra))
            counted.append((int(unit.key[1:]), unit.tokens))
        self.uncounted = []
        return counted

    def set_vector(self, pos: int, vector: np.ndarray) -> None:
        self._vectors.set(self._columns.hash_row[pos], vector)
        self.missing.discard(pos)
        if self._columns.parent[pos] >= 0:
            self._columns.text[pos] = None
            self.chunk_rows.forget(pos)
        self._arrays = None

    def arrays(self) -> RankArrays:
        """The ranker's arrays, cached until the next change to the view."""
        if self._arrays is None:
            n = len(self.chunk_ids)
            render = np.array(self.render_pos, dtype=np.int64)  # a copy (see `_rows`)
            prev_turn = np.full(n, -1, dtype=np.int64)
            next_turn = np.full(n, -1, dtype=np.int64)
            # Neighbours in turn order: a message's chunks, then the next message's chunks.
            chain = np.asarray([p for unit in self.messages for p in unit.chunk_idx], dtype=np.int64)
            if chain.size > 1:
                prev_turn[chain[1:]] = chain[:-1]
                next_turn[chain[:-1]] = chain[1:]
            missing = np.zeros(n, dtype=bool)
            missing[list(self.missing)] = True
            self._arrays = RankArrays(render, np.flatnonzero(render != np.arange(n)), prev_turn, next_turn, missing)
        return self._arrays

    def _add_event(self, ev: EventRow) -> None:
        if ev.artifact_id is not None:
            key = self._artifact_ids.get(ev.artifact_id)
            if key is not None:  # re-ingest of known content: it is fresh again
                unit = self.units[key]
                unit.order = max(unit.order, ev.id)
                unit.pinned = unit.pinned or ev.pinned
                if unit.source:
                    self.source_order[unit.source] = max(self.source_order.get(unit.source, 0), ev.id)
                if unit.pinned:
                    self.pinned.add(key)
                if ev.parent_event_id is not None:
                    if unit.first_order == ev.id:
                        unit.derived = True
                    # A code block or diff quoted in a message: shown wherever the message is shown.
                    self.quoted.setdefault(f"e{ev.parent_event_id}", set()).add(key)
            return
        # Positional, the rest set after: a 100k-event load makes ~100k units, and keywords took
        # ~2.5x as long (key, kind, order, first_order, source, pinned, role, turn, timestamp).
        unit = Unit(f"e{ev.id}", ev.type, ev.id, ev.id, ev.source, ev.pinned, ev.role, None, ev.timestamp)
        unit.content, unit.extra, unit.tokens = ev.content, ev.payload, ev.tokens
        if ev.pinned:
            self.pinned.add(unit.key)
        if ev.role is not None:
            unit.turn = len(self.messages) + 1
            self.messages.append(unit)
            if ev.tokens is None:
                self.uncounted.append(unit)
        self.units[unit.key] = unit

    def _add_artifact(self, art: ArtifactRow) -> None:
        key = f"a{art.id}"
        unit = self.units.get(key)
        if unit is None:
            unit = Unit(
                key=key, kind=art.kind, order=art.last_event_id or 0, first_order=art.first_event_id or 0,
                source=art.source, pinned=art.pinned, version=art.version,
            )
            self.units[key] = unit
            self._artifact_ids[art.id] = key
        else:
            unit.order = max(unit.order, art.last_event_id or 0)
            unit.pinned = unit.pinned or art.pinned
        if art.source:
            self.source_order[art.source] = max(self.source_order.get(art.source, 0), unit.order)
        if unit.pinned:
            self.pinned.add(key)
        if art.previous_id is not None and art.kind != "diff":
            prev = self.units.get(f"a{art.previous_id}")
            if prev is not None:
                prev.latest = False
