"""Shared fixtures: one real embedding model per test run (loading it costs ~1 s)."""

from __future__ import annotations

import pytest

from memory.embeddings import load_embedder


@pytest.fixture(scope="session")
def real_embedder():
    """The real all-MiniLM-L6-v2 (never a fake: retrieval-quality tests depend on it)."""
    return load_embedder(None)
