"""Agent and SDK request layouts through the proxy (the official `openai` client, the strict fake
upstream): a fixed context re-sent every call, a few-shot head, a files message after the history,
tool-call arguments re-serialised by the client, and a named session's request that starts over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memory.ingest import transcript
from memory.ingest.transcript import legacy_message_hash
from memory.turn.fixed import DIFF_HEADER
from testkit.diffs import apply_diff
from testkit.harness import Proxy, Upstream, config_for, start_proxy
from testkit.script import Reply, ToolCall

SYSTEM = {"role": "system", "content": "Act as an expert software developer. " + "Follow the house rules. " * 20}
FEW_SHOT = [{"role": "user", "content": "Change the greeting to be more casual"},
            {"role": "assistant", "content": "Ok, I will:\n\nshow_greeting.py\n```\nprint('Hey')\n```"},
            {"role": "user", "content": "I switched to a new code base. Please don't consider the above files any longer."},
            {"role": "assistant", "content": "Ok."}]
FILE_BODY = "".join(f"def helper_{i}(x):\n    return x * {i}  # marker-{i}\n\n" for i in range(40))


def _files(body: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"I have *added these files to the chat*.\n\nnotes.py\n```\n{body}```"},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."}]


@pytest.fixture(scope="module")
def small(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 600\nagent_budget_tokens: null\n")


def _export(proxy: Proxy, session: str) -> dict[str, Any]:
    with proxy.http() as http:
        found: dict[str, Any] = http.get(f"/memory/sessions/{session}/export").json()
        return found


def _sessions(proxy: Proxy) -> list[str]:
    with proxy.http() as http:
        return [s["id"] for s in http.get("/memory/sessions").json()["data"]]


def test_an_aider_layout_without_a_header_is_one_session_and_its_fixed_context_always_goes_up(small: Proxy, upstream: Upstream) -> None:
    client = small.client()
    before = set(_sessions(small))
    questions = ["Remember: the deploy codename is heliotrope.", "Which helper returns x times 7?", "What was the deploy codename?"]
    history: list[dict[str, Any]] = []
    for n, question in enumerate(questions):
        upstream.fake.enqueue(Reply(text=f"Answer {n}: ok."))
        body = FILE_BODY + f"# edit {n}\n"  # the file changes between calls: the files message is updated in place
        # aider restores its history from a log: whitespace differs from what it sent.
        restored = [{**m, "content": m["content"] + "  \n"} for m in history]
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[SYSTEM, *FEW_SHOT, *restored, *_files(body),
                                                                               {"role": "user", "content": question}])
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply.choices[0].message.content}]
        sent = upstream.fake.last_chat().json()["messages"]
        assert [m["content"] for m in sent[1:5]] == [m["content"] for m in FEW_SHOT]  # the few-shot head, in its place
        # The files message whatever the budget (n=2 is over it): as first sent, in front of the
        # conversation (inside the cached prefix), and the edits since as a diff before the question.
        assert sent[5:7] == _files(FILE_BODY + "# edit 0\n") and sent[-1] == {"role": "user", "content": question}
        if n:
            assert sent[-2]["content"].startswith(DIFF_HEADER) and f"+# edit {n}" in sent[-2]["content"]
            assert apply_diff(sent[5]["content"], sent[-2]["content"]) == _files(body)[0]["content"]
    new = set(_sessions(small)) - before
    assert len(new) == 1, new
    events = [e for e in _export(small, new.pop())["events"] if e["type"] in ("user_message", "assistant_message")]
    assert not any(e["detached"] for e in events)
    # Only the conversation is stored: no few-shot example, no files message (never evidence either).
    assert [e["content"] for e in events if e["type"] == "user_message"] == questions


def test_an_aider_layout_under_a_session_header_stores_its_few_shot_head_only_until_the_second_call(small: Proxy,
                                                                                                      upstream: Upstream) -> None:
    """With `X-Memory-Session` the first call stores all it brings (memory cannot know yet that it
    is not a conversation from before the proxy); the second shows the layout (the head again,
    the relayed turn after it, the files message moved behind it): the few-shot exchange and the
    files message leave the conversation, are sent in their place on every call, never as
    evidence, and only the questions and replies stay stored."""
    client = small.client(default_headers={"X-Memory-Session": "aider-named"})
    questions = ["Remember: the deploy codename is heliotrope.", "Which helper returns x times 7?",
                 "Should the greeting be casual?", "What was the deploy codename?"]
    history: list[dict[str, Any]] = []
    for n, question in enumerate(questions):
        upstream.fake.enqueue(Reply(text=f"Answer {n}: ok."))
        messages = [SYSTEM, *FEW_SHOT, *history, *_files(FILE_BODY + f"# edit {n}\n"), {"role": "user", "content": question}]
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply.choices[0].message.content}]
        sent = upstream.fake.last_chat().json()["messages"]
        assert sent[-1] == {"role": "user", "content": question}
        if n:  # fixed context from the second call: the few-shot head in its place, whatever the budget
            assert sent[1:5] == FEW_SHOT, [str(m["content"])[:40] for m in sent]
        # The few-shot reply is never quoted by memory (evidence, state): only the client's copy goes up.
        assert [m for m in sent if "show_greeting.py" in str(m["content"])] == ([FEW_SHOT[1]] if n else [FEW_SHOT[1]] * (FEW_SHOT[1] in sent))
    export = _export(small, "aider-named")
    live = [e for e in export["events"] if e["type"] in ("user_message", "assistant_message") and not e["detached"]]
    assert [e["content"] for e in live] == [m["content"] for m in history]
    assert len(export["transcript"]) == len(history)
    # The first call's copies of the head and the files message left the conversation, once.
    gone = [e["content"] for e in export["events"] if e["detached"] and e["type"] in ("user_message", "assistant_message")]
    assert sorted(gone) == sorted([m["content"] for m in FEW_SHOT + _files(FILE_BODY + "# edit 0\n")] + [m["content"] for m in history[:2]])


def test_a_leading_context_message_is_sent_from_the_first_request_even_over_budget(small: Proxy, upstream: Upstream) -> None:
    developer = {"role": "developer", "content": "You are a coding agent. " + "Be precise and safe. " * 150}
    env = {"role": "user", "content": "<environment_context>\n  <cwd>/work/repo</cwd>\n  <shell>bash</shell>\n</environment_context>"}
    # The developer message counts against half the budget (the rest goes on top: the budget is a
    # target); a long task then puts the prompt over it.
    task = "Task one. " + "Read the module and list what each function returns. " * 40
    client = small.client(default_headers={"X-Memory-Session": "codex-shaped"})
    upstream.fake.enqueue(Reply(text="Noted."), Reply(text="Sure."))
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[developer, env,
                                                                                             {"role": "user", "content": task}])
    assert first.headers["x-memory-mode"] == "over_budget"
    # (litellm sends the developer message as a system one to this model)
    assert upstream.fake.last_chat().json()["messages"][1:] == [env, {"role": "user", "content": task}]
    client.chat.completions.create(model="gpt-4o-mini", messages=[developer, env, {"role": "user", "content": task},
                                                                  {"role": "assistant", "content": "Noted."},
                                                                  {"role": "user", "content": "Task two."}])
    assert env in upstream.fake.last_chat().json()["messages"]
    stored = [e["content"] for e in _export(small, "codex-shaped")["events"] if e["type"] == "user_message"]
    assert stored == [task, "Task two."]


def test_re_serialised_tool_call_arguments_do_not_detach_the_stored_turn(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(default_headers={"X-Memory-Session": "vercel-shaped"})
    question = {"role": "user", "content": "What is the weather in Paris?"}
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris", "unit": "C"}, id="call_paris"),)),
                          Reply(text="It is 18C in Paris."), Reply(text="Tomorrow looks the same."))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string"}}}}}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=[question], tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.arguments == '{"city": "Paris", "unit": "C"}'  # as the provider sent it
    # The client re-serialises the arguments: compact, keys in its own order.
    echoed = {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {
        "name": "get_weather", "arguments": '{"unit":"C","city":"Paris"}'}}]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "18C, clear"}
    second = client.chat.completions.create(model="gpt-4o-mini", messages=[question, echoed, result], tools=tools)
    third = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", tools=tools, messages=[
        question, echoed, result, {"role": "assistant", "content": second.choices[0].message.content},
        {"role": "user", "content": "And tomorrow?"}])
    assert third.headers["x-memory-mode"] == "full_history"
    events = _export(proxy, "vercel-shaped")["events"]
    assert not [e for e in events if e["detached"]]
    assert [e["type"] for e in events if e["type"].endswith("_message")] == [
        "user_message", "assistant_message", "tool_message", "assistant_message", "user_message", "assistant_message"]


def test_a_named_request_that_starts_over_is_never_called_full_history(proxy: Proxy, upstream: Upstream) -> None:
    """A named session's request that shares nothing with its transcript is read as the session's
    next message (what a stateless client sends): memory adds the stored conversation, and says so."""
    client = proxy.client(default_headers={"X-Memory-Session": "dspy-shaped"})
    upstream.fake.enqueue(Reply(text="Answer: forty-two."), Reply(text="Answer: forty-two, again."))
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "Answer the question. Fields: question -> answer."},
        {"role": "user", "content": "Question: what is six times seven?"}])
    assert first.headers["x-memory-mode"] == "full_history"
    assert first.headers["x-memory-original-tokens"] == first.headers["x-memory-compiled-tokens"]
    retry = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "Answer the question. Fields: question -> reasoning, answer."},
        {"role": "user", "content": "Question: what is six times seven? Think step by step."}])
    assert retry.headers["x-memory-mode"] == "restored"
    assert int(retry.headers["x-memory-compiled-tokens"]) > int(retry.headers["x-memory-original-tokens"])
    forwarded = upstream.fake.last_chat().json()["messages"]
    assert {"role": "user", "content": "Question: what is six times seven?"} in forwarded


def test_sessions_stored_before_the_hash_change_continue_after_it(upstream: Upstream, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written by a proxy that hashed messages the older way (whitespace and JSON arguments
    as sent), then served by this one: named and unnamed sessions continue, nothing is detached."""
    canonical = transcript._canonical
    monkeypatch.setattr(transcript, "_canonical", lambda message, normalise=True: canonical(message, normalise=False))
    assert transcript.message_hash({"role": "user", "content": "a\nb"}) == legacy_message_hash({"role": "user", "content": "a\nb"})
    before = start_proxy(config_for(upstream, tmp_path))
    question = {"role": "user", "content": "What is the weather\nin Paris?"}
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris"}, id=f"call_{n}"),)) for n in range(2)])
    calls = {}
    try:
        for session in ("legacy-named", None):
            client = before.client(default_headers={"X-Memory-Session": session} if session else {})
            calls[session] = client.chat.completions.create(model="gpt-4o-mini", messages=[question]).choices[0].message
    finally:
        before.served.stop()
    monkeypatch.undo()
    after = start_proxy(config_for(upstream, tmp_path))
    try:
        for session, call in calls.items():
            client = after.client(default_headers={"X-Memory-Session": session} if session else {})
            history = [question, call.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "18C\n\nclear"}]
            upstream.fake.enqueue(Reply(text="It is 18C."), Reply(text="Same tomorrow."))
            first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=history)
            history += [{"role": "assistant", "content": "It is 18C."}, {"role": "user", "content": "And tomorrow?"}]
            second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=history)
            sid = first.headers["x-memory-session"]
            assert second.headers["x-memory-session"] == sid and (session is None or sid == session)
            events = _export(after, sid)["events"]
            assert not [e for e in events if e["detached"]]
            assert [e["type"] for e in events] == ["user_message", "assistant_message", "tool_message", "assistant_message",
                                                   "user_message", "assistant_message"]
    finally:
        after.served.stop()


def test_re_serialised_function_call_arguments_on_the_responses_api(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(default_headers={"X-Memory-Session": "vercel-responses"})
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris", "unit": "C"}, id="call_rp"),)),
                          Reply(text="It is 18C in Paris."), Reply(text="Tomorrow looks the same."))
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.responses.create(model="gpt-4o-mini", input=[question], store=False)
    call = next(i for i in first.output if i.type == "function_call")
    assert call.arguments == '{"city": "Paris", "unit": "C"}'
    echoed = {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": '{"unit":"C","city":"Paris"}'}
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, clear"}
    second = client.responses.create(model="gpt-4o-mini", input=[question, echoed, result], store=False)
    client.responses.create(model="gpt-4o-mini", store=False, input=[
        question, echoed, result, {"role": "assistant", "content": second.output_text}, {"role": "user", "content": "And tomorrow?"}])
    events = _export(proxy, "vercel-responses")["events"]
    assert not [e for e in events if e["detached"]]
    assert [e["type"] for e in events if e["type"].endswith("_message")] == [
        "user_message", "assistant_message", "tool_message", "assistant_message", "user_message", "assistant_message"]
