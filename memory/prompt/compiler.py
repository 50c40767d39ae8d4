"""The fresh compile: from a ranked session view to OpenAI messages that never exceed the budget.

It is the layout of `memory.prompt.layout` with no stored frame, i.e. a rebase:

    the app's system message(s) verbatim
    the state block (decisions, constraints, open questions, glossary)
    the best-ranked evidence, chronological, each item labelled with its turn or file location
    the most recent turns verbatim (tool-call groups kept whole)
    the rest of the evidence
    the new user message (the live tail) verbatim

State and recent turns get bounded shares; evidence fills the rest by score. (The proxy keeps the
part above the recent turns stable from turn to turn; see `memory.prompt.layout`.) When everything stored
fits, the history is returned unchanged (with standalone artifacts in one context block).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from memory.prompt.evidence import EVIDENCE_HEADER, message_tokens, unit_message
from memory.recall.index import SessionView, Unit
from memory.prompt.layout import Layout, LayoutInput, Line, build_layout
from memory.prompt.window import History
from memory.records import StateItem
from memory.recall.retrieval import Scored
from memory.recall.tokens import TiktokenCounter

__all__ = ["CompileResult", "CompileInput", "assemble", "history_lines", "result_of"]

_TOOL_ROLES = frozenset({"tool", "function"})
_NO_CALLS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CompileResult:
    """The compiled prompt: `messages` ready to send, `manifest` saying what went in and why."""

    messages: list[dict[str, Any]]
    manifest: dict[str, Any]
    tokens: int
    budget_tokens: int
    over_budget: bool
    items_included: int


@dataclass(frozen=True)
class CompileInput:
    session_id: str
    model: str
    budget: int
    system: list[dict[str, Any]]
    tail: list[dict[str, Any]]
    query: str
    state: list[StateItem]
    ranked: list[Scored]


def history_lines(view: SessionView, counter: TiktokenCounter) -> History:
    """The session's live messages as prompt lines, in order. Tool results whose call is not right
    before them (possible with hand-ingested events) are left out: a provider rejects them.
    A view's messages only ever grow (a change to the past builds a new view), so the lines are
    kept on the view and extended: at 100k events rebuilding them took ~0.4 s per compile. A
    line's message is built when the layout first asks for it (see `History`)."""
    done, cached, open_calls = view.history_cache.get(counter.encoding_name, (0, None, frozenset()))
    history = cast(History, cached) if cached is not None else History(make=_line_maker(view.messages))
    if done == len(view.messages):
        return history
    kept: list[int] = []
    for pos in range(done, len(view.messages)):
        unit = view.messages[pos]
        if unit.kind == "tool_message":
            if str(unit.extra.get("tool_call_id")) not in open_calls:
                continue
        else:
            calls = unit.extra.get("tool_calls") if unit.extra else None
            open_calls = frozenset(str(c.get("id")) for c in calls if isinstance(c, dict)) if calls else _NO_CALLS
        kept.append(pos)
    # A new History: one handed out before never changes under its holder.
    history = history.extended(kept, [message_tokens(view.messages[pos], view, counter) for pos in kept])
    view.history_cache[counter.encoding_name] = (len(view.messages), history, open_calls)
    return history


def _line_maker(messages: list[Unit]) -> Callable[[int, int], Line]:
    """How a History builds the line of message `pos` (the view's message list, which only grows)."""
    def make(pos: int, tokens: int) -> Line:
        unit = messages[pos]
        return Line(pos, unit_message(unit), unit.role or "user", int(unit.key[1:]), tokens)
    return make


def _artifacts_block(view: SessionView) -> dict[str, Any] | None:
    """Every snapshot the caller ingested (older versions too: they are part of the history);
    derived diffs and code blocks already inside messages are not. Kept on the view until it changes:
    walking every unit took a third of a warm compile at 10k events."""
    if "artifacts" not in view.derived_cache:
        view.derived_cache["artifacts"] = _artifacts_of(view)
    block: dict[str, Any] | None = view.derived_cache["artifacts"]
    return block


def _artifacts_of(view: SessionView) -> dict[str, Any] | None:
    artifacts: list[Unit] = sorted((u for u in view.units.values() if u.key.startswith("a") and not u.derived and u.kind != "diff"),
                                   key=lambda u: (u.first_order, u.key))
    if not artifacts:
        return None
    blocks = [f"[{u.kind.replace('_', ' ')} {u.source or ''}]\n" + "\n".join(view.chunk_rows[p].text for p in u.chunk_idx) for u in artifacts]
    return {"role": "system", "content": "\n\n".join([EVIDENCE_HEADER, *blocks])}


def result_of(layout: Layout, budget: int) -> CompileResult:
    return CompileResult(layout.messages, layout.manifest, layout.tokens, budget, layout.over_budget, layout.items)


def assemble(inp: CompileInput, view: SessionView, counter: TiktokenCounter) -> CompileResult:
    """Build the compiled messages for `inp` from the session view (a fresh layout, no frame)."""
    layout = build_layout(
        LayoutInput(inp.session_id, inp.model, inp.budget, inp.system, history_lines(view, counter), inp.tail, inp.query,
                    inp.state, inp.ranked, anchor=lambda n: "", artifacts_block=_artifacts_block(view), fresh=True),
        view, counter,
    )
    # The history's message dicts are kept on the view (see `history_lines`): the caller gets its own.
    return result_of(replace(layout, messages=[dict(m) for m in layout.messages]), inp.budget)
