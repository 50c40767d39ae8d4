"""Which retrieval constants were tuned on what, rendered into RESULTS.md section B.

Kept by hand next to the benchmark: whoever changes one of these constants updates its row. Rows
say "all ten" for constants chosen before the dev / held-out split existed (they saw the held-out
conversations), "dev" for those chosen on LoCoMo conversations 1-5 only, and name the other
source where a constant was set without LoCoMo."""

from __future__ import annotations

from typing import Final

__all__ = ["TUNED", "NOT_KEPT"]

ALL_TEN = "all ten LoCoMo conversations (chosen before the split)"
DEV_ONLY = "LoCoMo dev (conversations 1-5)"
CODING = "set by hand for coding sessions (section A scenarios), not on LoCoMo"

# (constant, module, tuned on)
TUNED: Final[tuple[tuple[str, str, str], ...]] = (
    ("LEXICAL_WEIGHT, DENSE_WEIGHT (z-score fusion)", "memory/recall/retrieval.py", ALL_TEN + "; re-checked on dev: 0.5 / 0.5 kept"),
    ("NEIGHBOUR_WEIGHT (neighbour-turn propagation)", "memory/recall/retrieval.py", DEV_ONLY),
    ("CANDIDATES, pool = max(2 x CANDIDATES, budget // 8)", "memory/recall/retrieval.py, memory/session.py, memory/turn/protocol.py", ALL_TEN),
    ("pair probes, PAIR_CHARS", "memory/ingest/ingest.py", ALL_TEN),
    ("LayoutPolicy.window_share, window_floor_share, state_share (were RECENT_SHARE, RECENT_FLOOR_SHARE, STATE_SHARE)",
     "memory/prompt/policy.py", ALL_TEN),
    ("RECENCY_WEIGHT", "memory/recall/retrieval.py", CODING),
    ("WORKING_SET_BOOST, WORKING_SET_EVENTS, STALE_VERSION_FACTOR, CHANGE_BOOST", "memory/recall/retrieval.py", CODING),
    ("prose probes (PROBE_MIN_CHUNK_TOKENS, PROBE_MAX_TOKENS)", "memory/ingest/chunking.py", CODING),
    ("DATE_WEIGHT (a turn written on a date the question names)", "memory/recall/retrieval.py, memory/recall/dates.py",
     "set by reasoning (one standard deviation of one list), not tuned; kept on LoCoMo dev and REALTALK dev (issue 19)"),
    ("sub-queries per name (split_entities), fused by each turn's best standing; MAX_SUBQUERIES",
     "memory/recall/subqueries.py, memory/recall/retrieval.py", "not tuned; kept on LoCoMo dev and REALTALK dev (issue 19)"),
)

# Directions measured on LoCoMo dev only (scratch harness over one ingest, ranking varied; commit
# a4d699e + the vectorised ranker) and not kept. Strict recall @800 / @2,000 / @8,000. "Before
# neighbours" rows compare with the ranking of that time: 0.695 / 0.787 / 0.917.
NOT_KEPT: Final[tuple[tuple[str, str], ...]] = (
    ("neighbour weight 0.2 / 0.5 / 0.7 (0.3 kept)", "0.701 / 0.795 / 0.921; 0.709 / 0.789 / 0.928; 0.701 / 0.792 / 0.925"),
    ("neighbours: sum of both instead of the better one; previous turn only; next turn only",
     "0.709 / 0.795 / 0.922; 0.707 / 0.789 / 0.921; 0.687 / 0.784 / 0.918"),
    ("fusion weights lexical / dense 0.4 / 0.6, 0.3 / 0.7, 0.6 / 0.4 (before neighbours)",
     "0.689 / 0.772 / 0.916; 0.672 / 0.762 / 0.916; 0.695 / 0.787 / 0.913"),
    ("z-scores not clipped at 0; z-scores over every chunk instead of each candidate list (before neighbours)",
     "0.683 / 0.778 / 0.913; 0.678 / 0.778 / 0.914"),
    ("reciprocal rank fusion (k = 60) instead of z-score fusion (before neighbours)", "0.668 / 0.780 / 0.912"),
    ("dense tail: + 0.02 / 0.05 / 0.1 x unclipped dense z-score, so the tail follows similarity",
     "0.708 / 0.793 / 0.920; 0.707 / 0.791 / 0.920; 0.708 / 0.789 / 0.920"),
    ("dense pseudo-relevance feedback: query + 0.5 x mean of the top 3; + 0.3 x mean of the top 5",
     "0.697 / 0.788 / 0.924; 0.703 / 0.792 / 0.929"),
    ("ranking that ignores pair probes; the same with neighbour weight 0.5 (pair probes stay)",
     "0.650 / 0.749 / 0.908; 0.689 / 0.782 / 0.920"),
    ("sentence vectors: each sentence of a message of two or more sentences (3+ words each) as a probe, the turn ranked by "
     "its best one (turn-level max-similarity), fusion as is (issue 19; evidence3, stored dev sessions, dates and "
     "sub-queries off; REALTALK dev 0.442 / 0.542 / 0.728 -> 0.436 / 0.536 / 0.733)",
     "0.708 / 0.795 / 0.925 -> 0.701 / 0.793 / 0.913: LoCoMo @8,000 falls 0.012 with no gain, not kept"),
    ("a local cross-encoder reranker", "not measured: no PyPI package ships reranker weights (flashrank 0.2.10 "
     "downloads them at run time; convmemory 0.7.0 and tinyintent 0.1.1 carry none), and weights are never downloaded"),
)
