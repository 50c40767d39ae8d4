"""The room a turn's live tail gets within the budget, and the tail compacted into it.

The budget a prompt is laid out in counts the app's fixed part (system and developer messages, the
context it re-sends, the tools it declares) up to half of it (`effective_budget`); the live tail may
take what is left after the fixed part and the share kept for memory (`tail_room`); past that it is
compacted (`memory.turn.compact`), with excerpts of what was compacted after it (`memory.turn.excerpts`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from memory.recall.tokens import REPLY_PRIMING_TOKENS, TiktokenCounter
from memory.turn.compact import TOOL_ROLES, CompactMemo, CompactPolicy, Compaction, Rewrite, compact_tail
from memory.turn.excerpts import candidates, excerpt_message, step_query
from memory.turn.observations import text_loop

__all__ = ["tools_tokens", "effective_budget", "compacted_tail", "tail_room"]


def tools_tokens(tools: Sequence[Any] | None, counter: TiktokenCounter) -> int:
    """The tokens of the tool definitions a request declares, estimated from their JSON. They go
    up on every call, like the app's system messages, so they are part of its fixed part."""
    return counter.count(json.dumps(list(tools), sort_keys=True, ensure_ascii=False)) if tools else 0


def effective_budget(budget: int, system_tokens: int) -> int:
    """The budget a prompt is laid out in: the app's fixed part (its system and developer
    messages) counts against `budget` up to half of it, and goes on top beyond that. A chat app's
    short system prompt changes nothing; an agent's 4-20k tokens of instructions (Codex, Claude
    Code) leave memory half the budget for the conversation instead of putting every request
    over budget."""
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
