"""Vectors for a session's chunks: what a compile embeds now, and what is left to the background.

Chunks are embedded in the background after each write (one task per session, a bounded batch at
a time, one batch in the whole runtime at once, each batch in a quiet moment between turns:
`memory.recall.quiet`), so most are ready when the next compile runs. The
model runs *outside* the session's lock: a request of the same session never waits for a
background batch (the previous turn's reply, say) to finish; the lock is held only to read what is
missing and to put the vectors into the view; its thread runs `BACKGROUND_NICENESS` steps nicer
than the process, so a request's question never queues behind a batch for a core. What a compile
still finds missing it embeds itself, in the same model call as its question: all of it (the
library's strict compile, and `flush`), or newest first and bounded (a bounded compile, and a
proxy request that brought history memory lacked); a proxy request that brought none embeds its
question alone (what earlier turns left ranks by its words until the background has it). A chunk that someone else is
embedding at that moment is awaited (`wait=True`: the library's `compile` and `flush`, whose
results must not depend on timing) or, on the proxy's per-request path, ranks by its words for
this once.

Vectors are keyed by content hash, so identical text is embedded once; the vectors of recent
questions are kept, so a retry embeds nothing and the next user message's chunk (usually the
question just asked) reuses its vector.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

import numpy as np

from memory.recall.embeddings import Embedder
from memory.recall.index import SessionView
from memory.recall.model_lane import ModelLane
from memory.ingest.ingest import sha256_text
from memory.store.protocol import Store

__all__ = ["EmbeddingQueue", "EMBED_NOW_CHARS", "EMBED_BATCH_CHARS", "QUERY_VECTOR_CACHE"]

log = logging.getLogger("memory")
QUERY_VECTOR_CACHE = 256
# A bounded compile (and the proxy's per-request path) embeds at most this much missing text (newest first, in characters: the model's cost
# follows length: ~0.5 s for this much on 2 idle cores, ~3 s on a loaded one) before it answers; the
# rest is embedded in the background, EMBED_BATCH_CHARS at a time, so a huge first history costs a
# bounded wait and never holds a session's lock for long. Until then those chunks rank by their
# words alone.
EMBED_NOW_CHARS = 16_000
EMBED_BATCH_CHARS = 8_000
# How much nicer than the process the thread that runs background batches is (Linux: a thread's
# own niceness; at most 19). A request's question is embedded at the process's priority; a batch
# yields the cores to it and to the event loop, and still runs whenever a core is idle (10 steps
# weigh about a tenth when both want a core, so a loaded proxy still gets its vectors, slowly).
BACKGROUND_NICENESS = 10
MAX_NICENESS = 19


def _lower_priority() -> None:
    """Run in the background batches' thread when it starts: lower that thread's priority, not
    the process's (on Linux `setpriority` with a thread id applies to that thread alone; where
    that is not available, the batches run at the normal priority)."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICENESS, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICENESS))

# content hash -> (text, positions in the view that hold it)
_Picked = dict[str, tuple[str, list[int]]]


def _pick(view: SessionView, limit: int | None, skip: dict[str, asyncio.Future[bytes]] | None = None) -> _Picked:
    """Missing chunks, newest first, at most `limit` characters of distinct text (always at least
    one, unless `limit` is 0: none; None: all), leaving out hashes in `skip`: recent turns are the
    likeliest to matter, and a batch costs the same however much waits behind it."""
    picked: _Picked = {}
    if limit == 0:
        return picked
    size = 0
    for pos in sorted(view.missing, reverse=True):
        row = view.chunk_rows[pos]
        h = row.content_hash
        if skip is not None and h in skip:
            continue
        if h not in picked:
            if limit is not None and picked and size + len(row.text) > limit:
                continue
            size += len(row.text)
            picked[h] = (row.text, [])
        picked[h][1].append(pos)
    return picked


def _settle(view: SessionView, picked: _Picked, vectors: dict[str, bytes]) -> None:
    for h, (_, positions) in picked.items():
        blob = vectors.get(h)
        if blob is None:
            continue
        vec = np.frombuffer(blob, dtype=np.float32)
        for pos in positions:
            if pos in view.missing:
                view.set_vector(pos, vec)


