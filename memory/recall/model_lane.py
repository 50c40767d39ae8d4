"""Requests' model calls, one at a time in one thread, each taking every small call waiting for it.

Under load several requests want their question embedded at once. Each in its own worker thread
(`asyncio.to_thread`), they ran side by side: on two cores, up to six single-threaded model calls
next to the event loop, each slowed by the others, and the loop (which every request needs) given a
share of a core. The lane runs one model call at a time, in its own thread at the process's
priority, so the model holds at most one core; the questions that arrive while a call runs wait
for it and then go together in the next call. A batch of similar short texts also costs less per
text than the same texts one call each (onnxruntime's products are larger, the call's fixed cost
is shared: 10-20% less CPU per question at 4-16 questions, `FastEmbedder` on the 2-core machine).

Only small calls join the lane (`LANE_CHARS`): a request that brought a long history embeds it in
a call of its own, so a question never waits behind a history's thousands of characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from memory.recall.embeddings import Embedder

__all__ = ["ModelLane", "LANE_CHARS", "LANE_TEXTS"]

# A call of at most this many characters joins the lane (a question, with a few missing chunks);
# a larger one runs on its own. A coalesced call holds at most LANE_TEXTS texts (the cost of the
# call a question waits behind is bounded; 16 short questions take ~0.1-0.2 s on a busy core).
LANE_CHARS = 2_000
LANE_TEXTS = 16

_Waiting = tuple[Embedder, list[str], "asyncio.Future[np.ndarray]"]


class ModelLane:
    """Coalesces small model calls: `embed` returns a future of the texts' rows; a call starts
    as soon as the previous one ends, with everything (for the same embedder) waiting by then."""

    def __init__(self, max_texts: int = LANE_TEXTS) -> None:
        self._max_texts = max_texts
        self._waiting: list[_Waiting] = []
        self._running: asyncio.Future[np.ndarray] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def fits(texts: Sequence[str]) -> bool:
        """Whether a call of `texts` is small enough to join the lane."""
        return sum(len(t) for t in texts) <= LANE_CHARS

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> asyncio.Future[np.ndarray]:
        """A future of `embedder`'s rows for `texts`, from the next model call of the lane.
        Cancelling it drops the texts if their call has not started (else the call finishes)."""
        loop = asyncio.get_running_loop()
        if self._running is not None and self._running.get_loop() is not loop:
            # Left by an event loop that has ended (one `asyncio.run` after another on one
            # runtime): its callbacks will never run here, so its call and waiters are dropped.
            self._running = None
            self._waiting = [w for w in self._waiting if w[2].get_loop() is loop]
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._waiting.append((embedder, list(texts), future))
        if self._running is None:
            self._start()
        return future

    @property
    def running(self) -> asyncio.Future[np.ndarray] | None:
        """The model call under way, if any (`close` waits for it)."""
        return self._running

    def _start(self) -> None:
        self._waiting = [w for w in self._waiting if not w[2].done()]  # cancelled while waiting
        if not self._waiting:
            return
        embedder = self._waiting[0][0]
        taken: list[_Waiting] = []
        rest: list[_Waiting] = []
        count = 0
        for item in self._waiting:
            if item[0] is embedder and (not taken or count + len(item[1]) <= self._max_texts):
                taken.append(item)
                count += len(item[1])
            else:
                rest.append(item)
        self._waiting = rest
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="memory-embed-lane")
        texts = [t for _, batch, _ in taken for t in batch]
        call = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(self._pool, embedder.embed, texts))
        self._running = call
        call.add_done_callback(lambda done: self._finished(done, taken))

    def _finished(self, call: asyncio.Future[np.ndarray], taken: list[_Waiting]) -> None:
        self._running = None
        error = None if call.cancelled() else call.exception()
        start = 0
        for _, batch, future in taken:
            if future.done():
                pass
            elif call.cancelled():
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(call.result()[start : start + len(batch)])
            start += len(batch)
        if self._waiting:
            self._start()

    async def close(self) -> None:
        """Cancel what still waits, wait for the call under way (a thread cannot be cancelled),
        and let the thread go; the lane can be used again afterwards."""
        for _, _, future in self._waiting:
            future.cancel()
        self._waiting = []
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
