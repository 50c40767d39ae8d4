"""The shared vocabulary of tool-loop compaction: its policy, its memo, and the tail it works on.

`memory.turn.compact` finds the compaction points and assembles the result; `memory.turn.levels`
decides, at one compaction, how far each older step goes. Both read the tail through `Tail`: the
messages, their tokens, the calls by id, the steps and the outputs' text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.turn.stubs import call_label

__all__ = ["TOOL_ROLES", "Rewrite", "CompactPolicy", "CompactMemo", "chat_rewrite", "Rendering", "Tail", "output_text", "tool_calls", "Decided", "Plan"]

TOOL_ROLES = frozenset({"tool", "function"})

# (the message as the client sent it, its rewritten chat form) -> the rewritten message in the
# client's wire form, or None when that form cannot carry the rewrite (the message then stays whole).
Rewrite = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class CompactPolicy:
    """When and how far the tail is compacted (shares of the tail's room; sizes in tokens/chars)."""

    low_water: float = 0.7
    # Of a compaction's target, what the newest steps may keep verbatim before older ones are stubbed.
    verbatim_share: float = 0.5
    # The newest steps kept whole whatever the target: the latest (its output is what the agent
    # reacts to); the ones before it stay in the verbatim window while they fit it. Protecting two
    # let two large outputs push every older step out of the prompt, and the prompt over its room.
    keep_steps: int = 1
    min_output_tokens: int = 120
    head_lines: int = 4
    tail_lines: int = 3
    diff_share: float = 0.6
    arg_chars: int = 600
    arg_keep: int = 160
    content_chars: int = 1_000
    content_keep: int = 250
    brief_chars: int = 240
    note_calls: int = 12
    note_chars: int = 80
    # Kept out of the tail's room for the earlier conversation (state, recent turns, evidence).
    memory_share: float = 0.2
    # Of a compaction's target, what the lines kept in the note for dropped steps may take (`memory.turn.digest`).
    digest_share: float = 0.6
    # What a name the agent never wrote weighs in the note's lines (one it wrote once weighs log 2, about 0.69;
    # on the tuning trajectories 0.15 carried more than 0.3, 0.05 or 0).
    digest_others: float = 0.15
    # When every older step is dropped, how far from the target towards the room the note may go
    # (`memory.turn.levels.compact`): the rest of the room is left for the steps appended untouched.
    # On the tuning trajectories at budgets 5,000-8,000, 0.8 bought more recall per unit of cost than
    # a higher compaction target or more excerpts did.
    digest_reach: float = 0.8
    # That reach leaves room below the room for at least this many of the loop's recent steps (the
    # median of the newest `headroom_window`): a loop of large steps (whole-file reads) is then
    # compacted every few steps, not at every step with its note rewritten (the cache rebuilt each time).
    # The note's lines are what the next steps recall, so the headroom is bought with recall: on the
    # tuning trajectories at 6,000, 2 cost 0.626 at r = 0.1 (0.736 without) and lost 0.050 recall
    # (0.970 to 0.919), 1 cost 0.703 and lost 0.008; at 8,000 (smaller steps for the room) 2 lost none.
    headroom_steps: float = 1.0
    headroom_window: int = 8
    # Give the room a note leaves unused (fewer salient lines than its share) back to the steps.
    fill: bool = True
    # Of the budget, what the excerpts of compacted outputs may take (`memory.turn.excerpts`).
    evidence_share: float = 0.025



class CompactMemo:
    """Bounded cache of renderings (stub, pointer, diff texts and their tokens): a request
    re-plays its tail's compactions, which render the same messages every time. It also keeps
    the last plan of each tail (`Plan`, by the tail's first message and room),
    so the next request, which carries its predecessor's messages, resumes the replay where that
    one stopped."""

    def __init__(self, max_entries: int = 20_000, max_plans: int = 1_024) -> None:
        self._max = max_entries
        self._cache: dict[Any, Any] = {}
        self._max_plans = max_plans
        self._plans: dict[int, Plan] = {}

    def plan(self, key: int) -> Plan | None:
        return self._plans.get(key)

    def keep_plan(self, key: int, plan: Plan) -> None:
        self._plans.pop(key, None)
        self._plans[key] = plan
        while len(self._plans) > self._max_plans:
            del self._plans[next(iter(self._plans))]

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        found = self._cache.get(key)
        if found is None:
            found = make()
            self._cache[key] = found
            while len(self._cache) > self._max:
                del self._cache[next(iter(self._cache))]
        return found


def chat_rewrite(original: dict[str, Any], rewritten: dict[str, Any]) -> dict[str, Any]:
    """The chat wire form: the client's message with the rewritten fields."""
    return {**original, **rewritten}


# (kind, the message in the client's wire form, its tokens, the call a pointer or diff refers to)
Rendering = tuple[str, dict[str, Any], int, "str | None"]


@dataclass
class Tail:
    messages: Sequence[dict[str, Any]]
    tokens: list[int]
    calls: dict[str, tuple[str, str]]  # call id -> (name, arguments)
    steps: list[int]  # indexes of the assistant messages
    texts: list[str | None]  # a tool output's text (None for other messages and non-text outputs)
    token_of: Callable[[dict[str, Any]], int]
    memo: CompactMemo
    policy: CompactPolicy
    rewrite: Rewrite
    # Message i at a level on its own, by (i, level): one compaction weighs and renders each many times.
    alone: dict[tuple[int, int], Rendering] = field(default_factory=dict)

    def label(self, i: int) -> str:
        call_id = str(self.messages[i].get("tool_call_id") or "")
        name, args = self.calls.get(call_id, ("tool call", call_id))
        return call_label(name, args)

    def key(self, i: int) -> tuple[str, str] | None:
        """What makes two calls the same call: the tool and its arguments."""
        return self.calls.get(str(self.messages[i].get("tool_call_id") or ""))


def output_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("text", "input_text") for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    return None


def tool_calls(messages: Sequence[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict):
                function = call.get("function") or {}
                out[str(call.get("id"))] = (str(function.get("name") or ""), str(function.get("arguments") or ""))
    return out


@dataclass
class Decided:
    """A compaction's renderings of tail[:j] (a dropped message renders as nothing) and the note
    standing for dropped steps: (the index it goes before, the message, its tokens)."""

    out: dict[int, Rendering]
    note: tuple[int, dict[str, Any], int] | None

    def saved(self, t: Tail) -> int:
        return sum(t.tokens[i] - r[2] for i, r in self.out.items()) - (self.note[2] if self.note else 0)


@dataclass(frozen=True)
class Plan:
    """Where a replay of the tail's growth stood before it looked at tail index `end` (the tail's
    length then): valid for any tail whose first `end` messages hash to `chain`."""

    end: int = 1
    chain: int = 0
    decided: Decided = field(default_factory=lambda: Decided({}, None))
    point: int = 0
    compactions: int = 0
    saved: int = 0
