"""Which retrieval constants were tuned on what, rendered into RESULTS.md section B.

Kept by hand next to the benchmark: whoever changes one of these constants updates its row. Rows
say "all ten" for constants chosen before the dev / held-out split existed (they saw the held-out
conversations), "dev" for those chosen on LoCoMo conversations 1-5 only, and name the other
source where a constant was set without LoCoMo."""

from __future__ import annotations

from typing import Final

__all__ = ["TUNED"]

ALL_TEN = "all ten LoCoMo conversations (chosen before the split)"
DEV_ONLY = "LoCoMo dev (conversations 1-5)"
CODING = "set by hand for coding sessions (section A scenarios), not on LoCoMo"

# (constant, module, tuned on)
TUNED: Final[tuple[tuple[str, str, str], ...]] = (
    ("LEXICAL_WEIGHT, DENSE_WEIGHT (z-score fusion)", "memory/retrieval.py", ALL_TEN),
    ("CANDIDATES, pool = max(2 x CANDIDATES, budget // 8)", "memory/retrieval.py, memory/runtime.py", ALL_TEN),
    ("pair probes, PAIR_CHARS", "memory/ingest.py", ALL_TEN),
    ("RECENT_SHARE, RECENT_FLOOR_SHARE, STATE_SHARE", "memory/compiler.py", ALL_TEN),
    ("RECENCY_WEIGHT", "memory/retrieval.py", CODING),
    ("WORKING_SET_BOOST, WORKING_SET_EVENTS, STALE_VERSION_FACTOR, CHANGE_BOOST", "memory/retrieval.py", CODING),
    ("prose probes (PROBE_MIN_CHUNK_TOKENS, PROBE_MAX_TOKENS)", "memory/chunking.py", CODING),
)