class EmbeddingQueue:
    """Embeds chunks for the runtime's views, now (for a compile) or in the background."""

    def __init__(self, store: Store, embedder: Callable[[], Embedder | None], fresh_view: Callable[[str], Awaitable[SessionView]],
                 quiet: Callable[[], Awaitable[None]] | None = None) -> None:
        self._store = store
        # Awaited before each background batch: the batches wait for a quiet moment between turns
        # (`memory.recall.quiet`); None: at once.
        self._quiet = quiet
        self._embedder = embedder  # read at each use: the runtime may load or swap its model later
        self._fresh_view = fresh_view
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._recent: OrderedDict[str, bytes] = OrderedDict()  # vectors of recent questions by content hash
        self._tasks: set[asyncio.Task[None]] = set()
        # Model calls running in a worker thread. A thread cannot be cancelled: `close` waits for
        # them, so nothing of the runtime still runs once it has closed.
        self._calls: set[asyncio.Future[np.ndarray]] = set()
        self._sessions: set[str] = set()  # sessions with a background task
        self._slot = asyncio.Semaphore(1)  # one background batch at a time: one core at most
        self._background: ThreadPoolExecutor | None = None  # the batches' own low-priority thread
        self._lane = ModelLane()  # requests' small calls: one at a time, coalesced

    async def close(self) -> None:
        """Cancel the background tasks and wait for every model call still running (a
        cancelled task's call finishes in its thread; its vectors are dropped)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
        self._sessions.clear()
        await self._lane.close()
        pool, self._background = self._background, None
        if pool is not None:
            pool.shutdown(wait=False)  # its calls have finished (above); a reopened runtime makes a new one

    def _call_done(self, call: asyncio.Future[np.ndarray]) -> None:
        self._calls.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: its caller may have been cancelled, and reports nothing

    def recent(self, text: str) -> np.ndarray | None:
        """The vector of a question embedded recently, if it was."""
        blob = self._recent.get(sha256_text(text))
        return np.frombuffer(blob, dtype=np.float32) if blob is not None else None

    async def fill(self, view: SessionView, query: str | None, limit: int | None, wait: bool) -> np.ndarray | None:
        """Put vectors into `view` for its missing chunks (at most `limit` characters of distinct
        text, newest first; None: all) and return the vector of `query` (None without one). Chunks
        that are being embedded elsewhere are awaited when `wait`, else left missing this once.
        The caller holds the session's lock."""
        embedder = self._embedder()
        if embedder is None:
            return None
        picked = _pick(view, limit) if view.missing else {}
        known = await self._store.get_vectors(embedder.name, list(picked)) if picked else {}
        known.update(await self._reuse_questions(embedder, picked, known))
        pending = {h: self._inflight[h] for h in picked if h not in known and h in self._inflight}
        todo = {h: picked[h][0] for h in picked if h not in known and h not in pending}
        qvec = self.recent(query) if query is not None else None
        if todo or (query is not None and qvec is None):
            ask = query if qvec is None else None
            vectors, fresh_q = await self._embed(embedder, todo, ask)
            known.update(vectors)
            qvec = fresh_q if ask is not None else qvec
        if pending and wait:
            results = await asyncio.gather(*pending.values(), return_exceptions=True)
            failed: dict[str, str] = {}
            for h, result in zip(pending, results):
                if isinstance(result, bytes):
                    known[h] = result
                else:
                    failed[h] = picked[h][0]
            if failed:  # the other embedder gave up (cancelled, or its model failed): embed them here
                known.update((await self._embed(embedder, failed, None))[0])
        _settle(view, picked, known)
        return qvec

    async def _reuse_questions(self, embedder: Embedder, picked: _Picked, known: dict[str, bytes]) -> dict[str, bytes]:
        """The vectors of picked chunks that a recent question had (a user message's chunk is
        usually the question its turn embedded), stored like any other: not embedded twice."""
        reused = {h: self._recent[h] for h in picked if h not in known and h in self._recent}
        if reused:
            async with self._store.transaction() as tx:
                await tx.put_vectors(embedder.name, reused.items())
        return reused

    async def _embed(self, embedder: Embedder, texts: dict[str, str], query: str | None,
                     background: bool = False) -> tuple[dict[str, bytes], np.ndarray | None]:
        """Embed `texts` (by content hash) and `query` in one model call (each call has a fixed
        cost), store the texts' vectors, and settle whoever waits for them. A `background` call
        runs in the batches' low-priority thread, any other in a worker thread at the process's
        priority (a request's question never queues behind a batch); a small call (a question) goes
        through the lane (`memory.recall.model_lane`), coalesced with the questions of concurrent requests."""
        loop = asyncio.get_running_loop()
        mine = {h: loop.create_future() for h in texts if h not in self._inflight}
        self._inflight.update(mine)
        try:
            batch = list(texts.values()) + ([query] if query is not None else [])
            if background:
                if self._background is None:
                    self._background = ThreadPoolExecutor(1, thread_name_prefix="memory-embed-background", initializer=_lower_priority)
                call = asyncio.ensure_future(loop.run_in_executor(self._background, embedder.embed, batch))
            elif ModelLane.fits(batch):
                call = self._lane.embed(embedder, batch)
            else:
                call = asyncio.ensure_future(asyncio.to_thread(embedder.embed, batch))
            self._calls.add(call)
            call.add_done_callback(self._call_done)
            matrix = await asyncio.shield(call)  # a cancelled caller leaves the call to `close`
            vectors = {h: matrix[i].astype(np.float32).tobytes() for i, h in enumerate(texts)}
            if vectors:
                async with self._store.transaction() as tx:
                    await tx.put_vectors(embedder.name, vectors.items())
        except BaseException as exc:
            for future in mine.values():
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # retrieved: nobody may be waiting, and that is fine
                else:
                    future.cancel()
            raise
        finally:
            for h, future in mine.items():
                if self._inflight.get(h) is future:
                    del self._inflight[h]
        for h, future in mine.items():
            future.set_result(vectors[h])
        qvec: np.ndarray | None = None
        if query is not None:
            qvec = matrix[-1]
            self._recent[sha256_text(query)] = qvec.astype(np.float32).tobytes()
            while len(self._recent) > QUERY_VECTOR_CACHE:
                self._recent.popitem(last=False)
        return vectors, qvec

    def soon(self, session_id: str) -> None:
        """Embed a session's missing chunks in the background. One task per session; it loops
        until nothing is missing."""
        if self._embedder() is None or session_id in self._sessions:
            return
        self._sessions.add(session_id)
        task = asyncio.get_running_loop().create_task(self._run(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, session_id: str) -> None:
        try:
            while True:
                if self._quiet is not None:
                    await self._quiet()
                async with self._slot:
                    if not await self._step(session_id):
                        return
        except asyncio.CancelledError:
            self._sessions.discard(session_id)
            raise
        except Exception:  # the next compile retries and reports; a background task must not crash the loop
            self._sessions.discard(session_id)
            log.exception("memory: background embedding failed for a session")

    async def _step(self, session_id: str) -> bool:
        """One bounded batch; False once nothing is missing."""
        embedder = self._embedder()
        lock = self._store.session_lock
        async with lock(session_id):
            view = await self._fresh_view(session_id)
            if embedder is None or not view.missing:
                # No await between this check and leaving the set: a write that lands after it
                # starts a new task.
                self._sessions.discard(session_id)
                return False
            picked = _pick(view, EMBED_BATCH_CHARS, skip=self._inflight)
            known = await self._store.get_vectors(embedder.name, list(picked)) if picked else {}
            known.update(await self._reuse_questions(embedder, picked, known))
            _settle(view, picked, known)
            todo = {h: text for h, (text, _) in picked.items() if h not in known}
            waits = [] if picked else [self._inflight[h] for h in {view.chunk_rows[p].content_hash for p in view.missing} if h in self._inflight]
        if waits:  # all that is missing is being embedded by a compile: let it finish
            await asyncio.wait(waits)
        if not todo:
            return True
        vectors, _ = await self._embed(embedder, todo, None, background=True)  # the lock is free meanwhile
        async with lock(session_id):
            if await self._fresh_view(session_id) is view:  # a rebuilt view loaded them from the store
                _settle(view, picked, vectors)
        return True
