"""Section A, part 2: the other scenarios of the earlier suite, through the public API only.

- pinning: a needle followed by 30 turns (90 items) survives a compile whose question is about
  something else only when it was ingested with `pinned: true`;
- diffs vs snippets: the same edit history ingested as full snapshots or as unified diffs;
- determinism: compile twice, and again after reopening the store: byte-identical;
- paraphrase + interference: five facts buried in 45 turns of code, a question sharing no content
  word with the right fact, budget 1500: that fact is in the prompt, the other four rank below it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory import Runtime, create_runtime
from memory.recall.tokens import get_counter

from .common import BUDGETS, MODEL, canonical, content_words, messages_text
from .corpus import CodeWindow, assistant_turn, code_windows, user_turn
from .session50 import NEEDLE, NEEDLE_SOURCE, needle_snippet

__all__ = ["PinningResult", "DiffResult", "DeterminismResult", "ParaphraseResult", "run_pinning", "run_diffs",
           "run_determinism", "run_paraphrase"]

PIN_QUESTION = "Can you summarise what the code we looked at most recently does?"

async def _code_turns(session: Any, windows: Sequence[CodeWindow]) -> None:
    events: list[dict[str, Any]] = []
    for w in windows:
        events += [
            {"type": "snippet", "payload": {"source": w.source, "content": w.text}},
            {"type": "user_message", "payload": {"content": user_turn(w)}},
            {"type": "assistant_message", "payload": {"content": assistant_turn(w)}},
        ]
    await session.ingest_many(events)


# -- pinning ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PinningResult:
    budget: int
    items_after_needle: int
    pinned_present: bool
    unpinned_present: bool

    @property
    def passed(self) -> bool:
        return self.pinned_present and not self.unpinned_present


async def run_pinning(runtime: Runtime, budget: int = 2000, noise_turns: int = 30, window_lines: int = 50) -> PinningResult:
    windows = code_windows(noise_turns, window_lines)
    present: dict[bool, bool] = {}
    for pinned in (True, False):
        session = runtime.session(f"pinning-{pinned}")
        await session.ingest({"type": "snippet", "payload": {"source": NEEDLE_SOURCE, "content": needle_snippet(), "pinned": pinned}})
        await _code_turns(session, windows)
        result = await session.compile(user_message=PIN_QUESTION, budget_tokens=budget, model=MODEL)
        present[pinned] = NEEDLE in messages_text(result.messages)
    return PinningResult(budget, 3 * noise_turns, present[True], present[False])


# -- diffs vs snippets -----------------------------------------------------------------------------
DIFF_SOURCE = "app/settings.py"
DIFF_QUESTION = "What changed in app/settings.py in the latest edit?"
DIFF_VERSIONS = 8


def _settings_versions(count: int) -> list[str]:
    base = [f"{name.upper()}_{i} = {i * 7 % 97}  # {name} setting number {i}"
            for i, name in enumerate(["cache", "queue", "worker", "mailer", "search", "billing"] * 10)]
    versions = ["\n".join(base)]
    for v in range(1, count):
        lines = versions[-1].split("\n")
        for j in (v * 7 % len(lines), v * 13 % len(lines)):
            lines[j] = lines[j].split(" = ")[0] + f" = {1000 + v * 10 + j}  # changed in edit {v}"
        versions.append("\n".join(lines))
    return versions


@dataclass(frozen=True)
class DiffResult:
    versions: int
    naive_snippets: int  # tokens of every version resent
    naive_diffs: int  # tokens of the first version plus every diff
    compiled_snippets: dict[int, int]
    compiled_diffs: dict[int, int]
    latest_change_visible: dict[str, dict[int, bool]]


async def run_diffs(runtime: Runtime, budgets: Sequence[int] = BUDGETS) -> DiffResult:
    counter = get_counter(MODEL)
    versions = _settings_versions(DIFF_VERSIONS)
    diffs = ["".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), f"a/{DIFF_SOURCE}", f"b/{DIFF_SOURCE}"))
             for a, b in zip(versions, versions[1:])]
    marker = f"changed in edit {DIFF_VERSIONS - 1}"
    compiled: dict[str, dict[int, int]] = {"snippets": {}, "diffs": {}}
    visible: dict[str, dict[int, bool]] = {"snippets": {}, "diffs": {}}
    for mode in ("snippets", "diffs"):
        session = runtime.session(f"diffs-{mode}")
        for v, text in enumerate(versions):
            if v == 0 or mode == "snippets":
                event = {"type": "snippet", "payload": {"source": DIFF_SOURCE, "content": text}}
            else:
                event = {"type": "repo_diff", "payload": {"source": DIFF_SOURCE, "content": diffs[v - 1]}}
            await session.ingest_many([
                event,
                {"type": "user_message", "payload": {"content": f"I edited {DIFF_SOURCE} (edit {v}). Does it still look right?"}},
                {"type": "assistant_message", "payload": {"content": "Yes, the settings module still looks consistent."}},
            ])
        for budget in budgets:
            result = await session.compile(user_message=DIFF_QUESTION, budget_tokens=budget, model=MODEL)
            compiled[mode][budget] = counter.messages_tokens(result.messages)
            visible[mode][budget] = marker in messages_text(result.messages)
    return DiffResult(
        versions=DIFF_VERSIONS,
        naive_snippets=sum(counter.count(v) for v in versions),
        naive_diffs=counter.count(versions[0]) + sum(counter.count(d) for d in diffs),
        compiled_snippets=compiled["snippets"], compiled_diffs=compiled["diffs"], latest_change_visible=visible,
    )


# -- determinism -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeterminismResult:
    budgets: tuple[int, ...]
    identical_twice: bool
    identical_after_reopen: bool
    manifest_identical: bool


async def run_determinism(runtime: Runtime, storage_path: str, budgets: Sequence[int] = BUDGETS, turns: int = 30,
                          window_lines: int = 50) -> DeterminismResult:
    """Compiles twice on `runtime`, then once more through a second runtime opened on the same file
    (fresh in-process views, so the result is rebuilt from storage)."""
    question = "Where do we handle session ids, and what do we check about them?"
    first: dict[int, tuple[str, str]] = {}
    twice = manifests = True
    session = runtime.session("determinism")
    await session.ingest({"type": "snippet", "payload": {"source": NEEDLE_SOURCE, "content": needle_snippet()}})
    await _code_turns(session, code_windows(turns, window_lines))
    for budget in budgets:
        a = await session.compile(user_message=question, budget_tokens=budget, model=MODEL)
        b = await session.compile(user_message=question, budget_tokens=budget, model=MODEL)
        first[budget] = (canonical(a.messages), canonical(a.manifest))
        twice &= canonical(a.messages) == canonical(b.messages)
        manifests &= canonical(a.manifest) == canonical(b.manifest)
    reopen = True
    async with create_runtime(storage_path=storage_path, embedder=runtime.embedder) as second:
        session = second.session("determinism")
        for budget in budgets:
            c = await session.compile(user_message=question, budget_tokens=budget, model=MODEL)
            reopen &= canonical(c.messages) == first[budget][0]
    return DeterminismResult(tuple(budgets), twice, reopen, manifests)


# -- paraphrase + interference ---------------------------------------------------------------------
FACTS = (
    "Authentication timeout configured for 30 minutes.",
    "Maximum file upload size is 50MB.",
    "Database connection pool holds 20 connections.",
    "Rate limit is 100 requests per minute per API key.",
    "Nightly backups are retained for 14 days.",
)
PARAPHRASE_QUESTION = "How long does a user session stay valid before they need to log in again?"


@dataclass(frozen=True)
class ParaphraseResult:
    turns: int
    budget: int
    keyword_overlap: tuple[str, ...]
    target_in_prompt: bool
    target_rank: int | None  # 1-based among every scored manifest entry
    distractor_ranks: tuple[int | None, ...]  # None: not among the scored entries at all
    distractors_in_prompt: int
    tokens: int

    @property
    def passed(self) -> bool:
        below = all(r is None or (self.target_rank is not None and r > self.target_rank) for r in self.distractor_ranks)
        return self.target_in_prompt and self.target_rank is not None and below and not self.keyword_overlap


def _with_fact(window: CodeWindow, fact: str) -> tuple[CodeWindow, int]:
    lines = window.text.split("\n")
    at = len(lines) // 2
    lines.insert(at, f"# NOTE: {fact}")
    return CodeWindow(window.path, window.start, window.end, "\n".join(lines)), at + 1


def _fact_rank(entries: list[dict[str, Any]], source: str, line: int) -> int | None:
    for rank, entry in enumerate(entries, start=1):
        lines = entry.get("lines") or [line, line]
        if entry.get("source") == source and lines[0] <= line <= lines[1]:
            return rank
    return None


def fact_turns(turns: int) -> list[int]:
    """0-based turns holding the five facts: spread over the first 85% (none among the newest)."""
    span = max(len(FACTS), int(turns * 0.85))
    return [round(span * (i + 0.5) / len(FACTS)) for i in range(len(FACTS))]


async def run_paraphrase(runtime: Runtime, turns: int = 45, budget: int = 1500, window_lines: int = 50) -> ParaphraseResult:
    windows = code_windows(turns, window_lines)
    placed: list[tuple[str, int]] = []  # (source, line) of each fact
    for fact, turn in zip(FACTS, fact_turns(turns)):
        windows[turn], line = _with_fact(windows[turn], fact)
        placed.append((windows[turn].source, line))
    session = runtime.session("paraphrase")
    await _code_turns(session, windows)
    result = await session.compile(user_message=PARAPHRASE_QUESTION, budget_tokens=budget, model=MODEL)
    text = messages_text(result.messages)
    scored = [e for e in result.manifest.get("included", []) + result.manifest.get("dropped", []) if e.get("score") is not None]
    scored.sort(key=lambda e: -float(e["score"]))
    ranks = [_fact_rank(scored, source, line) for source, line in placed]
    return ParaphraseResult(
        turns=turns, budget=budget,
        keyword_overlap=tuple(sorted(content_words(PARAPHRASE_QUESTION) & content_words(FACTS[0]))),
        target_in_prompt=FACTS[0] in text, target_rank=ranks[0], distractor_ranks=tuple(ranks[1:]),
        distractors_in_prompt=sum(f in text for f in FACTS[1:]), tokens=result.tokens,
    )
