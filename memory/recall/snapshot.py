"""A session view saved beside the data, so a restart reads a few rows instead of every event and chunk.

Rebuilding a 100,000-event view from its rows costs seconds of CPU: ~290,000 chunk rows and
100,000 events become Python objects one by one (SQLite's cursor, a record per row, the columns'
appends). A snapshot holds the view's columns as the arrays' own bytes, its units as a list per
field and its vectors as their int8 codes: loading it is a few bulk copies and one object per unit.

It is stored in parts of about `PART_BYTES` before compression (`dump` makes them one at a time,
`Restore` takes them one at a time): one `marshal` blob of the whole view (40 MB at 100,000
events) doubled the process's memory for it while saving and while loading (602-615 MiB at the
peak of a save, 513 while loading, against 425-441 steady), and one `marshal.dumps` call held
the interpreter for ~0.2 s, a stall for every request while a running process saves. Parts after
the head are zlib-compressed (level 1: 40 MB -> 13 MB at 100,000 events), so a save holds them all
in memory and writes them after the session's lock is let go (`memory.recall.views`). The head
(`dump`'s first part) opens them; the last is an end mark; a head holding the whole view (format 2
before parts) is read too.

It is never a second source of truth. A snapshot is used only by a view of the same session
generation, the same model and vector size and the same format (this module's layout, Python's
marshal version); its marks (max event, artifact and chunk id) say where it stopped, and the view
then reads what came after from the store as it would after any earlier load. Chunks it held
without a vector are `missing`, as after any load: filling them reads the vectors stored since
before embedding anything (`EmbeddingQueue.fill`). A snapshot that does not fit, lacks a part, or
does not decode, is ignored (`SnapshotError`) and the view is built from the rows, as without one;
deleting every snapshot changes nothing but speed. Written at a quiet moment
(`memory.recall.views.Views`), for views that loaded many rows since their last one.
"""

from __future__ import annotations

import marshal
import sys
import zlib
from array import array
from dataclasses import fields
from collections.abc import Iterator
from itertools import compress
from operator import attrgetter
from typing import Any

import numpy as np

from memory.errors import StorageError
from memory.recall.index import SessionView, Unit

__all__ = ["FORMAT", "PART_BYTES", "Restore", "SnapshotError", "dump", "fmt"]

FORMAT = 2  # bump when the parts' layout or a view's fields change (a head holding the whole view is read too)
PART_BYTES = 4 << 20  # about this much in each part (a unit's content is most of it)
_UNIT_FIELDS = tuple(attrgetter(f.name) for f in fields(Unit))
_INT_COLUMNS = ("render", "hash_row", "ord", "start", "end", "tokens")  # array("i")
_LONG_COLUMNS = ("ids", "parent")  # array("q")


class SnapshotError(StorageError):
    """A stored snapshot that cannot be this view (another layout, or damaged): ignored."""


def fmt(dim: int) -> str:
    """The format key a snapshot is stored and looked up under: layout, marshal and vector size."""
    return f"view{FORMAT}-marshal{marshal.version}-py{sys.version_info[0]}.{sys.version_info[1]}-dim{dim}"


def dump(view: SessionView) -> Iterator[bytes]:
    """The view as parts (see the module docstring), each made when asked for: the head first,
    an end mark last. The view must not change until the last part is made (the caller holds the
    session's lock). Caches are left out: rebuilt on use."""
    codes, _ = view._vectors.matrix()
    if codes.dtype != np.int8:
        raise SnapshotError("only a view with int8 vector codes is saved")
    if view.uncounted:
        raise SnapshotError("a view with uncounted messages is not saved")
    hv = view._vectors
    yield marshal.dumps({
        "dim": view.dim, "generation": view.generation, "marks": (view.max_event, view.max_artifact, view.max_chunk),
        "created_at": view.created_at, "parts": True, "without": sorted(hv.without), "missing": sorted(view.missing),
        "artifact_ids": list(view._artifact_ids.items()), "pinned": sorted(view.pinned), "source_order": dict(view.source_order),
        "quoted": {k: sorted(v) for k, v in view.quoted.items()},
    })
    for part in _parts(view):
        yield zlib.compress(marshal.dumps(part), 1)  # a third of the size (texts); zlib lets go of the interpreter lock


