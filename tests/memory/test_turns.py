"""The turn rules of `memory.turn.turns`: the budget is a target, never a guillotine."""

from __future__ import annotations

from typing import Any

from memory import create_runtime, get_counter
from memory.turn.turns import effective_budget

COUNTER = get_counter("gpt-4o-mini")


def test_the_apps_fixed_part_counts_up_to_half_the_budget_and_goes_on_top_beyond() -> None:
    assert effective_budget(4000, 300) == 4000  # a chat app's system prompt: nothing changes
    assert effective_budget(4000, 2000) == 4000
    assert effective_budget(4000, 4100) == 6100  # Codex-sized instructions: memory keeps 2,000
    assert effective_budget(4000, 17000) == 19000  # Claude Code-sized


def _history(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"Turn {i}: the release checklist item {i} " + "detail " * 40},
                     {"role": "assistant", "content": f"Noted item {i}."}]
    return messages


async def test_an_agent_with_long_instructions_is_served_within_the_default_budget() -> None:
    instructions = {"role": "developer", "content": "Follow the repository's conventions. " * 2500}  # ~15k tokens
    assert COUNTER.message_tokens(instructions) > 12_000
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("agent")
        messages = [instructions] + _history(30) + [{"role": "user", "content": "What was turn 1 about?"}]
        plan = await session.prepare_turn(messages, 4000)
    assert plan.mode != "over_budget"
    assert plan.messages[0] == instructions and plan.messages[-1] == messages[-1]
    assert len(plan.messages) > 3  # history or evidence came along
    assert plan.result.tokens <= effective_budget(4000, COUNTER.message_tokens(instructions))


async def test_over_budget_the_task_the_state_block_and_recent_turns_still_go() -> None:
    decision = "Decision: ship the beta to ten customers " + " ".join(f"with-condition-{n}" for n in range(600))  # one long line
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("over")
        history = [{"role": "system", "content": "You are the release assistant."},
                   {"role": "user", "content": decision}, {"role": "assistant", "content": "Noted."}] + _history(4)
        # The earlier conversation stored as such (brought whole on a first call, up to 12 messages
        # would be read as the client's fixed context: `memory.turn.align.fixed_context`).
        await session.sync_messages(history)
        first = await session.prepare_turn(history + [{"role": "user", "content": "ok"}], 4000)
        await session.commit_turn(first, {"role": "assistant", "content": "ok."})
        assert (await session.state())["decisions"]
        task = {"role": "user", "content": "Review this log: " + "line of the log " * 2000}  # alone over the budget
        messages = history + [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok."}, task]
        plan = await session.prepare_turn(messages, 1000)
    assert plan.mode == "over_budget" and plan.layout.manifest["over_budget_by"] == plan.result.tokens - 1000
    sent = plan.messages
    assert sent[0] == history[0] and sent[-1] == task
    state = [m for m in sent if m.get("role") == "system" and "Session state" in str(m.get("content"))]
    assert len(state) == 1 and "ship the beta to ten customers" in state[0]["content"] and "…" in state[0]["content"]
    assert {"role": "assistant", "content": "ok."} in sent  # the newest turn within the floor
