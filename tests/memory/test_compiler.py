"""Compiler invariants: never over budget, deterministic, tool groups never orphaned, layout."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memory import create_runtime
from memory.prompt.layout import OVER_BUDGET_FLOOR
from memory.recall.tokens import get_counter

WORDS = st.sampled_from(
    "alpha beta gamma delta config timeout upload cache retry token budget session login user file "
    "database index query vector 42 3.14 ünïcode 漢字 🚀 def return class import".split()
)
TEXT = st.lists(WORDS, min_size=1, max_size=60).map(" ".join)
CODE = st.lists(TEXT, min_size=1, max_size=30).map("\n".join)


@st.composite
def histories(draw):
    events = []
    call_id = 0
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["user", "assistant", "tool_group", "snippet", "file", "doc", "pinned"]))
        if kind == "user":
            events.append({"type": "user_message", "payload": {"content": draw(TEXT)}})
        elif kind == "assistant":
            events.append({"type": "assistant_message", "payload": {"content": draw(TEXT)}})
        elif kind == "tool_group":
            call_id += 1
            cid = f"call_{call_id}"
            events.append({"type": "assistant_message", "payload": {"content": "", "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": draw(TEXT)})}}]}})
            events.append({"type": "tool_message", "payload": {"content": draw(TEXT), "tool_call_id": cid}})
        elif kind in ("snippet", "doc"):
            events.append({"type": "snippet" if kind == "snippet" else "doc_chunk", "payload": {"source": f"src/{draw(WORDS)}.py", "content": draw(CODE)}})
        elif kind == "file":
            events.append({"type": "file", "payload": {"source": f"app/{draw(st.sampled_from(['a', 'b']))}.py", "content": draw(CODE)}})
        else:
            events.append({"type": "snippet", "payload": {"source": "pinned.md", "content": draw(CODE), "pinned": True}})
    return events


def _check_tool_groups(messages):
    """Every tool message follows an assistant message that called it; every call is answered."""
    open_calls: set[str] = set()
    for msg in messages:
        if msg["role"] == "tool":
            assert msg["tool_call_id"] in open_calls, "orphaned tool result"
            open_calls.discard(msg["tool_call_id"])
        else:
            assert not open_calls, "tool call without its result"
            if msg.get("tool_calls"):
                open_calls = {c["id"] for c in msg["tool_calls"]}
    assert not open_calls


async def _compile_twice(events, question, budget, model, system):
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("prop")
        if events:
            await session.ingest_many(events)
        first = await session.compile(user_message=question, budget_tokens=budget, model=model, system=system)
        second = await session.compile(user_message=question, budget_tokens=budget, model=model, system=system)
        return first, second


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=histories(), question=TEXT, budget=st.integers(0, 3000), model=st.sampled_from(["gpt-4o-mini", "gpt-4"]),
       system=st.one_of(st.none(), TEXT))
# Found by the property: the system message and the question alone are over the budget, and the
# floor still carries the newest turn (9 tokens alone, 6 inside the list) with them.
@example(events=[{"type": "user_message", "payload": {"content": "alpha alpha alpha"}},
                 {"type": "user_message", "payload": {"content": "alpha alpha"}}],
         question="alpha ünïcode alpha alpha alpha alpha alpha 🚀 alpha", budget=44, model="gpt-4",
         system="alpha alpha 3.14 alpha alpha 漢字 alpha alpha alpha alpha 漢字")
def test_never_over_budget_deterministic_no_orphans(events, question, budget, model, system):
    first, second = asyncio.run(_compile_twice(events, question, budget, model, system))
    counter = get_counter(model)
    assert json.dumps(first.messages, sort_keys=True) == json.dumps(second.messages, sort_keys=True)
    assert first.tokens == counter.messages_tokens(first.messages)
    if first.over_budget:
        # The system message and the question alone exceed the budget: they go whole, and with them
        # only what fits a floor of the budget (the state block, the newest turns), nothing else.
        fixed = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        assert counter.messages_tokens(fixed) > budget and first.tokens > budget
        assert first.messages[: len(fixed) - 1] == fixed[:-1] and first.messages[-1] == fixed[-1]
        assert first.tokens - counter.messages_tokens(fixed) <= int(budget * OVER_BUDGET_FLOOR)
        assert first.manifest["over_budget"] is True
    else:
        assert first.tokens <= budget
    _check_tool_groups(first.messages)
    assert first.messages[-1] == {"role": "user", "content": question}
    if system:
        assert first.messages[0] == {"role": "system", "content": system}


async def test_whole_history_that_fits_is_returned_unchanged():
    convo = [("user", "What database do we use?"), ("assistant", "PostgreSQL 16."), ("user", "And the cache?"), ("assistant", "Redis.")]
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("s")
        for role, text in convo:
            await session.ingest({"type": f"{role}_message", "payload": {"content": text}})
        result = await session.compile(user_message="thanks", budget_tokens=4000, system="Be brief.")
    assert result.manifest["mode"] == "full_history"
    assert result.messages == [{"role": "system", "content": "Be brief."}] + [{"role": r, "content": t} for r, t in convo] + [
        {"role": "user", "content": "thanks"}]


async def test_over_budget_flag_when_fixed_parts_do_not_fit():
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("s")
        await session.ingest({"type": "user_message", "payload": {"content": "earlier"}})
        result = await session.compile(user_message="word " * 200, budget_tokens=50, system="sys")
    # The budget is a target: the fixed parts go whole, with the newest turn within the floor.
    assert result.over_budget and result.manifest["over_budget"] and result.manifest["over_budget_by"] == result.tokens - 50
    assert [m["content"] for m in result.messages] == ["sys", "earlier", "word " * 200] and result.items_included == 1


async def test_layout_and_labels_and_content_parts():
    parts = [{"type": "text", "text": "what is in this picture of the deploy graph?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("s")
        await session.ingest({"type": "snippet", "payload": {"source": "deploy/graph.yaml", "content": "stages:\n  - build\n  - deploy graph canary\n" * 30}})
        for i in range(30):
            await session.ingest({"type": "user_message", "payload": {"content": f"filler question number {i} about nothing in particular " * 3}})
            await session.ingest({"type": "assistant_message", "payload": {"content": f"filler answer {i} " * 10}})
        await session.ingest({"type": "user_message", "payload": {"content": "Decision: deploy graph uses canary stages"}})
        await session.ingest({"type": "user_message", "payload": {"content": "", "parts": parts}})
        result = await session.compile(user_message=[{"role": "user", "content": parts}], budget_tokens=1400, system="You are a deploy bot.")
    msgs = result.messages
    assert msgs[0] == {"role": "system", "content": "You are a deploy bot."}
    assert msgs[1]["role"] == "system" and msgs[1]["content"].startswith("Session state") and "D1: deploy graph uses canary stages" in msgs[1]["content"]
    # State, the best-ranked evidence, recent turns verbatim, more evidence, the live tail (at 900 tokens
    # state and window alone fill the base's 0.4 of the room and all evidence goes after the window).
    assert msgs[2]["role"] == "system" and "[snippet deploy/graph.yaml:" in msgs[2]["content"]
    assert msgs[-2]["role"] == "system" and msgs[-2]["content"].startswith("Relevant context")
    assert msgs[-1] == {"role": "user", "content": parts}
    assert msgs[-3] == {"role": "user", "content": parts}  # the stored parts message, kept valid as a recent turn
    assert all(m["role"] in ("user", "assistant") for m in msgs[3:-2])
    assert result.tokens <= 1400
    reasons = {i["reason"] for i in result.manifest["included"]}
    assert {"system", "state", "retrieved", "window", "live_tail"} <= reasons


async def _compile_extended_and_fresh(events, cut, question, budget):
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("grow")
        if events[:cut]:
            await session.ingest_many(events[:cut])
        warm = await session.compile(user_message=question, budget_tokens=budget)
        for message in warm.messages:  # the caller owns what it got: nothing it does reaches memory
            message["content"] = "changed by the caller"
        if events[cut:]:
            await session.ingest_many(events[cut:])
        extended = await session.compile(user_message=question, budget_tokens=budget)
        rt._views.clear()  # the next compile builds the view (and its history lines) from the store
        fresh = await session.compile(user_message=question, budget_tokens=budget)
        return extended, fresh


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=histories(), cut=st.integers(0, 50), question=TEXT, budget=st.integers(200, 3000))
def test_history_lines_kept_on_the_view_match_a_fresh_view(events, cut, question, budget):
    extended, fresh = asyncio.run(_compile_extended_and_fresh(events, cut, question, budget))
    assert json.dumps(extended.messages, sort_keys=True) == json.dumps(fresh.messages, sort_keys=True)
    assert extended.manifest["included"] == fresh.manifest["included"]
