"""Hybrid ranking of a session's chunks for one query.

Lexical (FTS5 BM25) and dense (cosine over chunk embeddings) scores are fused by distribution-based
score fusion: each list is scaled by the mean and spread of its own candidates' scores and the two
are mixed with fixed weights. Unlike reciprocal rank fusion this keeps the margin: a paraphrase that
the embedding model is sure of, with no word in common with the question, still beats chunks that
are merely mediocre on both lists. The fused score is then adjusted by light priors: a working-set boost for sources touched recently, a
small recency term, a preference for the latest snapshot of a file (or for diffs when the question
is about a change). Ties break on chunk id, so the order is fully deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .index import SessionView

__all__ = ["Scored", "fts_query", "rank_chunks", "is_change_query", "CANDIDATES"]

CANDIDATES = 150  # per ranked list, at least; compile asks for more when the budget is large
DENSE_WEIGHT = 0.5
LEXICAL_WEIGHT = 0.5
RECENCY_WEIGHT = 0.03
WORKING_SET_BOOST = 0.04
WORKING_SET_EVENTS = 12
STALE_VERSION_FACTOR = 0.35
CHANGE_BOOST = 1.6
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


def rank_chunks(
    view: SessionView,
    lexical: list[tuple[int, float]],
    query_vector: np.ndarray | None,
    *,
    change_query: bool,
    candidates: int = CANDIDATES,
) -> list[Scored]:
    """Fuse lexical hits (chunk id, bm25; best first) and dense similarity into one ranked list of
    chunk positions (probes folded into their chunk). The compiler skips what recent turns hold."""
    n = len(view.chunk_ids)
    if n == 0:
        return []
    render = view.render_pos
    fused: dict[int, float] = {}
    lex_seen: set[int] = set()
    # Probes stand in for their chunk: each list keeps a chunk's best representative.
    lex_picked: list[tuple[int, float]] = []
    for chunk_id, score in lexical:
        pos = view.chunk_pos.get(chunk_id)
        if pos is None:
            continue
        target = render[pos]
        if target in lex_seen:
            continue
        lex_seen.add(target)
        lex_picked.append((target, -score))  # FTS5 bm25 is lower-is-better
    for target, value in _distribution_scaled(lex_picked):
        fused[target] = LEXICAL_WEIGHT * value
    dense_seen: set[int] = set()
    if query_vector is not None:
        sims = view.vectors @ query_vector
        k = min(candidates * 3, n)
        top = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
        ordered = sorted((int(p) for p in top if p not in view.missing), key=lambda p: (-float(sims[p]), p))
        picked: list[tuple[int, float]] = []
        for pos in ordered:
            target = render[pos]
            if target in dense_seen:
                continue
            dense_seen.add(target)
            picked.append((target, float(sims[pos])))
            if len(picked) >= candidates:
                break
        for target, value in _distribution_scaled(picked):
            fused[target] = fused.get(target, 0.0) + DENSE_WEIGHT * value
    if not fused:
        return []
    last_order = view.max_event or 1
    recent_sources = _working_set(view)
    out: list[Scored] = []
    for pos, base in fused.items():
        unit = view.units[view.chunk_unit[pos]]
        score = base + RECENCY_WEIGHT * (unit.order / last_order)
        if unit.source and unit.source in recent_sources:
            score += WORKING_SET_BOOST
        if not unit.latest:
            score *= STALE_VERSION_FACTOR
        if unit.kind in ("diff", "repo_diff"):
            score *= CHANGE_BOOST if change_query else 0.8
        out.append(Scored(pos, score))
    out.sort(key=lambda s: (-s.score, view.chunk_ids[s.pos]))
    return out


def _distribution_scaled(scored: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Distribution-based scaling: how many standard deviations a hit stands above the mean of its
    own list (0 at or below the mean). Unlike min-max it keeps how far a hit stands out from the
    crowd, so a retriever that is sure (one paraphrase far above the rest) outweighs one whose top
    hits are a flat run of weak matches."""
    if not scored:
        return []
    values = np.fromiter((v for _, v in scored), dtype=np.float64, count=len(scored))
    mean = float(values.mean())
    sd = float(values.std()) or 1.0
    return [(target, max(0.0, (value - mean) / sd)) for target, value in scored]


def _working_set(view: SessionView) -> set[str]:
    """Sources of artifacts touched within the last few events."""
    horizon = view.max_event - WORKING_SET_EVENTS
    return {source for source, order in view.source_order.items() if order > horizon}
