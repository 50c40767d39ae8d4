"""The history of a proxied turn (`memory.turn.history`): the lines a named stateless client's long
session brings from memory are built only where the layout reads them, and the prompt is the one
that building every line gives."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

import memory.turn.history as turn_history_module
from memory import create_runtime, get_counter
from memory.prompt.evidence import unit_message
from memory.prompt.layout import Line
from memory.prompt.need import uses_tools
from memory.prompt.policy import LayoutPolicy
from memory.turn.turns import Request, align_request, build_plan, message_at, turn_inputs

COUNTER = get_counter("gpt-4o-mini")


def _conversation(turns: int) -> list[dict[str, Any]]:
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c7", "type": "function", "function": {"name": "read", "arguments": "{\"path\": \"a.py\"}"}}]}
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"Turn {i}: the release checklist item {i} " + "detail " * (5 + i % 30)},
                     {"role": "assistant", "content": f"Noted item {i}."}]
        if i == 7:  # one tool loop early on: the history holds a tool step
            messages += [{"role": "user", "content": "Read a.py."}, call, {"role": "tool", "tool_call_id": "c7", "content": "print(1)"},
                         {"role": "assistant", "content": "It prints 1."}]
    return messages


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A count of the messages memory builds for history lines (each line from memory builds one)."""
    built = [0]

    def counted(unit: Any) -> dict[str, Any]:
        built[0] += 1
        return unit_message(unit)

    monkeypatch.setattr(turn_history_module, "unit_message", counted)
    return built


@pytest.mark.parametrize("budget", [4000, 200_000])
async def test_a_long_named_stateless_session_lays_out_what_every_line_built_lays_out(monkeypatch: pytest.MonkeyPatch,
                                                                                     budget: int) -> None:
    stored = _conversation(400)
    question = {"role": "user", "content": "What was the release checklist item 12 about?"}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        await rt.session("long").sync_messages(stored)
        transcript = await rt.store.transcript("long")
        view = await rt.loaded_view("long")
        request = Request.of([question])  # stateless: only the new message
        aligned = align_request(transcript, request, True)
        assert aligned.p == len(stored)
        built = _counting(monkeypatch)
        lazy = turn_inputs(aligned, request, transcript, view, "gpt-4o-mini", budget, COUNTER)
        assert built[0] == 0 and len(lazy.history) == len(stored)
        plan = build_plan("long", "gpt-4o-mini", lazy.budget, request, True, "", lazy, [], None, [], [], view, COUNTER, LayoutPolicy())
        shown = built[0]

        eager: list[Line] = []
        for pos in range(aligned.p):
            message, event_id = message_at(aligned, pos, request, transcript, view)
            eager.append(Line(pos, message, aligned.roles[pos], event_id, COUNTER.message_tokens(message)))
        assert [line.tokens for line in lazy.history] == [line.tokens for line in eager]
        assert lazy.history_tools and uses_tools(line.message for line in eager)
        reference = build_plan("long", "gpt-4o-mini", lazy.budget, request, True, "", replace(lazy, history=eager), [], None, [], [],
                               view, COUNTER, LayoutPolicy())
    assert json.dumps(plan.messages) == json.dumps(reference.messages)  # byte for byte
    assert plan.layout.manifest == reference.layout.manifest and plan.mode == reference.mode
    if budget == 4000:  # a window of the newest lines: the rest of the session is never built
        assert plan.mode == "rebased" and 0 < shown < len(stored) // 10
    else:  # the whole conversation fits: every line goes, as stored
        assert plan.mode == "restored" and shown == len(stored)
        assert plan.messages[:-1] == stored


async def test_whether_a_line_from_memory_is_a_tool_step_is_read_off_its_unit() -> None:
    """A stored tool call alone (no result in the history) or a plain reply whose extra provider
    fields are kept: the flag is what a walk over the built messages says."""
    call = {"role": "assistant", "content": "Reading.",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}
    plain = {"role": "assistant", "content": "Done.", "refusal": "", "annotations": []}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        cases: list[tuple[str, dict[str, Any], bool]] = [("call", call, True), ("meta", plain, False)]
        for name, tail, expected in cases:
            await rt.session(name).sync_messages([{"role": "user", "content": "Read a.py."}, tail])
            transcript = await rt.store.transcript(name)
            view = await rt.loaded_view(name)
            n = len(transcript)
            history, tools = turn_history_module.turn_history(n, n, n, [], [e.role for e in transcript], transcript, view, COUNTER)
            assert tools is expected and uses_tools(line.message for line in history) is expected
            assert [line.tokens for line in history] == [COUNTER.message_tokens(line.message) for line in history]


async def test_a_stateless_sessions_next_request_walks_only_the_messages_stored_since(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token counts of memory's lines are kept on the view and extended: a request after two
    more stored messages walks those two; an edited past (another chain) walks again from the start.
    The counts are always those of the messages as built."""
    walked = [0]
    real = turn_history_module.memory_unit

    def counted(*args: Any) -> Any:
        walked[0] += 1
        return real(*args)

    monkeypatch.setattr(turn_history_module, "memory_unit", counted)
    question = {"role": "user", "content": "Which item was about the venue?"}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("grow")

        async def history() -> list[int]:
            transcript = await rt.store.transcript("grow")
            view = await rt.loaded_view("grow")
            request = Request.of([question])
            aligned = align_request(transcript, request, True)
            walked[0] = 0
            lines, _ = turn_history_module.turn_history(aligned.p, aligned.alignment.base, aligned.keep, [], aligned.roles, transcript,
                                                        view, COUNTER)
            walks = walked[0]  # reading the lines below builds them, which walks again
            assert [line.tokens for line in lines] == [COUNTER.message_tokens(unit_message(real(e.pos, len(transcript), transcript, view)))
                                                       for e in transcript]
            walked[0] = walks
            return [line.tokens for line in lines]

        stored = _conversation(60)
        await session.sync_messages(stored)
        assert len(await history()) == len(stored) and walked[0] == len(stored)
        await history()
        assert walked[0] == 0  # nothing stored since
        grown = stored + [{"role": "user", "content": "One more item: the venue."}, {"role": "assistant", "content": "Noted."}]
        await session.sync_messages(grown)
        assert len(await history()) == len(grown) and walked[0] == 2
        transcript, view = await rt.store.transcript("grow"), await rt.loaded_view("grow")
        other = list(reversed(transcript))  # the same events in another order: kept counts do not serve it
        lines, _ = turn_history_module.turn_history(len(other), len(other), len(other), [], [e.role for e in other], other, view, COUNTER)
        assert [line.tokens for line in lines] == [COUNTER.message_tokens(unit_message(real(i, len(other), other, view)))
                                                   for i in range(len(other))]
        edited = stored[:10] + [{"role": "user", "content": f"Redo item {i}: " + "again " * (3 + i)} if i % 2 == 0 else
                                {"role": "assistant", "content": f"Redone {i}."} for i in range(len(grown))]
        await session.sync_messages(edited)
        assert len(await history()) == len(edited) and walked[0] == len(edited)
