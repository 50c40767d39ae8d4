"""Hybrid ranking of a session's chunks for one query.

Lexical (FTS5 BM25) and dense (cosine over chunk embeddings) scores are fused by distribution-based
score fusion: each list is scaled by the mean and spread of its own candidates' scores and the two
are mixed with fixed weights. Unlike reciprocal rank fusion this keeps the margin: a paraphrase that
the embedding model is sure of, with no word in common with the question, still beats chunks that
are merely mediocre on both lists. A turn next to a strong hit then gets part of that hit's score
(the question it answers, the answer it got). The result is adjusted by light priors: a
working-set boost for sources touched recently, a small recency term, a preference for the latest
snapshot of a file (or for diffs when the question is about a change), and for turns written on a
date the question names (`memory.recall.dates`). Ties break on chunk id, so the order is fully
deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memory.recall.dates import named_periods, within
from memory.recall.index import RankArrays, SessionView

__all__ = ["Scored", "Hits", "RankOptions", "DEFAULT_OPTIONS", "fts_query", "rank_chunks", "is_change_query", "CANDIDATES"]

CANDIDATES = 150  # per ranked list, at least; compile asks for more when the budget is large
DENSE_WEIGHT = 0.5
LEXICAL_WEIGHT = 0.5
RECENCY_WEIGHT = 0.03
WORKING_SET_BOOST = 0.04
WORKING_SET_EVENTS = 12
STALE_VERSION_FACTOR = 0.35
CHANGE_BOOST = 1.6
NEIGHBOUR_WEIGHT = 0.3  # tuned on LoCoMo dev (conversations 1-5): 0.2-0.5 all help, 0.3 best at 2,000
# A turn written on a date the question names counts as a match one standard deviation above the
# mean of one list (the fusion's unit, LEXICAL_WEIGHT x 1): set by that reasoning, not tuned.
DATE_WEIGHT = 0.5
_WORD = re.compile(r"[A-Za-z0-9_]{2,}|[^\W\d_]{2,}", re.U)
_CHANGE = re.compile(r"\b(chang\w*|diff\w*|modif\w*|edit\w*|updat\w*|previous|before|regress\w*|what's new|since)\b", re.I)
_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "please", "should", "so", "that", "the", "their", "them", "then", "there", "these", "this", "those", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your", "about", "after", "again", "all", "also", "any"]
)


@dataclass(frozen=True)
class Scored:
    pos: int  # chunk position in the view
    score: float


def fts_query(text: str) -> str:
    """An FTS5 OR-query of the question's content words, each quoted (never a syntax error)."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP or word in words:
            continue
        words.append(word)
    return " OR ".join(f'"{w}"' for w in words[:64])


def is_change_query(text: str) -> bool:
    return bool(_CHANGE.search(text))


@dataclass(frozen=True)
class RankOptions:
    """Which ranking stages run; all on by default. The benchmark turns each off in turn (the
    ablation in benchmarks/RESULTS.md); applications have no reason to."""

    lexical: bool = True
    dense: bool = True
    neighbours: bool = True
    dates: bool = True
    split_entities: bool = True


DEFAULT_OPTIONS = RankOptions()


Hits = list[tuple[int, float]]  # (chunk id, FTS5 bm25), best first


