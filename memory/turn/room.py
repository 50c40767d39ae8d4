"""The room a turn's live tail gets within the budget, and the tail compacted into it.

A request's `Budget` counts either the whole prompt (`PROMPT`: the app's fixed part, its system and
developer messages, the context it re-sends and the tools it declares, counts against it up to half
of it) or only what memory controls (`MEMORY`: the conversation and the live loop; the fixed part and
the turn's task message go on top); `effective_budget` turns either into the tokens the prompt is
laid out in. The live tail may
take what is left after the fixed part and the share kept for memory (`tail_room`); past that it is
compacted (`memory.turn.compact`), with excerpts of what was compacted after it (`memory.turn.excerpts`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memory.errors import InvalidArgumentError

from memory.recall.tokens import REPLY_PRIMING_TOKENS, TiktokenCounter
from memory.turn.compact import TOOL_ROLES, CompactMemo, CompactPolicy, Compaction, Rewrite, compact_tail
from memory.turn.excerpts import candidates, excerpt_message, step_query
from memory.turn.observations import text_loop

__all__ = ["PROMPT", "MEMORY", "Budget", "tools_tokens", "effective_budget", "compacted_tail", "tail_room"]

PROMPT = "prompt"  # the budget counts the whole prompt (the fixed part up to half of it)
MEMORY = "memory"  # the budget counts only what memory controls; the fixed part goes on top


@dataclass(frozen=True)
class Budget:
    """The budget of one request: `tokens`, what they count (`covers`: `PROMPT` or `MEMORY`) and,
    for the manifest and the logs, where the figure came from (`source`, say a config key). A
    plain integer budget is `Budget(tokens)`: the whole prompt, as `compile` counts it."""

    tokens: int
    covers: str = PROMPT
    source: str = ""

    def __post_init__(self) -> None:
        if self.covers not in (PROMPT, MEMORY):
            raise InvalidArgumentError(f"a budget covers {PROMPT!r} or {MEMORY!r}, not {self.covers!r}")

    def describe(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "covers": self.covers, "source": self.source}



def tools_tokens(tools: Sequence[Any] | None, counter: TiktokenCounter) -> int:
    """The tokens of the tool definitions a request declares, estimated from their JSON. They go
    up on every call, like the app's system messages, so they are part of its fixed part."""
    return counter.count(json.dumps(list(tools), sort_keys=True, ensure_ascii=False)) if tools else 0


def effective_budget(budget: int, system_tokens: int, covers: str = PROMPT) -> int:
    """The budget a prompt is laid out in. Covering the whole prompt (`PROMPT`), the app's fixed
    part (`system_tokens`: its system and developer messages, re-sent context and tools) counts
    against `budget` up to half of it and goes on top beyond that: a chat app's short system prompt
    changes nothing, and instructions larger than half the budget leave memory half of it instead
    of putting every request over budget. Covering only what memory controls (`MEMORY`), the whole
    fixed part goes on top: an agent's 4-20k tokens of instructions (Codex, Claude Code) take
    nothing from its tool loop."""
    if covers == MEMORY:
        return budget + system_tokens
    return budget + max(0, system_tokens - budget // 2)


def compacted_tail(tail: list[dict[str, Any]], room: int, evidence_room: int, token_of: Callable[[dict[str, Any]], int],
                   policy: CompactPolicy = CompactPolicy(), rewrite: Rewrite | None = None,
                   memo: CompactMemo | None = None) -> tuple[list[dict[str, Any]], Compaction]:
    """The live tail as it goes up: compacted to `room - evidence_room` tokens when it outgrows
    that, then, when outputs were compacted, the lines of them that match the current step in one
    message of at most `evidence_room` tokens, last (`memory.turn.excerpts`). A loop written as
    text (observations sent as user messages) is compacted in tool form (`memory.turn.observations`)."""
    loop = text_loop(tail)
    if loop is not None:
        messages, compaction = _compacted(loop.messages, room, evidence_room, loop.tokens(token_of), policy, loop.rewrite(rewrite),
                                          memo)
        return loop.restore(messages), compaction
    return _compacted(tail, room, evidence_room, token_of, policy, rewrite, memo)


def _compacted(tail: list[dict[str, Any]], room: int, evidence_room: int, token_of: Callable[[dict[str, Any]], int],
               policy: CompactPolicy, rewrite: Rewrite | None, memo: CompactMemo | None) -> tuple[list[dict[str, Any]], Compaction]:
    compaction = compact_tail(tail, room - evidence_room, token_of, policy, rewrite, memo)
    if not compaction.stubbed:
        return compaction.messages, compaction
    messages = compaction.messages[: len(compaction.messages) - (len(tail) - compaction.point)]  # up to the compaction point
    found = (memo or CompactMemo()).get(("excerpts", compaction.key), lambda: candidates(compaction.stubbed, frozenset(
        line.rstrip() for m in messages if m.get("role") in TOOL_ROLES and isinstance(m.get("content"), str) for line in m["content"].splitlines())))
    evidence = excerpt_message(found, step_query(tail), evidence_room, lambda text: _text_tokens(token_of, text))
    return (compaction.messages + [evidence] if evidence else compaction.messages), compaction


def _text_tokens(token_of: Callable[[dict[str, Any]], int], text: str) -> int:
    return max(0, token_of({"role": "system", "content": text}) - token_of({"role": "system", "content": ""}))


def tail_room(budget: int, system_tokens: int, has_history: bool, policy: CompactPolicy) -> int:
    """The tokens the live tail may take before it is compacted: the budget less the app's system
    messages, the reply priming and, when there is earlier conversation, `memory_share` of the
    budget kept for it (the state block, recent turns, evidence). Constant within a turn, so the
    tail's compaction points are too."""
    reserve = int(budget * policy.memory_share) if has_history else 0
    return budget - system_tokens - REPLY_PRIMING_TOKENS - reserve
