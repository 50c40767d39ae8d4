"""The sessions' in-process views, least recently used dropped first, each brought up to date with
the store before use: from the session's stored snapshot when one fits (`memory.recall.snapshot`),
then a page of new rows at a time, vectors read once per distinct text, message token counts
stored back for messages stored before counts were taken at ingest; and snapshots saved of the
views that loaded many rows since their last: in the background at a quiet moment between turns
(`memory.recall.quiet`) while the process runs, so a crash or a kill leaves one behind, and when
the runtime closes."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from memory.errors import StorageError
from memory.recall.embeddings import Embedder
from memory.recall.index import SessionView, collector_paused, release_freed_memory
from memory.recall.snapshot import Restore, SnapshotError, dump, fmt
from memory.records import SessionDelta
from memory.store.protocol import Store

__all__ = ["MAX_VIEWS", "Views"]

log = logging.getLogger("memory")
# Session views kept in process; a dropped view is rebuilt from the store on its next use.
MAX_VIEWS = 256
APPLY_OFF_LOOP = 500  # rows of a view update above which it is built off the event loop
# Chunks a view load reads at a time: what it keeps is not scattered among freed rows, and fewer
# rows sit in memory at once (a 100,000-event load peaked 511 MiB with the model at 20,000, 476 at 5,000).
LOAD_PAGE = 5_000
RELEASE_AFTER = 5_000  # rows of a view update after which freed heap pages go back to the system
# Rows a view loads from the store since its last snapshot before a new one is saved: a
# 10,000-event session (~40,000 rows) rebuilds in ~0.5 s, a 100,000-event one in ~2.5 s.
SNAPSHOT_AFTER = 20_000


class Views(OrderedDict[str, SessionView]):
    """Session id -> view, most recently used last."""

    def __init__(self, store: Store, max_views: int = MAX_VIEWS, snapshot_after: int | None = None,
                 quiet: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self.store = store
        self.max_views = max(1, max_views)
        self.snapshot_after = SNAPSHOT_AFTER if snapshot_after is None else snapshot_after
        self.unsaved: dict[str, int] = {}  # session id -> rows its view loaded since its snapshot
        # Awaited before each background save (None: no background saves, only `save`).
        self._quiet = quiet
        self._due: dict[str, Embedder | None] = {}  # sessions to save in the background, with their view's embedder
        self._saver: asyncio.Task[None] | None = None

    async def fresh(self, session_id: str, embedder: Embedder | None) -> SessionView:
        """The session's view, up to date with the store. The caller holds the session's lock."""
        view = self.get(session_id)
        dim = embedder.dim if embedder else 1
        max_event, max_chunk, generation = await self.store.high_water(session_id)
        if view is None or view.generation != generation or max_event < view.max_event or max_chunk < view.max_chunk or view.dim != dim:
            # New, or messages left the transcript since (an edit, a retry), or the session was
            # erased or renamed (and maybe created again) under this view, or the model arrived
            # since it was built: start over, from the stored snapshot if one fits.
            view = await self._restored(session_id, embedder, generation, max_event, max_chunk) or SessionView(dim, generation)
            self.unsaved[session_id] = 0
        self[session_id] = view
        self.move_to_end(session_id)
        while len(self) > self.max_views:
            self.unsaved.pop(self.popitem(last=False)[0], None)
        if max_event > view.max_event or max_chunk > view.max_chunk:
            # A page of chunks at a time: ~290k rows at 100k events never sit in memory at once.
            loaded, page = 0, LOAD_PAGE
            with collector_paused():
                while page == LOAD_PAGE:
                    delta = await self.store.load_delta(session_id, view.max_event, view.max_artifact, view.max_chunk, chunk_limit=LOAD_PAGE)
                    await self._apply(view, delta, embedder)
                    loaded, page = loaded + len(delta.events) + len(delta.chunks), len(delta.chunks)
                    del delta
            if loaded > RELEASE_AFTER:
                release_freed_memory()
            self.unsaved[session_id] = self.unsaved.get(session_id, 0) + loaded
        if view.uncounted:
            await self._store_counts(view)
        if self._quiet is not None and self._worth_saving(session_id, view, embedder):
            self._due[session_id] = embedder
            if self._saver is None or self._saver.done():
                self._saver = asyncio.get_running_loop().create_task(self._save_due())
        return view

    async def _restored(self, session_id: str, embedder: Embedder | None, generation: int, max_event: int,
                        max_chunk: int) -> SessionView | None:
        """The session's view from its stored snapshot; None when there is none that fits (another
        generation or model, marks past the store's, or a blob that does not decode: then the rows
        are read as without one). What it held without a vector is `missing`, as after any load:
        filling it reads the vectors stored since (`EmbeddingQueue.fill`) before embedding any."""
        dim = embedder.dim if embedder else 1
        found = await self.store.view_snapshot(session_id, embedder.name if embedder else "", fmt(dim))
        if found is None:
            return None
        snap_generation, snap_event, _, snap_chunk, head = found
        if snap_generation != generation or snap_event > max_event or snap_chunk > max_chunk:
            return None
        try:
            with collector_paused():  # ~1.5 million objects made at 100,000 events, none of them garbage
                restore = await asyncio.to_thread(Restore, head, dim, generation)
                del head, found
                part = 1
                while (data := await self.store.view_snapshot_part(session_id, part)) is not None:
                    await asyncio.to_thread(restore.feed, data)  # a part at a time: the loop serves between them
                    part += 1
                del data
                view = await asyncio.to_thread(restore.view)
        except SnapshotError as exc:
            log.warning("memory: view snapshot of %r ignored: %s", session_id, exc)
            return None
        release_freed_memory()  # the parts and the decoded tuples
        return view

    def _worth_saving(self, session_id: str, view: SessionView, embedder: Embedder | None) -> bool:
        return self.unsaved.get(session_id, 0) >= self.snapshot_after and not view.uncounted and \
            view.dim == (embedder.dim if embedder else 1)

    async def _save_due(self) -> None:
        """Save the views `fresh` marked due, one at a time, each once the process is quiet (no
        turn planned or committed for a moment; see `_save`)."""
        quiet = self._quiet
        while quiet is not None and self._due:
            await quiet()
            session_id, embedder = next(iter(self._due.items()))
            del self._due[session_id]
            await self._save(session_id, embedder)

    async def idle(self) -> None:
        """Return once no background save is due or running."""
        while self._saver is not None and not self._saver.done():
            await asyncio.shield(self._saver)

    async def stop(self) -> None:
        """Cancel the background saves (a save cut short leaves no snapshot: `save` stores it)."""
        self._due.clear()
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
            self._saver = None

    async def save(self, embedder: Embedder | None) -> int:
        """Store a snapshot of each view that loaded `snapshot_after` rows or more from the store
        since its last one (the runtime calls it when it closes; while it runs, `fresh` schedules
        them). Returns how many were stored."""
        saved = 0
        for session_id in list(self):
            saved += await self._save(session_id, embedder)
        return saved

    async def _save(self, session_id: str, embedder: Embedder | None) -> bool:
        """Store the session's view as a snapshot if it is still worth saving. A store that refuses
        the write keeps no snapshot of the session: only a restart's speed depends on it. The parts
        are made in a worker thread while the session's lock is held (its view must not change
        meanwhile: ~0.7 s of CPU at 100,000 events, compressed to ~13 MB), then written without it
        (with the writes under the lock too, a save held it 1.8 s at 100,000 events with nothing
        else in the process, 4.5-5.6 s beside four busy clients): the head first (replacing the last snapshot and its parts), then each part in a short
        transaction of its own, so other sessions' writes go between them. A head without its end
        part is ignored at the next restart."""
        name = embedder.name if embedder else ""
        async with self.store.session_lock(session_id):
            view = self.get(session_id)
            if view is None or not self._worth_saving(session_id, view, embedder):
                return False
            generation, dim, covered = view.generation, view.dim, self.unsaved.get(session_id, 0)
            marks = (view.max_event, view.max_artifact, view.max_chunk)
            try:
                parts = await asyncio.to_thread(lambda: list(dump(view)))
            except SnapshotError as exc:
                log.warning("memory: view snapshot of %r not made: %s", session_id, exc)
                return False
        try:
            async with self.store.transaction() as tx:
                stored = await tx.save_view_snapshot(session_id, generation, name, fmt(dim), marks, parts[0])
            for number in range(1, len(parts) if stored else 0):
                async with self.store.transaction() as tx:
                    await tx.put_view_snapshot_part(session_id, number, parts[number])
        except StorageError as exc:
            log.warning("memory: view snapshot of %r not stored: %s", session_id, exc)
            return False
        finally:
            del parts
            release_freed_memory()
        if stored:  # what its view loaded since the parts were made still counts towards the next
            self.unsaved[session_id] = max(0, self.unsaved.get(session_id, 0) - covered)
        return stored

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
