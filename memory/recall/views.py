"""The sessions' in-process views, least recently used dropped first, each brought up to date with
the store before use: a page of new rows at a time, vectors read once per distinct text, message
token counts stored back for messages stored before counts were taken at ingest."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from memory.errors import StorageError
from memory.recall.embeddings import Embedder
from memory.recall.index import SessionView, release_freed_memory
from memory.records import SessionDelta
from memory.store.protocol import Store

__all__ = ["MAX_VIEWS", "Views"]

log = logging.getLogger("memory")
# Session views kept in process; a dropped view is rebuilt from the store on its next use.
MAX_VIEWS = 256
APPLY_OFF_LOOP = 500  # rows of a view update above which it is built off the event loop
LOAD_PAGE = 20_000  # chunks a view load reads at a time (what it keeps is not scattered among freed rows)
RELEASE_AFTER = 5_000  # rows of a view update after which freed heap pages go back to the system


class Views(OrderedDict[str, SessionView]):
    """Session id -> view, most recently used last."""

    def __init__(self, store: Store, max_views: int = MAX_VIEWS) -> None:
        super().__init__()
        self.store = store
        self.max_views = max(1, max_views)

    async def fresh(self, session_id: str, embedder: Embedder | None) -> SessionView:
        """The session's view, up to date with the store. The caller holds the session's lock."""
        view = self.get(session_id)
        dim = embedder.dim if embedder else 1
        max_event, max_chunk, generation = await self.store.high_water(session_id)
        if view is None or view.generation != generation or max_event < view.max_event or max_chunk < view.max_chunk or view.dim != dim:
            # New, or messages left the transcript since (an edit, a retry), or the session was
            # erased or renamed (and maybe created again) under this view, or the model arrived
            # since it was built: start over.
            view = SessionView(dim, generation)
        self[session_id] = view
        self.move_to_end(session_id)
        while len(self) > self.max_views:
            self.popitem(last=False)
        if max_event > view.max_event or max_chunk > view.max_chunk:
            # A page of chunks at a time: ~290k rows at 100k events never sit in memory at once.
            loaded, page = 0, LOAD_PAGE
            while page == LOAD_PAGE:
                delta = await self.store.load_delta(session_id, view.max_event, view.max_artifact, view.max_chunk, chunk_limit=LOAD_PAGE)
                await self._apply(view, delta, embedder)
                loaded, page = loaded + len(delta.events) + len(delta.chunks), len(delta.chunks)
            if loaded > RELEASE_AFTER:
                release_freed_memory()
        if view.uncounted:
            await self._store_counts(view)
        return view

    async def _apply(self, view: SessionView, delta: SessionDelta, embedder: Embedder | None) -> None:
        # Each distinct vector is read once (chunks with the same text share it). A first contact
        # with a long history is built off the loop (the caller holds the session's lock).
        vectors = await self.store.get_vectors(embedder.name, view.unknown_hashes(delta)) if embedder else {}
        if len(delta.events) + len(delta.chunks) > APPLY_OFF_LOOP:
            await asyncio.to_thread(view.apply, delta, vectors)
        else:
            view.apply(delta, vectors)

    async def _store_counts(self, view: SessionView) -> None:
        """Count the messages a view loaded without a stored count (stored before counts were
        taken at ingest) and store their counts: the next restart reads them. Only an optimisation:
        a store that refuses the write leaves them counted in memory."""
        if len(view.uncounted) > APPLY_OFF_LOOP:
            counted = await asyncio.to_thread(view.count_stored)
        else:
            counted = view.count_stored()
        try:
            async with self.store.transaction() as tx:
                await tx.set_event_tokens(counted)
        except StorageError as exc:
            log.warning("memory: token counts of %d old messages not stored: %s", len(counted), exc)
