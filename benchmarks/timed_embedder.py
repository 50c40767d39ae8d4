"""An `Embedder` wrapper that records the time spent embedding, so compile latency can be reported
with and without the query embedding (the runtime takes the embedder through `create_runtime`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from memory.recall.embeddings import Embedder

__all__ = ["TimedEmbedder", "CachedEmbedder"]


class TimedEmbedder:
    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # the process's CPU time while embedding (the model's threads included)
        self.texts = 0
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - cpu
            self.texts += len(texts)
            self.calls += 1


class CachedEmbedder:
    """Remembers each text's vector: a second store fed the same conversation (section B on
    PostgreSQL next to SQLite) reuses the first one's embeddings instead of computing them again."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._known: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._known))
        if todo:
            self._known.update(zip(todo, self.inner.embed(todo), strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._known[t] for t in texts])
