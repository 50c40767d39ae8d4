"""Real coding agents through the proxy, against the strict fake upstream, asserted on what the
upstream received: the Codex CLI (`codex exec`, then `codex exec resume`) at the default
configuration; aider's `--message` runs without a session header; a client scripted the way
smolagents' ToolCallingAgent sends its steps. The set-up installs the CLIs (`scripts/dev.py`); a
missing one fails these tests, it never skips them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.agent_clients import Aider, Codex
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _sessions(proxy: Proxy) -> set[str]:
    with proxy.http() as http:
        return {s["id"] for s in http.get("/memory/sessions").json()["data"]}


def _events(proxy: Proxy, session: str) -> list[dict[str, Any]]:
    with proxy.http() as http:
        events: list[dict[str, Any]] = http.get(f"/memory/sessions/{session}/export").json()["events"]
        return events


def test_the_codex_cli_remembers_turn_one_at_the_default_configuration(proxy: Proxy, upstream: Upstream, tmp_path: Path) -> None:
    codex = Codex(tmp_path, proxy.url + "/v1", OPENAI_KEY)
    before = _sessions(proxy)
    upstream.fake.enqueue(Reply(text="Noted: the launch codename is heliotrope."), Reply(text="Canary deploys shift traffic slowly."),
                          Reply(text="Blue-green deploys swap two environments."), Reply(text="It was heliotrope."))
    assert "heliotrope" in codex.exec("Remember: the launch codename is heliotrope.")
    codex.exec("Explain canary deploys briefly.", resume=True)
    codex.exec("Explain blue-green deploys briefly.", resume=True)
    assert "It was heliotrope." in codex.exec("What was the launch codename?", resume=True)
    sent = [r.json() for r in upstream.fake.responses_requests()]
    assert len(sent) == 4
    for body in sent:  # Codex's environment context, from the very first request on
        assert any(i.get("role") == "user" and _text(i).startswith("<environment_context>") for i in body["input"]), body["input"]
    assert _text(sent[-1]["input"][-1]) == "What was the launch codename?"
    # Turn 1's fact reaches the upstream on turn 4 (as history, state or evidence), though Codex's
    # ~5k-token developer prompt alone exceeds the default budget.
    assert any("heliotrope" in _text(i) for i in sent[-1]["input"][:-1]), [_text(i)[:80] for i in sent[-1]["input"]]
    new = _sessions(proxy) - before
    assert len(new) == 1  # `codex exec resume` continues one session, matched by its transcript
    stored = [e["content"] for e in _events(proxy, new.pop()) if e["type"] == "user_message" and not e["detached"]]
    assert stored == ["Remember: the launch codename is heliotrope.", "Explain canary deploys briefly.",
                      "Explain blue-green deploys briefly.", "What was the launch codename?"]


@pytest.fixture(scope="module")
def small(proxy_factory: Callable[..., Proxy]) -> Proxy:
    # Below aider's own system prompt, few-shot example and files: every request is over budget.
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 1000\n")


def test_aider_message_runs_without_a_header_continue_one_session_and_send_the_files(small: Proxy, upstream: Upstream,
                                                                                      tmp_path: Path) -> None:
    aider = Aider(tmp_path, small.url + "/v1", OPENAI_KEY)
    (aider.work / "notes.py").write_text("".join(f"def helper_{i}(x):\n    return x * {i}  # marker-{i}\n\n" for i in range(40)))
    before = _sessions(small)
    questions = ["Remember: the deploy codename is heliotrope.", "Which helper returns x times 7?", "What was the deploy codename?"]
    for n, question in enumerate(questions):
        upstream.fake.enqueue(Reply(text=f"Answer {n}: noted."))
        assert f"Answer {n}: noted." in aider.message(question, "notes.py")
    sent = [r.json()["messages"] for r in upstream.fake.chat_requests()]
    assert len(sent) == 3
    for question, messages in zip(questions, sent, strict=True):
        texts = [_text(m) for m in messages]
        assert any("marker-39" in t and "notes.py" in t for t in texts)  # the file's contents, over budget
        assert question in texts
    new = _sessions(small) - before
    assert len(new) == 1, new  # three runs, one session
    events = [e for e in _events(small, new.pop()) if e["type"] in ("user_message", "assistant_message")]
    assert not any(e["detached"] for e in events)
    # The few-shot example and the files message are aider's fixed context, not turns.
    assert [" ".join(e["content"].split()) for e in events if e["type"] == "user_message"] == questions


SMOL_SYSTEM = ("You are an expert assistant who can solve any task using tool calls. You will be given a task to solve as best "
               "you can. To do so, you have been given access to some tools. The tool call you write is an action: after the "
               "tool is executed, you will get the result of the tool call as an \"observation\". " * 12
               + "\nTools:\n- web_search: Performs a search and returns the top results.\n- final_answer: Provides a final answer.")


def test_a_smolagents_shaped_tool_loop_keeps_the_task_at_every_step(proxy: Proxy, upstream: Upstream) -> None:
    """ToolCallingAgent's layout: a ~1,000-token system prompt, the task, then per step the model's
    tool call as an assistant message and the tool's answer as a user "Observation:" message."""
    client = proxy.client()
    task = "New task:\nFind the release codename of project Aurora and the date it shipped."
    messages: list[dict[str, Any]] = [{"role": "system", "content": SMOL_SYSTEM}, {"role": "user", "content": task}]
    steps = 10
    for step in range(steps):
        upstream.fake.enqueue(Reply(text=f"Calling tools:\n[{{'id': 'call_{step}', 'type': 'function', 'function': "
                                         f"{{'name': 'web_search', 'arguments': {{'query': 'aurora release step {step}'}}}}}}]"))
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stop=["Observation:", "Calling tools:"])
        received = upstream.fake.last_chat().json()["messages"]
        assert any(m.get("role") == "user" and _text(m) == task for m in received), f"step {step}: the task is missing upstream"
        observation = "\n".join(f"result {step}.{k}: aurora build log line {k}, nothing about the codename" for k in range(60))
        messages += [{"role": "assistant", "content": reply.choices[0].message.content},
                     {"role": "user", "content": f"Call id: call_{step}\nObservation:\n{observation}"}]
    assert len(json.dumps(messages)) > 4 * 4000  # the loop went well over the default budget
