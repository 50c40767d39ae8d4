"""A deterministic stand-in for the embedding model, for tests about something else than retrieval
quality (start-up, failures): unit vectors from a hash of the text, same text same vector."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HashEmbedder"]


@dataclass
class HashEmbedder:
    name: str = "hash-test-embedder"
    dim: int = 16

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8).astype(np.float32) + 1 for t in texts]
        matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
