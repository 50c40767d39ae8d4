"""LoCoMo strict recall with the view's vectors as int8 codes (what the runtime holds) against the
same run with float32 vectors, in one process on one set of embeddings:

    python -m benchmarks.scale_vector_codes --locomo ../shared/data/locomo/locomo10.json --conversations 6-10

The float32 run swaps `memory.recall.columns.quantize` for an identity (float32 rows, scale 1), which
is what the view held before the codes; everything else, ingest included, is the same code. The
model embeds each text once (a `CachedEmbedder` serves the second run). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from memory.recall import columns
from memory.recall.embeddings import load_embedder

from .locomo import load_locomo
from .recall import OURS, run_recall
from .timed_embedder import CachedEmbedder

__all__ = ["main"]


def _float32(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, dtype=np.float32)
    return rows.copy(), np.ones(len(rows), dtype=np.float32)


async def compare(path: Path, first: int, last: int, budgets: tuple[int, ...]) -> dict[str, Any]:
    inner = load_embedder(None)
    if inner is None:
        raise SystemExit("needs the embedding model")
    embedder = CachedEmbedder(inner)
    conversations = load_locomo(path)[first - 1 : last]
    out: dict[str, Any] = {"conversations": f"{first}-{last}", "questions": sum(len(c.questions) for c in conversations)}
    quantize = columns.quantize
    for name, codes in (("int8", quantize), ("float32", _float32)):
        setattr(columns, "quantize", codes)
        try:
            started = time.perf_counter()
            result = await run_recall(conversations, embedder, budgets, show_progress=False)
        finally:
            setattr(columns, "quantize", quantize)
        out[name] = {f"{s.split} @{s.budget}": round(s.strict, 4) for s in result.scores if s.method == OURS}
        out[name + "_s"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", type=Path, required=True)
    parser.add_argument("--conversations", default="6-10", help="first-last, 1-based positions in locomo10.json")
    parser.add_argument("--budgets", default="800,2000,8000")
    args = parser.parse_args(argv)
    first, last = (int(x) for x in args.conversations.split("-"))
    result = asyncio.run(compare(args.locomo, first, last, tuple(int(b) for b in args.budgets.split(","))))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
