"""An `Embedder` wrapper that records the time spent embedding, so compile latency can be reported
with and without the query embedding (the runtime takes the embedder through `create_runtime`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from memory.embeddings import Embedder

__all__ = ["TimedEmbedder"]


class TimedEmbedder:
    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.seconds = 0.0
        self.texts = 0
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.texts += len(texts)
            self.calls += 1