def rank_chunks(
    view: SessionView,
    lexical: Hits,
    query_vector: np.ndarray | None,
    *,
    change_query: bool,
    candidates: int = CANDIDATES,
    options: RankOptions = DEFAULT_OPTIONS,
    query: str = "",
    parts: Sequence[tuple[Hits, np.ndarray | None]] = (),
) -> list[Scored]:
    """Fuse lexical hits (chunk id, bm25; best first) and dense similarity into one ranked list of
    chunk positions (probes folded into their chunk). The compiler skips what recent turns hold.
    `query` is read for the dates it names (the lists were built from it already). `parts` are
    the lists of the question's sub-queries (`memory.recall.subqueries`): each is fused the same
    way, and a chunk keeps its best standing in the question's or any sub-query's fusion."""
    n = len(view.chunk_ids)
    if n == 0:
        return []
    arrays = view.arrays()
    fused, scored = _fuse(view, arrays, lexical, query_vector, candidates, options)
    for sub_lexical, sub_vector in parts:
        sub_fused, sub_scored = _fuse(view, arrays, sub_lexical, sub_vector, candidates, options)
        np.maximum(fused, sub_fused, out=fused)
        scored |= sub_scored
    if options.neighbours:
        # A turn next to a strong hit is often its question or its answer ("Did you go?" / "Yes,
        # last Tuesday"): it gets part of its best neighbour's score.
        base = np.maximum(fused, 0.0)
        prev, nxt = arrays.prev_turn, arrays.next_turn
        lift = np.maximum(np.where(prev >= 0, base[prev], 0.0), np.where(nxt >= 0, base[nxt], 0.0))
        fused += NEIGHBOUR_WEIGHT * lift
        scored |= lift > 0
    positions = np.flatnonzero(scored)
    if positions.size == 0:
        return []
    last_order = view.max_event or 1
    recent_sources = _working_set(view)
    periods = named_periods(query) if options.dates and query else ()
    dated: dict[str, bool] = {}  # timestamp -> within a named period (a session's turns share one)
    out: list[Scored] = []
    for pos in positions.tolist():
        unit = view.units[view.chunk_unit[pos]]
        score = float(fused[pos]) + RECENCY_WEIGHT * (unit.order / last_order)
        if periods and unit.timestamp:
            hit = dated.get(unit.timestamp)
            if hit is None:
                hit = dated[unit.timestamp] = within(periods, unit.timestamp)
            if hit:
                score += DATE_WEIGHT
        if unit.source and unit.source in recent_sources:
            score += WORKING_SET_BOOST
        if not unit.latest:
            score *= STALE_VERSION_FACTOR
        if unit.kind in ("diff", "repo_diff"):
            score *= CHANGE_BOOST if change_query else 0.8
        out.append(Scored(pos, score))
    out.sort(key=lambda s: (-s.score, view.chunk_ids[s.pos]))
    return out


def _fuse(view: SessionView, arrays: RankArrays, lexical: Hits, query_vector: np.ndarray | None, candidates: int,
          options: RankOptions) -> tuple[np.ndarray, np.ndarray]:
    """One query's lexical and dense lists, distribution-scaled and summed with their weights, per
    chunk position; and which positions either list holds."""
    n = len(view.chunk_ids)
    render = arrays.render
    fused = np.zeros(n, dtype=np.float64)
    scored = np.zeros(n, dtype=bool)
    if options.lexical:
        # Probes stand in for their chunk: each list keeps a chunk's best representative.
        lex_picked: dict[int, float] = {}
        for chunk_id, score in lexical:
            pos = view.chunk_pos.get(chunk_id)
            if pos is not None:
                lex_picked.setdefault(int(render[pos]), -score)  # FTS5 bm25 is lower-is-better
        _add_scaled(fused, scored, lex_picked, LEXICAL_WEIGHT)
    if options.dense and query_vector is not None:
        sims = view.similarities(query_vector).astype(np.float64)
        sims[arrays.missing] = -np.inf
        best = sims.copy()
        np.maximum.at(best, render[arrays.probe_rows], sims[arrays.probe_rows])
        chunks = np.flatnonzero((render == np.arange(n)) & np.isfinite(best))
        k = min(candidates, chunks.size)
        top = chunks[np.argpartition(-best[chunks], k - 1)[:k]] if 0 < k < chunks.size else chunks
        _add_scaled(fused, scored, {int(p): float(best[p]) for p in top}, DENSE_WEIGHT)
    return fused, scored


def _add_scaled(fused: np.ndarray, scored: np.ndarray, picked: dict[int, float], weight: float) -> None:
    """Add one list's scores, distribution-scaled, with its weight: how many standard deviations a
    hit stands above the mean of its own list (0 at or below the mean). Unlike min-max it keeps
    how far a hit stands out from the crowd, so a retriever that is sure (one paraphrase far above
    the rest) outweighs one whose top hits are a flat run of weak matches."""
    if not picked:
        return
    targets = np.fromiter(picked, dtype=np.int64, count=len(picked))
    values = np.fromiter(picked.values(), dtype=np.float64, count=len(picked))
    sd = float(values.std()) or 1.0
    fused[targets] += weight * np.maximum(0.0, (values - float(values.mean())) / sd)
    scored[targets] = True


def _working_set(view: SessionView) -> set[str]:
    """Sources of artifacts touched within the last few events."""
    horizon = view.max_event - WORKING_SET_EVENTS
    return {source for source, order in view.source_order.items() if order > horizon}
