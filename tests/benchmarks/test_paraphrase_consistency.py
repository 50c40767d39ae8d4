"""The paraphrase scenario of benchmark section A (a fact among 45 turns of code, asked in words it
shares with nothing), run as the README's library example runs it — ingest, then compile at once,
no `flush()` — finds the fact at every budget from 1,500, with the four distractor facts ranked
below it. Real embedding model (never a fake: this is about retrieval)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scenarios import FACTS, run_paraphrase
from memory import create_runtime
from memory.recall.embeddings import Embedder


@pytest.mark.parametrize("budget", [1500, 2000, 4000, 8000])
async def test_paraphrased_fact_found_right_after_ingest(tmp_path: Path, real_embedder: Embedder, budget: int) -> None:
    async with create_runtime(storage_path=tmp_path / "m.sqlite", embedder=real_embedder) as runtime:
        result = await run_paraphrase(runtime, budget=budget)
    assert result.keyword_overlap == ()
    assert result.tokens <= budget
    assert result.target_in_prompt, f"{FACTS[0]!r} not in the prompt at {budget}: {result}"
    assert result.passed, result
