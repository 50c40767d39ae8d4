"""Section A, part 1: the 50-turn session, naive resend vs a budget-only window vs compiled, at
three budgets.

Turn 1 ingests a snippet holding a secret needle; turns 2..N ingest a 50-line window of this
project's own source plus a user and an assistant message. Before each turn's user message is
stored, the prompt for it is compiled at every budget (compile is read-only); the last turn asks
for the needle instead, in words that share no content word with the snippet or its turn (so
keyword search alone cannot find it). `observe` is never called, so the needle can only come from
retrieval. Naive = every snippet so far in one system message, the whole chat history, the new
message. Recent = the same items as chat messages (each snippet its own system message), the most
recent ones that fit the budget with the new message: what any packer that respects the budget
gets, so the compiled prompt's reduction is only worth what it keeps beyond this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memory import Runtime
from memory.recall.tokens import TiktokenCounter, get_counter

from .common import BUDGETS, MODEL, content_words, messages_text, progress
from .corpus import assistant_turn, code_windows, user_turn

__all__ = ["SessionBudgetRow", "SessionResult", "run_session50", "NEEDLE", "needle_snippet"]

NEEDLE = "needle-7c41e9b2-kestrel"
NEEDLE_SOURCE = "deploy/staging.env"
# Paraphrased: no content word in common with the snippet or the first turn (checked and reported).
NEEDLE_QUESTION = "Which secret credential does the pre-production rollout authenticate with?"
FIRST_USER = "Here are the staging deployment settings we use; keep them in mind."
FIRST_ASSISTANT = "Understood, I have the staging deployment settings."


def needle_snippet() -> str:
    return "\n".join([
        "# staging deployment settings",
        "REGION=eu-west-1",
        "REPLICAS=2",
        f"DEPLOY_TOKEN={NEEDLE}",
        "HEALTHCHECK_PATH=/healthz",
    ])


@dataclass(frozen=True)
class SessionBudgetRow:
    budget: int
    avg_naive: float
    avg_compiled: float
    max_compiled: int
    reduction: float  # 1 - avg_compiled / avg_naive
    needle_found: bool
    never_over: bool
    reported_tokens_exact: bool  # result.tokens equals our own count on every turn
    avg_recent: float  # the budget-only baseline: most recent items that fit
    recent_reduction: float  # 1 - avg_recent / avg_naive
    recent_needle_found: bool


@dataclass(frozen=True)
class SessionResult:
    turns: int
    window_lines: int
    naive_per_turn: tuple[int, ...]
    compiled_per_turn: dict[int, tuple[int, ...]]
    rows: tuple[SessionBudgetRow, ...]
    question: str
    keyword_overlap: tuple[str, ...]  # content words the needle question shares with its snippet and turn
    recent_per_turn: dict[int, tuple[int, ...]]


def _snippet_block(snippets: list[tuple[str, str]]) -> dict[str, Any]:
    body = "\n\n".join(f"### {source}\n{content}" for source, content in snippets)
    return {"role": "system", "content": "Project files shared so far:\n\n" + body}


def _recent(counter: TiktokenCounter, items: list[dict[str, Any]], costs: list[int], user: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """The most recent `items` that fit `budget` with `user`, newest backwards until one does not
    fit. Exact: a message list's tokens are the sum of its messages' plus the reply priming."""
    used = counter.messages_tokens([user])
    start = len(items)
    while start > 0 and used + costs[start - 1] <= budget:
        start -= 1
        used += costs[start]
    return [*items[start:], user]


async def run_session50(runtime: Runtime, turns: int = 50, budgets: Sequence[int] = BUDGETS, window_lines: int = 50,
                        show_progress: bool = True) -> SessionResult:
    counter = get_counter(MODEL)
    windows = code_windows(turns - 1, window_lines)
    naive: list[int] = []
    compiled: dict[int, list[int]] = {b: [] for b in budgets}
    recent: dict[int, list[int]] = {b: [] for b in budgets}
    recent_found = {b: False for b in budgets}
    items: list[dict[str, Any]] = []  # chat messages in order, each snippet its own system message
    costs: list[int] = []
    exact = {b: True for b in budgets}
    needle_found = {b: False for b in budgets}
    snippets: list[tuple[str, str]] = []
    history: list[dict[str, Any]] = []
    session = runtime.session("session50")
    for turn in progress(range(1, turns + 1), "50-turn session", total=turns, enabled=show_progress):
        if turn == 1:
            source, content, user, reply = NEEDLE_SOURCE, needle_snippet(), FIRST_USER, FIRST_ASSISTANT
        else:
            w = windows[turn - 2]
            source, content, user, reply = w.source, w.text, user_turn(w), assistant_turn(w)
        if turn == turns:
            user = NEEDLE_QUESTION
        await session.ingest({"type": "snippet", "payload": {"source": source, "content": content}})
        snippets.append((source, content))
        _append(counter, items, costs, {"role": "system", "content": f"Project file {source}:\n{content}"})
        naive.append(counter.messages_tokens([_snippet_block(snippets), *history, {"role": "user", "content": user}]))
        for budget in budgets:
            window = _recent(counter, items, costs, {"role": "user", "content": user}, budget)
            recent[budget].append(counter.messages_tokens(window))
            if turn == turns:
                recent_found[budget] = NEEDLE in messages_text(window)
            result = await session.compile(user_message=user, budget_tokens=budget, model=MODEL)
            tokens = counter.messages_tokens(result.messages)
            exact[budget] &= tokens == result.tokens
            compiled[budget].append(tokens)
            if turn == turns:
                needle_found[budget] = NEEDLE in messages_text(result.messages)
        if turn < turns:
            await session.ingest_many([
                {"type": "user_message", "payload": {"content": user}},
                {"type": "assistant_message", "payload": {"content": reply}},
            ])
            history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            for message in history[-2:]:
                _append(counter, items, costs, message)
    avg_naive = sum(naive) / len(naive)
    rows = []
    for b in budgets:
        avg = sum(compiled[b]) / len(compiled[b])
        avg_recent = sum(recent[b]) / len(recent[b])
        rows.append(SessionBudgetRow(
            budget=b, avg_naive=avg_naive, avg_compiled=avg, max_compiled=max(compiled[b]),
            reduction=1.0 - avg / avg_naive, needle_found=needle_found[b],
            never_over=max(compiled[b]) <= b, reported_tokens_exact=exact[b],
            avg_recent=avg_recent, recent_reduction=1.0 - avg_recent / avg_naive, recent_needle_found=recent_found[b],
        ))
    fact = " ".join([needle_snippet(), FIRST_USER, FIRST_ASSISTANT])
    return SessionResult(turns, window_lines, tuple(naive), {b: tuple(v) for b, v in compiled.items()}, tuple(rows),
                         question=NEEDLE_QUESTION, keyword_overlap=tuple(sorted(content_words(NEEDLE_QUESTION) & content_words(fact))),
                         recent_per_turn={b: tuple(v) for b, v in recent.items()})


def _append(counter: TiktokenCounter, items: list[dict[str, Any]], costs: list[int], message: dict[str, Any]) -> None:
    items.append(message)
    costs.append(counter.message_tokens(message))
