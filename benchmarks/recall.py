"""Section B: evidence recall at budget on LoCoMo, memory-runtime against four baselines.

Every turn of a conversation is ingested in order into one session (speaker A as user messages,
speaker B as assistant messages, the session date as the timestamp). For each scorable question,
`compile(user_message=question, budget_tokens=B)` runs and an evidence turn counts as present when
its full ingested content string appears in the compiled messages' text (strict: an excerpted turn
is a miss). Unresolvable evidence ids count as misses for every method.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from memory import create_runtime
from memory.recall.retrieval import RankOptions
from memory.recall.embeddings import Embedder
from memory.recall.tokens import get_counter

from .baselines import TurnCorpus, pack_ranked, pack_recency, rrf_ranking
from .common import BUDGETS, MODEL, Percentiles, Stopwatch, messages_text, percentiles, progress
from .locomo import ALL, CATEGORY_NAMES, SPLITS, Conversation, Question
from .timed_embedder import CachedEmbedder

__all__ = ["METHODS", "OURS_PG", "ABLATIONS", "CategoryScore", "MethodScore", "SplitInfo", "RecallResult", "run_recall", "quick_selection"]

OURS = "memory-runtime"
OURS_PG = "memory-runtime on PostgreSQL"
METHODS = (OURS, "recency window", "BM25 only", "embeddings only", "BM25+embeddings RRF")
TARGETS = {800: 0.80, 2000: 0.90, 8000: 0.97}
# Ranking stages turned off one at a time, over the same stored sessions (the ablation table).
ABLATIONS = {
    f"{OURS} without neighbour propagation": RankOptions(neighbours=False),
    f"{OURS}, BM25 list only": RankOptions(dense=False, neighbours=False),
    f"{OURS}, dense list only": RankOptions(lexical=False, neighbours=False),
}


@dataclass(frozen=True)
class CategoryScore:
    category: int
    n: int
    strict: float
    fraction: float


@dataclass(frozen=True)
class MethodScore:
    method: str
    budget: int
    split: str
    n: int
    strict: float
    fraction: float
    avg_tokens: float
    max_tokens: int
    categories: tuple[CategoryScore, ...]
    latency: Percentiles | None = None  # compile latency, ours only


@dataclass(frozen=True)
class SplitInfo:
    name: str
    conversations: tuple[str, ...]  # sample ids
    questions: int


@dataclass(frozen=True)
class RecallResult:
    conversations: int
    turns: int
    questions: int
    unresolved_ids: int
    ingest_s: float  # ingest_many calls (the runtime starts embedding in the background)
    flush_s: float  # waiting until every turn is embedded
    over_budget_flags: int
    scores: tuple[MethodScore, ...]
    splits: tuple[SplitInfo, ...]  # only the splits that hold questions in this run
    targets: dict[int, float] = field(default_factory=lambda: dict(TARGETS))

    @property
    def headline_split(self) -> str:
        """The held-out split when this run has it (the figure that counts), else the first there is."""
        return self.splits[0].name

    def score(self, method: str, budget: int, split: str | None = None) -> MethodScore:
        wanted = split or self.headline_split
        return next(s for s in self.scores if s.method == method and s.budget == budget and s.split == wanted)


@dataclass
class _Tally:
    splits: list[str] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)
    strict: list[bool] = field(default_factory=list)
    fraction: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def add(self, split: str, question: Question, present: int, tokens: int) -> None:
        total = len(question.evidence)
        self.splits.append(split)
        self.categories.append(question.category)
        self.strict.append(present == total)
        self.fraction.append(present / total)
        self.tokens.append(tokens)

    def score(self, method: str, budget: int, split: str) -> MethodScore:
        rows = [i for i, s in enumerate(self.splits) if split in (s, ALL)]
        cats = []
        for cat in sorted(CATEGORY_NAMES):
            idx = [i for i in rows if self.categories[i] == cat]
            if idx:
                cats.append(CategoryScore(cat, len(idx), _mean([self.strict[i] for i in idx]), _mean([self.fraction[i] for i in idx])))
        return MethodScore(
            method=method,
            budget=budget,
            split=split,
            n=len(rows),
            strict=_mean([self.strict[i] for i in rows]),
            fraction=_mean([self.fraction[i] for i in rows]),
            avg_tokens=_mean([self.tokens[i] for i in rows]),
            max_tokens=max((self.tokens[i] for i in rows), default=0),
            categories=tuple(cats),
            latency=percentiles([self.latency_ms[i] for i in rows]) if self.latency_ms else None,
        )


def _mean(values: Sequence[float | bool | int]) -> float:
    return float(sum(values)) / len(values) if values else float("nan")


def quick_selection(conversations: list[Conversation], turns: int = 150, per_category: int = 3) -> list[Conversation]:
    """A smoke run: the first `turns` turns of the first conversation, with the first few questions
    of each category whose evidence lies entirely within them."""
    first = conversations[0]
    kept = first.turns[:turns]
    known = {t.dia_id for t in kept}
    picked: list[Question] = []
    for cat in sorted(CATEGORY_NAMES):
        fits = [q for q in first.questions if q.category == cat and q.resolved == q.evidence and set(q.evidence) <= known]
        picked.extend(fits[:per_category])
    return [Conversation(first.sample_id, kept, tuple(picked), first.position)]


async def run_recall(
    conversations: list[Conversation], embedder: Embedder | None, budgets: Sequence[int] = BUDGETS, show_progress: bool = True,
    postgres_url: str | None = None,
) -> RecallResult:
    """`embedder` serves the dense baselines and the runtime alike (one model in memory). With
    `postgres_url` (an empty database), memory-runtime is scored a second time on the PostgreSQL
    store, fed the same turns, as `OURS_PG` (it reuses the SQLite run's embeddings)."""
    counter = get_counter(MODEL)
    tallies: dict[tuple[str, int], _Tally] = defaultdict(_Tally)
    ingest_ms = flush_ms = 0.0
    over_budget = 0
    if postgres_url and embedder is not None:
        embedder = CachedEmbedder(embedder)
    with tempfile.TemporaryDirectory(prefix="bench-locomo-") as tmp:
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(create_runtime(storage_path=str(Path(tmp) / "locomo.sqlite"), embedder=embedder))
            pg = await stack.enter_async_context(create_runtime(storage_url=postgres_url, embedder=embedder)) if postgres_url else None
            for conv in progress(conversations, "LoCoMo conversations", enabled=show_progress):
                session = runtime.session(f"locomo-{conv.sample_id}")
                events = [
                    {"type": f"{t.role}_message", "payload": {"content": t.content, "timestamp": t.timestamp}}
                    for t in conv.turns
                ]
                with Stopwatch() as sw:
                    await session.ingest_many(events)
                ingest_ms += sw.ms
                with Stopwatch() as sw:
                    await session.flush()
                flush_ms += sw.ms
                pg_session = pg.session(session.id) if pg is not None else None
                if pg_session is not None:
                    await pg_session.ingest_many(events)
                    await pg_session.flush()
                corpus = TurnCorpus(conv.turns, counter, embedder)
                index = conv.turn_index()
                vectors = embedder.embed([q.text for q in conv.questions]) if embedder is not None else None
                for qi, question in enumerate(progress(conv.questions, f"  {conv.sample_id} questions", enabled=show_progress)):
                    evidence = [index[e].content for e in question.resolved]
                    bm25 = corpus.bm25(question.text)
                    dense = corpus.dense(vectors[qi]) if vectors is not None else []
                    rankings = {"BM25 only": bm25, "embeddings only": dense, "BM25+embeddings RRF": rrf_ranking(bm25, dense)}
                    for budget in budgets:
                        with Stopwatch() as sw:
                            result = await session.compile(user_message=question.text, budget_tokens=budget, model=MODEL)
                        text = messages_text(result.messages)
                        tally = tallies[(OURS, budget)]
                        tally.add(conv.split, question, sum(1 for c in evidence if c in text), counter.messages_tokens(result.messages))
                        tally.latency_ms.append(sw.ms)
                        over_budget += bool(result.over_budget)
                        if pg_session is not None:
                            on_pg = await pg_session.compile(user_message=question.text, budget_tokens=budget, model=MODEL)
                            text = messages_text(on_pg.messages)
                            tallies[(OURS_PG, budget)].add(conv.split, question, sum(1 for c in evidence if c in text),
                                                           counter.messages_tokens(on_pg.messages))
                        packed = pack_recency(corpus, question.text, budget)
                        tallies[("recency window", budget)].add(conv.split, question, len(packed.included & set(question.resolved)), packed.tokens)
                        for name, ranking in rankings.items():
                            packed = pack_ranked(corpus, ranking, question.text, budget)
                            tallies[(name, budget)].add(conv.split, question, len(packed.included & set(question.resolved)), packed.tokens)
                corpus.close()
        for name, options in ABLATIONS.items():
            async with create_runtime(storage_path=str(Path(tmp) / "locomo.sqlite"), embedder=embedder, rank_options=options) as runtime:
                for conv in progress(conversations, name, enabled=show_progress):
                    session = runtime.session(f"locomo-{conv.sample_id}")
                    index = conv.turn_index()
                    for question in conv.questions:
                        evidence = [index[e].content for e in question.resolved]
                        for budget in budgets:
                            result = await session.compile(user_message=question.text, budget_tokens=budget, model=MODEL)
                            text = messages_text(result.messages)
                            tallies[(name, budget)].add(conv.split, question, sum(1 for c in evidence if c in text),
                                                        counter.messages_tokens(result.messages))
    splits = _splits(conversations)
    methods = METHODS + tuple(ABLATIONS) + (OURS_PG,)
    scores = tuple(tallies[(m, b)].score(m, b, sp.name) for sp in splits for m in methods for b in budgets if (m, b) in tallies)
    return RecallResult(
        conversations=len(conversations),
        turns=sum(len(c.turns) for c in conversations),
        questions=sum(len(c.questions) for c in conversations),
        unresolved_ids=sum(len(q.evidence) - len(q.resolved) for c in conversations for q in c.questions),
        ingest_s=ingest_ms / 1000.0,
        flush_s=flush_ms / 1000.0,
        over_budget_flags=over_budget,
        scores=scores,
        splits=splits,
    )


def _splits(conversations: list[Conversation]) -> tuple[SplitInfo, ...]:
    """Held out, dev, and all (when both are present), each only if it holds questions."""
    out: list[SplitInfo] = []
    for name in SPLITS:
        members = [c for c in conversations if name in (c.split, ALL)]
        if name == ALL and len({c.split for c in conversations}) < 2:
            continue  # "all" would repeat the one split there is
        if sum(len(c.questions) for c in members):
            out.append(SplitInfo(name, tuple(c.sample_id for c in members), sum(len(c.questions) for c in members)))
    return tuple(out)
