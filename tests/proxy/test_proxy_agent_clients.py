"""Real coding agents through the proxy, against the strict fake upstream, asserted on what the
upstream received: the Codex CLI (`codex exec`, then `codex exec resume`) at the default
configuration; aider's `--message` runs without a session header; smolagents' ToolCallingAgent
(a package of the `test` extras) in a tool loop over budget. The set-up installs the CLIs
(`scripts/dev.py`); a missing one fails these tests, it never skips them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from smolagents import OpenAIServerModel, ToolCallingAgent, tool

from memory.turn.stubs import STUB_MARK
from testkit.agent_clients import Aider, Codex
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall


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
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 1000\nagent_budget_tokens: null\n")


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


def test_aider_under_a_session_header_keeps_its_few_shot_example_out_of_the_conversation(small: Proxy, upstream: Upstream,
                                                                                           tmp_path: Path) -> None:
    """The real aider with `X-Memory-Session` (sent by aider itself, from its model settings): its
    few-shot exchange is stored by the first run only until the second shows it is the client's
    fixed head; from then on it goes up in its place, never as a turn nor as evidence."""
    aider = Aider(tmp_path, small.url + "/v1", OPENAI_KEY, headers={"X-Memory-Session": "aider-real"})
    (aider.work / "notes.py").write_text("".join(f"def helper_{i}(x):\n    return x * {i}  # marker-{i}\n\n" for i in range(40)))
    questions = ["Remember: the deploy codename is heliotrope.", "Which helper returns x times 7?", "What was the deploy codename?"]
    for n, question in enumerate(questions):
        upstream.fake.enqueue(Reply(text=f"Answer {n}: noted."))
        assert f"Answer {n}: noted." in aider.message(question, "notes.py")
    sent = [r.json()["messages"] for r in upstream.fake.chat_requests()][-3:]
    # aider's few-shot pair (its edit format's: "Change the greeting to be more casual" for
    # gpt-4o-mini's whole-file format, "Change get_factorial() ..." for the diff format).
    example = [m for m in sent[1] if m["role"] != "system"][:2]
    assert [m["role"] for m in example] == ["user", "assistant"] and _text(example[0]) not in questions
    marks = [" ".join(_text(m).split()[:6]) for m in example]  # each message's opening words
    for n, messages in enumerate(sent):
        assert questions[n] in [_text(m) for m in messages]
        # The files' contents over budget from the second call on (the first call's history is
        # stored as brought, a conversation for all memory knows then, and competes for the window).
        assert n == 0 or any("marker-39" in _text(m) for m in messages)
        # Only aider's own copy of the pair goes up (the first call may leave it out); memory never quotes it.
        quoting = [m for m in messages if any(mark in " ".join(_text(m).split()) for mark in marks)]
        assert quoting == example if n else quoting in ([], example), [_text(m)[:60] for m in quoting]
    for messages in sent[1:]:  # fixed context, in its place: right after aider's system message
        assert [m for m in messages if m["role"] != "system"][:2] == example
    events = [e for e in _events(small, "aider-real") if e["type"] in ("user_message", "assistant_message") and not e["detached"]]
    assert [" ".join(e["content"].split()) for e in events if e["type"] == "user_message"] == questions
    assert not any(mark in " ".join(e["content"].split()) for e in events for mark in marks)


def _log(run: int) -> str:
    return "\n".join(f"run {run} line {k}: aurora build step {k} finished in {k * 7 + run} ms" for k in range(40))


@pytest.fixture(scope="module")
def tight(proxy_factory: Callable[..., Proxy]) -> Proxy:
    # smolagents' own system prompt is ~800 tokens; 14 log reads are ~10,000.
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 8000\nagent_budget_tokens: null\n")


def test_the_real_smolagents_tool_loop_is_compacted_over_budget_and_keeps_the_task(tight: Proxy, upstream: Upstream) -> None:
    """smolagents' ToolCallingAgent through the proxy: its calls reach the upstream as assistant
    text and each tool's output as a user "Observation:" message (its default role conversions).
    Over budget those observations are compacted like tool outputs (stubs, pointers), the task
    goes up at every step, the newest observation whole, and the strict fake accepts every call."""
    @tool
    def read_log(run: int) -> str:
        """Read the build log of one run.

        Args:
            run: the run's number.
        """
        return _log(run % 5)  # runs 5 apart print the same log: read again, it goes up once

    steps = 14
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("read_log", {"run": n}, id=f"call_s{n}"),)) for n in range(steps)],
                          Reply(tool_calls=(ToolCall("final_answer", {"answer": "The codename is heliotrope."}, id="call_end"),)))
    model = OpenAIServerModel(model_id="gpt-4o-mini", api_base=tight.url + "/v1", api_key=OPENAI_KEY)
    agent = ToolCallingAgent(tools=[read_log], model=model, max_steps=steps + 2, verbosity_level=0)
    task = "Find the release codename of project Aurora in its build logs."
    assert agent.run(task) == "The codename is heliotrope."
    sent = [r.json()["messages"] for r in upstream.fake.chat_requests()]
    assert len(sent) == steps + 1  # no call rejected, none retried
    for messages in sent:
        assert any(m["role"] == "user" and task in _text(m) for m in messages), "the task is missing upstream"
    last = sent[-1]
    observations = [_text(m) for m in last if m["role"] == "user" and _text(m).startswith("Observation:")]
    stubs = [_text(m) for m in last if m["role"] == "user" and "[memory-runtime" in _text(m)]
    assert stubs, [(m['role'], _text(m)[:60]) for m in last]  # older observations compacted...
    assert any("identical to the output of the later call" in t for t in stubs)  # ...and a log read again goes up once
    assert observations[-1] == f"Observation:\n{_log((steps - 1) % 5)}"  # the newest whole
    # Every observation the agent received is still in the prompt whole, as a stub or as a pointer.
    assert len(observations) + len(stubs) == steps
    assert sum(map(len, observations + stubs)) < 0.6 * steps * len(_log(0))  # the agent sent all of them whole




def test_a_codex_tool_loop_keeps_its_calls_verbatim_at_the_default_configuration(proxy: Proxy, upstream: Upstream, tmp_path: Path) -> None:
    # Codex's ~5k tokens of instructions and its tools go on top of `agent_budget_tokens`: a loop
    # of ~9k tokens goes up whole, where counted against the 4,000 of `budget_tokens` it went up
    # as its newest call alone from the fifth step on.
    codex = Codex(tmp_path, proxy.url + "/v1", OPENAI_KEY)
    before = _sessions(proxy)
    for m in range(8):
        (codex.work / f"mod{m}.py").write_text("".join(f"def ledger_{m}_{f}(amount, rate={f + 1}):\n    return amount * rate + {m * 100 + f}"
                                                       f"  # ledger {m}/{f}, token lx{m}q{f}\n\n" for f in range(24)))
    steps = [f"cat mod{m}.py" for m in range(8)] + ["cat mod2.py", "cat mod5.py"]
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("exec_command", {"cmd": cmd}, id=f"call_{n:03d}"),)) for n, cmd in enumerate(steps)],
                          Reply(text="Read them all."))
    assert "Read them all." in codex.exec("Read every module in this folder, one command per step.")
    bodies = [r.json() for r in upstream.fake.responses_requests()]
    assert len(bodies) == len(steps) + 1
    for n, body in enumerate(bodies):
        outputs = [str(i["output"]) for i in body["input"] if i.get("type") == "function_call_output"]
        assert len(outputs) == n and all("lx" in o and STUB_MARK not in o for o in outputs), (n, [o[:80] for o in outputs])
    assert "lx0q23" in json.dumps(bodies[-1]["input"])  # the first read, ten steps back, as it was sent
    (session,) = _sessions(proxy) - before
    with proxy.http() as http:
        turns = http.get(f"/memory/sessions/{session}/turns").json()["data"]
    assert len(turns) == len(bodies) and not any(t["mode"] in ("over_budget", "compacted") for t in turns), [t["mode"] for t in turns]
