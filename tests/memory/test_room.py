"""The budget rule (`memory.turn.room`): what a request's budget counts, and what a Codex- or
Claude-Code-sized agent gets for its tool loop under each meaning."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memory import Budget, create_runtime
from memory.errors import InvalidArgumentError
from memory.turn.room import MEMORY, PROMPT, effective_budget

INSTRUCTIONS = "You are a coding agent. " + " ".join(f"rule-{i}: keep the diff small and run the tests." for i in range(450))
TOOLS = [{"type": "function", "function": {"name": "shell", "description": "Run a shell command. " * 40,
                                           "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]


def _loop(steps: int) -> list[dict[str, Any]]:
    """An agent's one turn: instructions, a task, then `steps` shell calls each with a ~600-token output."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": INSTRUCTIONS},
                                      {"role": "user", "content": "Fix the failing parser test in src/parse.py."}]
    for i in range(steps):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "shell", "arguments": json.dumps({"cmd": f"cat src/mod{i}.py"})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}",
                         "content": "\n".join(f"def function_{i}_{k}(value): return value + {k}  # module {i}" for k in range(40))})
    return messages


def test_a_budget_over_the_whole_prompt_takes_the_fixed_part_up_to_half_of_it() -> None:
    assert effective_budget(4000, 1200) == 4000
    assert effective_budget(4000, 5000) == 7000  # 3,000 beyond half goes on top
    assert effective_budget(4000, 5000, PROMPT) == 7000


def test_a_budget_over_what_memory_controls_puts_the_whole_fixed_part_on_top() -> None:
    assert effective_budget(16000, 1200, MEMORY) == 17200
    assert effective_budget(16000, 18000, MEMORY) == 34000
    assert effective_budget(16000, 0, MEMORY) == 16000


def test_a_budget_says_what_it_covers_and_refuses_anything_else() -> None:
    assert Budget(4000) == Budget(4000, PROMPT, "")
    assert Budget(16000, MEMORY, "agent_budget_tokens").describe() == {"tokens": 16000, "covers": "memory", "source": "agent_budget_tokens"}
    with pytest.raises(InvalidArgumentError):
        Budget(4000, "everything")


def _verbatim_outputs(messages: list[dict[str, Any]], sent: list[dict[str, Any]]) -> int:
    originals = {m["content"] for m in sent if m.get("role") == "tool"}
    return sum(1 for m in messages if m.get("role") == "tool" and m.get("content") in originals)


async def test_an_agent_keeps_its_loop_when_the_budget_covers_only_what_memory_controls() -> None:
    sent = _loop(14)  # ~6k tokens of instructions and tools, ~11k of loop
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        whole = await rt.session("whole").prepare_turn(sent, 4000, tools=TOOLS)
        agent = await rt.session("agent").prepare_turn(sent, Budget(16000, MEMORY, "agent_budget_tokens"), tools=TOOLS)
    # The fixed part (instructions, tools) and the task count against 4,000 up to half of it: the
    # loop gets what is left and goes up as little more than its newest output.
    assert whole.mode == "compacted" and _verbatim_outputs(whole.messages, sent) <= 2
    assert "budget" not in whole.layout.manifest
    # Covering only what memory controls, the whole loop fits: nothing compacted, nothing over budget.
    assert agent.mode not in ("compacted", "over_budget") and _verbatim_outputs(agent.messages, sent) == 14
    assert agent.messages[0]["content"] == INSTRUCTIONS and agent.messages[1]["content"].startswith("Fix the failing")
    assert agent.layout.manifest["budget"] == {"tokens": 16000, "covers": "memory", "source": "agent_budget_tokens"}
    assert agent.budget > 16000 + 4000  # laid out in the budget plus the fixed part and the task


async def test_the_task_message_counts_as_fixed_when_the_budget_covers_only_memory() -> None:
    task = "Context the client sends with the task:\n" + "\n".join(f"<system-reminder>note {k} about the repo</system-reminder>"
                                                                   for k in range(150))
    sent = _loop(3)
    sent[1] = {"role": "user", "content": task + "\nFix the failing parser test."}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        small = await rt.session("small").prepare_turn(sent, Budget(3000, MEMORY), tools=TOOLS)
    # The loop (3 outputs, ~2.4k tokens) fits 3,000 on its own: the task's ~2.4k tokens (Claude
    # Code's reminders ahead of it) go on top rather than pushing the loop into compaction.
    assert small.mode not in ("compacted", "over_budget") and _verbatim_outputs(small.messages, sent) == 3
