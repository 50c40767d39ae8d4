"""Section A: the 50-turn session and its companion scenarios, on one scratch store so the code
windows they share are embedded once (vectors are keyed by content hash across sessions)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from memory import create_runtime
from memory.recall.embeddings import Embedder

from .scenarios import (
    DeterminismResult,
    DiffResult,
    ParaphraseResult,
    PinningResult,
    run_determinism,
    run_diffs,
    run_paraphrase,
    run_pinning,
)
from .session50 import SessionResult, run_session50

__all__ = ["SectionA", "run_section_a"]


@dataclass(frozen=True)
class SectionA:
    session: SessionResult
    pinning: PinningResult
    diffs: DiffResult
    determinism: DeterminismResult
    paraphrase: ParaphraseResult


async def run_section_a(embedder: Embedder | None, quick: bool, show_progress: bool = True) -> SectionA:
    # Quick mode keeps every scenario's shape (more than 20 items after a needle, 5 facts) but uses
    # short windows: embedding long code chunks dominates the run time on a small machine.
    turns, noise, para_turns, lines = (12, 8, 16, 12) if quick else (50, 30, 45, 50)
    with tempfile.TemporaryDirectory(prefix="bench-a-") as tmp:
        path = str(Path(tmp) / "section_a.sqlite")
        async with create_runtime(storage_path=path, embedder=embedder) as runtime:
            session = await run_session50(runtime, turns=turns, window_lines=lines, show_progress=show_progress)
            pinning = await run_pinning(runtime, noise_turns=noise, window_lines=lines)
            diffs = await run_diffs(runtime)
            determinism = await run_determinism(runtime, path, turns=noise, window_lines=lines)
            paraphrase = await run_paraphrase(runtime, turns=para_turns, window_lines=lines)
    return SectionA(session, pinning, diffs, determinism, paraphrase)
