"""Looking into memory: event and artifact pages, per-turn costs, the last prompt item by item with
the text each item stood for, session search and usage across sessions (lexical mode)."""

from __future__ import annotations

import pytest

from memory import InvalidArgumentError, Usage, create_runtime
from memory import inspection


@pytest.fixture(params=["sqlite", "postgres"])
async def runtime(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    rt = create_runtime(storage_path=tmp_path / "m.sqlite", storage_url=url, embedding_model="none")
    async with rt:
        yield rt


def _chat(n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append({"role": "user", "content": f"question {i} about the parser " + "detail " * 40})
        out.append({"role": "assistant", "content": f"answer {i}: the parser uses a table " + "word " * 40})
    return out


async def _turn(session, history, question, budget, usage):
    plan = await session.prepare_turn([*history, {"role": "user", "content": question}], budget, "gpt-4o-mini")
    await session.commit_turn(plan, {"role": "assistant", "content": f"reply to {question}"}, usage)
    return plan


async def test_event_pages_walk_the_log_newest_first_and_mark_detached(runtime):
    session = runtime.session("s")
    ids = await session.ingest_many([{"type": "user_message", "payload": {"content": f"m{i}"}} for i in range(7)])
    first = await inspection.event_page(session, limit=3)
    assert [e["id"] for e in first] == ids[::-1][:3]
    second = await inspection.event_page(session, before=first[-1]["id"], limit=3)
    assert [e["id"] for e in second] == ids[::-1][3:6]
    assert [e["content"] for e in await inspection.events_by_id(session, [ids[2], ids[0], 10**9])] == ["m0", "m2"]
    # An edit detaches the abandoned branch; the inspector still shows it, marked.
    await session.sync_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    await session.sync_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b, edited"}])
    newest = await inspection.event_page(session, limit=2)
    assert [(e["content"], e["detached"]) for e in newest] == [("b, edited", False), ("b", True)]
    # Another session's ids are not this session's events.
    other = runtime.session("other")
    assert await inspection.events_by_id(other, ids) == []
    with pytest.raises(InvalidArgumentError):
        await inspection.event_page(session, limit=0)


async def test_artifact_versions_and_content(runtime):
    session = runtime.session("s")
    await session.ingest({"type": "file", "payload": {"source": "app/x.py", "content": "a = 1\nb = 2\n"}})
    await session.ingest({"type": "file", "payload": {"source": "app/x.py", "content": "a = 1\nb = 3\n"}})
    page = await inspection.artifact_page(session)
    files = [a for a in page if a["kind"] == "file"]
    assert [(a["source"], a["version"]) for a in files] == [("app/x.py", 1), ("app/x.py", 2)]
    assert files[1]["previous_id"] == files[0]["id"]
    assert any(a["kind"] == "diff" for a in page)
    full = await inspection.artifact(session, files[1]["id"])
    assert full is not None and full["content"] == "a = 1\nb = 3\n" and full["chars"] == len(full["content"])
    assert await inspection.artifact_page(session, after=files[1]["id"]) == [a for a in page if a["id"] > files[1]["id"]]
    assert await inspection.artifact(runtime.session("other"), files[1]["id"]) is None


async def test_turn_costs_and_the_last_prompt_item_by_item(runtime):
    session = runtime.session("s")
    history = _chat(12)
    history[0] = {"role": "user", "content": "Decision: the parser is table driven"}
    await _turn(session, history, "how does the parser work?", 700, Usage(prompt_tokens=650, completion_tokens=9, cached_tokens=0))
    history = [*history, {"role": "user", "content": "how does the parser work?"},
               {"role": "assistant", "content": "reply to how does the parser work?"}]
    plan = await _turn(session, history, "and the table?", 700, Usage(prompt_tokens=660, completion_tokens=7, cached_tokens=512))
    costs = await inspection.turns(session)
    assert [(c["n"], c["cached_tokens"], c["completion_tokens"]) for c in costs] == [(1, 0, 9), (2, 512, 7)]
    assert costs[1]["forwarded_tokens"] == plan.result.tokens and costs[1]["sent_tokens"] == plan.sent_tokens
    prompt = await inspection.last_prompt(session)
    assert prompt is not None
    included = prompt["included"]
    assert sum(i["tokens"] for i in included) <= 700
    # Every item the memory put in comes back with its text; the live tail is the question.
    assert included[-1]["reason"] == "live_tail" and included[-1]["text"] == "and the table?"
    state = [i for i in included if i["reason"] == "state"]
    assert state and state[0]["text"] == "the parser is table driven"
    window = [i for i in included if i["reason"] in ("window", "history")]
    assert window and all(i["text"] for i in window)
    evidence = [i for i in included if str(i.get("id", "")).startswith("chunk:")]
    assert all(i["text"] and i["score"] is not None for i in evidence)
    assert all("text" in d for d in prompt["dropped"])
    assert await inspection.last_prompt(runtime.session("nothing")) is None


async def test_find_sessions_and_usage_report_keep_to_the_prefix(runtime):
    for sid in ("alice/chat-1", "alice/chat-2", "alice/notes", "bob/chat-1"):
        await runtime.session(sid).ingest({"type": "user_message", "payload": {"content": "hi"}})
    found = await inspection.find_sessions(runtime, prefix="alice/", contains="CHAT")
    assert [s.id for s in found] == ["alice/chat-1", "alice/chat-2"]
    assert [s.id for s in await inspection.find_sessions(runtime, prefix="alice/", after="alice/chat-1", limit=1)] == ["alice/chat-2"]
    # The search is over what follows the prefix (the id its owner sees), never the prefix itself.
    assert await inspection.find_sessions(runtime, prefix="alice/", contains="alice") == []
    assert [s.id for s in await inspection.find_sessions(runtime, contains="bob/")] == ["bob/chat-1"]
    await _turn(runtime.session("alice/chat-1"), [], "q1", 4000, Usage(prompt_tokens=10, completion_tokens=2, cached_tokens=0))
    await _turn(runtime.session("alice/chat-2"), [], "q2 " * 50, 4000, Usage(prompt_tokens=60, completion_tokens=3, cached_tokens=0))
    await _turn(runtime.session("bob/chat-1"), [], "q3", 4000, Usage(prompt_tokens=10, completion_tokens=4, cached_tokens=0))
    report = await inspection.usage_report(runtime, prefix="alice/")
    assert report["sessions"] == 3
    assert [s["session_id"] for s in report["by_session"]] == ["alice/chat-2", "alice/chat-1"]
    assert report["totals"]["turns"] == 2 and report["totals"]["completion_tokens"] == 5
    assert report["totals"]["forwarded_tokens"] == sum(s["forwarded_tokens"] for s in report["by_session"])
    everyone = await inspection.usage_report(runtime)
    assert everyone["sessions"] == 4 and everyone["totals"]["completion_tokens"] == 9
