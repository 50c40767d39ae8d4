"""A compile sees what was ingested before it (the runtime's default `consistency="strict"`): it
embeds the whole backlog first, so two compiles right after an ingest agree; "bounded" is an
explicit choice. Real embedding model (this is about what retrieval sees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory import InvalidArgumentError, create_runtime
from memory.recall.embeddings import Embedder
from memory.recall.embedding_queue import EMBED_NOW_CHARS


async def test_a_compile_right_after_ingest_ranks_everything_by_meaning(tmp_path: Path, real_embedder: Embedder) -> None:
    async with create_runtime(storage_path=tmp_path / "m.sqlite", embedder=real_embedder) as runtime:
        session = runtime.session("backlog")
        # Far more text than a bounded compile embeds: the oldest notes would rank by their words only.
        notes = [f"note {i}: " + "the nightly build step copies the static assets into the bundle folder. " * 6 for i in range(80)]
        assert sum(map(len, notes)) > 2 * EMBED_NOW_CHARS
        await session.ingest_many([{"type": "user_message", "payload": {"content": n}} for n in notes])
        first = await session.compile(user_message="Which step copies the assets?", budget_tokens=600)
        async with runtime.store.session_lock("backlog"):
            view = await runtime.loaded_view("backlog")
            assert not view.missing  # every chunk has its vector: nothing was left to the background
        second = await session.compile(user_message="Which step copies the assets?", budget_tokens=600)
        assert first.messages == second.messages
        assert first.manifest == second.manifest


def test_bounded_is_an_explicit_choice(tmp_path: Path) -> None:
    assert create_runtime(storage_path=tmp_path / "a.sqlite", embedding_model="none").compile_embed_limit is None
    bounded = create_runtime(storage_path=tmp_path / "b.sqlite", embedding_model="none", consistency="bounded")
    assert bounded.compile_embed_limit == EMBED_NOW_CHARS


def test_unknown_consistency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="consistency"):
        create_runtime(storage_path=tmp_path / "m.sqlite", embedding_model="none", consistency="eventual")
