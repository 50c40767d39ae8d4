"""Baseline context builders for the LoCoMo recall benchmark, written here so they share nothing
with the library under test except the token counter and the embedding model file.

Each ranks whole turns and packs them by rank until the budget, skipping a turn that does not fit
and trying the next (greedy). Rankers: most-recent-turns window, BM25 (SQLite FTS5 `bm25()` in an
in-memory database), dense cosine over all-MiniLM-L6-v2, and reciprocal-rank fusion of the last two.
Tokens are exact: the packed messages are counted with the chat formula and trimmed if BPE merges
across line joins pushed them over.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memory.recall.embeddings import Embedder
from memory.recall.tokens import TiktokenCounter

from .locomo import Turn

__all__ = ["Packed", "TurnCorpus", "pack_recency", "pack_ranked", "rrf_ranking"]

HEADER = "Relevant earlier conversation turns:\n"
RRF_K = 60
_WORD = re.compile(r"\w+", re.U)


@dataclass(frozen=True)
class Packed:
    included: frozenset[str]  # dia_ids
    tokens: int


class TurnCorpus:
    """One conversation's turns, their exact token costs, a BM25 index and (optionally) embeddings."""

    def __init__(self, turns: Sequence[Turn], counter: TiktokenCounter, embedder: Embedder | None) -> None:
        self.turns = list(turns)
        self.counter = counter
        self.line_cost = [counter.count(t.content + "\n") for t in self.turns]
        self.message_cost = [counter.message_tokens({"role": t.role, "content": t.content}) for t in self.turns]
        self._db = sqlite3.connect(":memory:")
        self._db.execute("CREATE VIRTUAL TABLE turns USING fts5(content, tokenize='unicode61')")
        self._db.executemany("INSERT INTO turns(rowid, content) VALUES (?, ?)", ((i, t.content) for i, t in enumerate(self.turns)))
        self.vectors = embedder.embed([t.content for t in self.turns]) if embedder is not None else None

    def close(self) -> None:
        self._db.close()

    def bm25(self, query: str) -> list[int]:
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        rows = self._db.execute("SELECT rowid FROM turns WHERE turns MATCH ? ORDER BY bm25(turns), rowid", (match,))
        return [int(r[0]) for r in rows]

    def dense(self, query_vector: np.ndarray) -> list[int]:
        if self.vectors is None:
            raise ValueError("corpus built without an embedder")
        scores = self.vectors @ query_vector
        # Stable: equal scores keep chronological order.
        return [int(i) for i in np.argsort(-scores, kind="stable")]


def rrf_ranking(*rankings: list[int]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, idx in enumerate(ranking):
            scores[idx] = scores.get(idx, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores, key=lambda i: (-scores[i], i))


def _evidence_messages(corpus: TurnCorpus, chosen: list[int], question: str) -> list[dict[str, Any]]:
    lines = "".join(corpus.turns[i].content + "\n" for i in sorted(chosen))
    return [{"role": "system", "content": HEADER + lines}, {"role": "user", "content": question}]


def pack_ranked(corpus: TurnCorpus, ranking: list[int], question: str, budget: int) -> Packed:
    """Whole turns in rank order into one system block (chronological), greedy until the budget."""
    used = corpus.counter.messages_tokens(_evidence_messages(corpus, [], question))
    chosen: list[int] = []
    for idx in ranking:
        cost = corpus.line_cost[idx]
        if used + cost <= budget:
            chosen.append(idx)
            used += cost
    messages = _evidence_messages(corpus, chosen, question)
    tokens = corpus.counter.messages_tokens(messages)
    while tokens > budget and chosen:
        chosen.pop()  # lowest-ranked first
        messages = _evidence_messages(corpus, chosen, question)
        tokens = corpus.counter.messages_tokens(messages)
    return Packed(frozenset(corpus.turns[i].dia_id for i in chosen), tokens)


def pack_recency(corpus: TurnCorpus, question: str, budget: int) -> Packed:
    """The most recent turns as chat messages, newest backwards, until the next one does not fit."""
    used = corpus.counter.messages_tokens([{"role": "user", "content": question}])
    start = len(corpus.turns)
    while start > 0 and used + corpus.message_cost[start - 1] <= budget:
        start -= 1
        used += corpus.message_cost[start]
    return Packed(frozenset(t.dia_id for t in corpus.turns[start:]), used)