def _parts(view: SessionView) -> Iterator[tuple[Any, ...]]:
    c, hv = view._columns, view._vectors
    keys, units, size, start = list(view.units), list(view.units.values()), 0, 0
    for i, length in enumerate(map(len, map(_CONTENT, units))):  # a unit's content is most of a snapshot
        size += length + 100
        if size >= PART_BYTES or i == len(units) - 1:
            part = units[start:i + 1]
            columns = [list(map(field, part)) for field in _UNIT_FIELDS]  # a list per field: no tuple per unit
            yield "units", keys[start:i + 1], columns, bytes(map(_is_message, part))
            size, start = 0, i + 1
    step = PART_BYTES // 8
    for name in _INT_COLUMNS + _LONG_COLUMNS:
        for i in range(0, len(c.ids), step):
            yield "column", name, getattr(c, name)[i:i + step].tobytes()
    index = {k: n for n, k in enumerate(keys)}  # a chunk's unit as the unit's position (its key is stored once, above)
    for i in range(0, len(c.unit), step):
        yield "unit", array("i", map(index.__getitem__, c.unit[i:i + step])).tobytes()
    del index
    at: list[int] = []
    texts: list[str] = []
    for pos, text in enumerate(c.text):
        if text is not None:
            at.append(pos)
            texts.append(text)
            size += len(text) + 50
        if at and (size >= PART_BYTES or pos == len(c.text) - 1):
            yield "texts", array("i", at).tobytes(), texts
            at, texts, size = [], [], 0
    codes, scales = hv.matrix()
    step = max(1, PART_BYTES // max(1, view.dim))
    for i in range(0, len(hv.hashes), step):
        yield "vectors", hv.hashes[i:i + step], codes[i:i + step].tobytes(), scales[i:i + step].tobytes()
    yield "end", len(c.ids), len(units)


_CONTENT = attrgetter("content")


def _is_message(u: Unit) -> bool:
    return u.role is not None and u.key[0] == "e"


class Restore:
    """A view rebuilt from `dump`'s parts, fed one at a time (`feed`), then `view()`. Any part
    that cannot be this view (another generation or vector size, a damaged or missing part) raises
    `SnapshotError`. Feed it with Python's cyclic collector paused (`memory.recall.index.collector_paused`): ~1.5
    million objects are made at 100,000 events, none of them garbage."""

    def __init__(self, head: bytes, dim: int, generation: int) -> None:
        h = self._decode(head)
        try:
            if h["dim"] != dim or h["generation"] != generation:
                raise SnapshotError("snapshot of another generation or vector size")
            self._view = view = SessionView(dim, generation)
            self._end: tuple[int, int] | None = None  # (chunks, units) the end mark says
            self._keys: list[str] = []
            self._codes: list[bytes] = []
            self._scales: list[bytes] = []
            self._text_at: list[tuple[array[int], list[str]]] = []
            view._vectors.without.update(h["without"])
            view.missing.update(h["missing"])
            view._artifact_ids.update(h["artifact_ids"])
            view.pinned.update(h["pinned"])
            view.source_order.update(h["source_order"])
            view.quoted.update((k, set(v)) for k, v in h["quoted"].items())
            view.max_event, view.max_artifact, view.max_chunk = h["marks"]
            view.created_at = h["created_at"]
            if "parts" not in h:  # format 2 before parts: the whole view in the head
                for part in _whole(h):
                    self._take(part)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise SnapshotError(f"view snapshot not readable: {exc}") from exc

    @staticmethod
    def _decode(data: bytes) -> Any:
        try:
            return marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            raise SnapshotError(f"view snapshot not readable: {exc}") from exc

    def feed(self, data: bytes) -> None:
        """Take the next part."""
        try:
            self._take(self._decode(zlib.decompress(data)))
        except (zlib.error, ValueError, TypeError, KeyError, IndexError) as exc:
            raise SnapshotError(f"view snapshot part not readable: {exc}") from exc

    def _take(self, part: tuple[Any, ...]) -> None:
        view, c = self._view, self._view._columns
        kind = part[0]
        if self._end is not None:
            raise SnapshotError("snapshot part after the end")
        if kind == "units":
            _, keys, columns, is_message = part
            if len(columns) != len(_UNIT_FIELDS):
                raise SnapshotError("snapshot units of another shape")
            units = list(map(Unit, *columns))
            if len(keys) != len(units):
                raise SnapshotError("snapshot units without their keys")
            self._keys += keys
            view.units.update(zip(keys, units))  # in place: the chunk records read units through this dict
            view.messages.extend(compress(units, is_message))
        elif kind == "column" and part[1] in _INT_COLUMNS + _LONG_COLUMNS:
            getattr(c, part[1]).frombytes(part[2])
        elif kind == "unit":
            unit_of = array("i")
            unit_of.frombytes(part[1])
            c.unit.extend(map(self._keys.__getitem__, unit_of))
        elif kind == "texts":
            at = array("i")
            at.frombytes(part[1])
            self._text_at.append((at, part[2]))
        elif kind == "vectors":
            hv = self._view._vectors
            hv.row_of.update(zip(part[1], range(len(hv.hashes), len(hv.hashes) + len(part[1]))))
            hv.hashes.extend(part[1])
            self._codes.append(part[2])
            self._scales.append(part[3])
        elif kind == "end" and self._end is None:
            self._end = (part[1], part[2])
        else:
            raise SnapshotError(f"snapshot part of an unknown kind {kind!r}, or after the end")

    def view(self) -> SessionView:
        """The view, once every part was fed."""
        view, c, hv, dim = self._view, self._view._columns, self._view._vectors, self._view.dim
        n = len(c.ids)
        if self._end is None:
            raise SnapshotError("snapshot without its last parts")
        if (n, len(self._keys)) != self._end or len(c.unit) != n or any(len(getattr(c, name)) != n for name in _INT_COLUMNS + _LONG_COLUMNS):
            raise SnapshotError("snapshot columns of different lengths")
        c.text.extend([None] * n)
        try:
            for at, texts in self._text_at:
                for pos, text in zip(at, texts, strict=True):
                    c.text[pos] = text
        except (ValueError, IndexError) as exc:
            raise SnapshotError(f"snapshot texts do not fit: {exc}") from exc
        rows = len(hv.hashes)
        codes = np.frombuffer(b"".join(self._codes), dtype=np.int8)
        scales = np.frombuffer(b"".join(self._scales), dtype=np.float32)
        self._codes.clear()
        self._scales.clear()
        if codes.size != rows * dim or scales.size != rows or len(hv.row_of) != rows:
            raise SnapshotError("snapshot vectors do not match their hashes")
        hv._codes, hv._scales = codes.reshape(rows, dim).copy(), scales.copy()  # writable: a vector may arrive later
        return view


def _whole(s: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """A format-2 head that holds the whole view (saved before parts), as the parts `dump` makes."""
    yield ("units", s["keys"], [list(c) for c in zip(*s["units"])] or [[] for _ in _UNIT_FIELDS], s["is_message"])
    for name in _INT_COLUMNS + _LONG_COLUMNS:
        yield ("column", name, s[name])
    yield ("unit", s["unit"])
    yield ("texts", s["text_pos"], s["texts"])
    yield ("vectors", s["hashes"], s["codes"], s["scales"])
    yield ("end", len(s["ids"]) // 8, len(s["keys"]))
