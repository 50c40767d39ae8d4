"""A session view saved beside the data, so a restart reads one row instead of every event and chunk.

Rebuilding a 100,000-event view from its rows costs seconds of CPU: ~290,000 chunk rows and
100,000 events become Python objects one by one (SQLite's cursor, a record per row, the columns'
appends). A snapshot holds the view's columns as the arrays' own bytes, its units as plain tuples
and its vectors as their int8 codes, in one `marshal` blob: loading it is a few bulk copies and one
object per unit.

It is never a second source of truth. A snapshot is used only by a view of the same session
generation, the same model and vector size and the same format (this module's layout, Python's
marshal version); its marks (max event, artifact and chunk id) say where it stopped, and the view
then reads what came after from the store as it would after any earlier load. Chunks it held
without a vector are `missing`, as after any load: filling them reads the vectors stored since
before embedding anything (`EmbeddingQueue.fill`). A snapshot that does not fit, or does not decode, is
ignored (`SnapshotError`) and the view is built from the rows, as without one; deleting every
snapshot changes nothing but speed. Written at a quiet moment (`memory.recall.views.Views.save`,
when the runtime closes), for views that loaded many rows since their last one.
"""

from __future__ import annotations

import marshal
import sys
from array import array
from dataclasses import fields
from itertools import compress, starmap
from operator import attrgetter
from typing import Any

import numpy as np

from memory.errors import StorageError
from memory.recall.index import SessionView, Unit, collector_paused

__all__ = ["FORMAT", "SnapshotError", "dump", "fmt", "load"]

FORMAT = 2  # bump when the blob's layout or a view's fields change
_UNIT_FIELDS = tuple(f.name for f in fields(Unit))
_unit_tuple = attrgetter(*_UNIT_FIELDS)
_INT_COLUMNS = ("render", "hash_row", "ord", "start", "end", "tokens")  # array("i")
_LONG_COLUMNS = ("ids", "parent")  # array("q")


class SnapshotError(StorageError):
    """A stored snapshot that cannot be this view (another layout, or damaged): ignored."""


def fmt(dim: int) -> str:
    """The format key a snapshot is stored and looked up under: layout, marshal and vector size."""
    return f"view{FORMAT}-marshal{marshal.version}-py{sys.version_info[0]}.{sys.version_info[1]}-dim{dim}"


def dump(view: SessionView) -> bytes:
    """The view as one blob (see the module docstring). Caches are left out: rebuilt on use."""
    codes, _ = view._vectors.matrix()
    if codes.dtype != np.int8:
        raise SnapshotError("only a view with int8 vector codes is saved")
    if view.uncounted:
        raise SnapshotError("a view with uncounted messages is not saved")
    with collector_paused():  # ~100,000 tuples made, none of them garbage
        return marshal.dumps(_state(view))


def _state(view: SessionView) -> dict[str, Any]:
    c, hv = view._columns, view._vectors
    codes, scales = hv.matrix()
    keys = list(view.units)
    index = {k: i for i, k in enumerate(keys)}
    texts = [(pos, text) for pos, text in enumerate(c.text) if text is not None]
    return {
        "dim": view.dim, "generation": view.generation, "marks": (view.max_event, view.max_artifact, view.max_chunk),
        "created_at": view.created_at, "units": [_unit_tuple(u) for u in view.units.values()], "keys": keys,
        "is_message": bytes(u.role is not None and u.key[0] == "e" for u in view.units.values()),
        "unit": array("i", [index[k] for k in c.unit]).tobytes(),
        **{name: getattr(c, name).tobytes() for name in _INT_COLUMNS + _LONG_COLUMNS},
        "text_pos": array("i", [p for p, _ in texts]).tobytes(), "texts": [t for _, t in texts],
        "hashes": list(hv.hashes), "without": sorted(hv.without), "codes": codes.tobytes(), "scales": scales.tobytes(),
        "missing": sorted(view.missing), "artifact_ids": list(view._artifact_ids.items()), "pinned": sorted(view.pinned),
        "source_order": dict(view.source_order), "quoted": {k: sorted(v) for k, v in view.quoted.items()},
    }


def load(blob: bytes, dim: int, generation: int) -> SessionView:
    """The view a blob from `dump` holds; `SnapshotError` when it cannot be one of `dim` and `generation`."""
    try:
        with collector_paused():  # ~1.5 million objects made, none of them garbage
            s = marshal.loads(blob)
            if s["dim"] != dim or s["generation"] != generation:
                raise SnapshotError("snapshot of another generation or vector size")
            return _restore(s, dim, generation)
    except (ValueError, EOFError, TypeError, KeyError, IndexError) as exc:
        raise SnapshotError(f"view snapshot not readable: {exc}") from exc


def _restore(s: dict[str, Any], dim: int, generation: int) -> SessionView:
    view = SessionView(dim, generation)
    units = list(starmap(Unit, s["units"]))
    keys: list[str] = s["keys"]
    view.units.update(zip(keys, units))  # in place: the chunk records read units through this dict
    view.messages.extend(compress(units, s["is_message"]))
    c, hv = view._columns, view._vectors
    for name in _INT_COLUMNS + _LONG_COLUMNS:
        getattr(c, name).frombytes(s[name])
    unit_of = array("i")
    unit_of.frombytes(s["unit"])
    n = len(c.ids)
    if any(len(getattr(c, name)) != n for name in _INT_COLUMNS + _LONG_COLUMNS) or len(unit_of) != n:
        raise SnapshotError("snapshot columns of different lengths")
    c.unit.extend(map(keys.__getitem__, unit_of))
    c.text.extend([None] * n)
    text_pos = array("i")
    text_pos.frombytes(s["text_pos"])
    for pos, text in zip(text_pos, s["texts"], strict=True):
        c.text[pos] = text
    hashes: list[str] = s["hashes"]
    hv.hashes.extend(hashes)
    hv.row_of.update(zip(hashes, range(len(hashes))))
    hv.without.update(s["without"])
    codes = np.frombuffer(s["codes"], dtype=np.int8)
    scales = np.frombuffer(s["scales"], dtype=np.float32)
    if codes.size != len(hashes) * dim or scales.size != len(hashes) or len(hv.row_of) != len(hashes):
        raise SnapshotError("snapshot vectors do not match their hashes")
    hv._codes, hv._scales = codes.reshape(len(hashes), dim).copy(), scales.copy()  # writable: a vector may arrive later
    view.missing.update(s["missing"])
    view._artifact_ids.update(s["artifact_ids"])
    view.pinned.update(s["pinned"])
    view.source_order.update(s["source_order"])
    view.quoted.update((k, set(v)) for k, v in s["quoted"].items())
    view.max_event, view.max_artifact, view.max_chunk = s["marks"]
    view.created_at = s["created_at"]
    return view
