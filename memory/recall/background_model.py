"""The embedding model, loaded in a worker thread while the runtime already serves.

Loading the default model takes seconds (onnxruntime's import, the model file, a first inference;
~10 s on a busy 2-core machine), and a server that loads it before it listens refuses every
connection meanwhile. With `create_runtime(..., model_in_background=True)` (the proxy's choice) the
runtime opens its store at once and ranks lexically (words only: BM25 and the rules) until the
model is ready; then the runtime takes it (`on_ready`), and the sessions stored meanwhile are
embedded in the background. A model that fails to load leaves ranking lexical, and says so in the
log and in `note()` (the proxy's `/healthz` body).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from memory.recall.embeddings import Embedder

__all__ = ["BackgroundModel"]

log = logging.getLogger("memory")


class BackgroundModel:
    """One load of the embedding model in a worker thread; `on_ready` receives the model on the
    event loop's thread, between two awaits."""

    def __init__(self, on_ready: Callable[[Embedder], None]) -> None:
        self._on_ready = on_ready
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None

    def start(self, name: str, load: Callable[[], Embedder | None]) -> None:
        """Start loading (once; a load already started or finished is left alone)."""
        if self._task is not None:
            return
        self._problem = None
        log.info("memory: loading embedding model %s in the background; ranking lexically until it is ready", name)
        self._task = asyncio.get_running_loop().create_task(self._load(name, load))

    async def _load(self, name: str, load: Callable[[], Embedder | None]) -> None:
        started = time.monotonic()
        try:
            embedder = await asyncio.to_thread(load)
        except Exception as exc:  # a missing or broken model: say so, and keep ranking by words
            self._problem = " ".join(str(exc).split())[:300]
            log.error("memory: embedding model %s failed to load; ranking stays lexical: %s", name, self._problem)
            return
        if embedder is None:
            return
        self._on_ready(embedder)
        log.info("memory: embedding model %s ready after %.1f s; ranking with vectors", name, time.monotonic() - started)

    @property
    def loading(self) -> bool:
        """Whether a load is under way."""
        return self._task is not None and not self._task.done()

    def note(self) -> str | None:
        """Why ranking is lexical for now, or None (the model is ready, or none was asked for)."""
        if self._problem is not None:
            return f"embedding model failed to load, ranking lexically: {self._problem}"
        if self.loading:
            return "embedding model loading, ranking lexically until it is ready"
        return None

    async def wait(self) -> None:
        """Return once the load has finished (ready or failed); at once when none was started."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop waiting for a load still running (its thread finishes on its own; the model is
        dropped), so that a later `start` loads afresh."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
