"""Agents that come back to one named session (`X-Memory-Session`) run after run, through the
proxy to the strict fake upstream, asserted on what the upstream received: smolagents, whose every
run ends on a tool call (`final_answer`) that is never answered, then a fresh agent (a new process
for all it knows) and a continued one (`run(..., reset=False)`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from smolagents import OpenAIServerModel, ToolCallingAgent, tool

from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall


def _log(run: int) -> str:
    lines = [f"run {run} line {k}: aurora build step {k} finished in {k * 7 + run} ms" for k in range(40)]
    return "\n".join(lines + (["release codename: heliotrope"] if run == 3 else []))


@tool
def read_log(run: int) -> str:
    """Read the build log of one run.

    Args:
        run: the run's number.
    """
    return _log(run)


@pytest.fixture(scope="module")
def small(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 4000\n")


def _agent(proxy: Proxy, session: str) -> ToolCallingAgent:
    model = OpenAIServerModel(model_id="gpt-4o-mini", api_base=proxy.url + "/v1", api_key=OPENAI_KEY,
                              client_kwargs={"default_headers": {"X-Memory-Session": session}, "max_retries": 0})
    return ToolCallingAgent(tools=[read_log], model=model, max_steps=12, verbosity_level=0)


def _unanswered(messages: list[dict[str, Any]]) -> list[str]:
    """Ids of assistant tool calls not answered by the tool messages right after them."""
    missing: list[str] = []
    for n, m in enumerate(messages):
        calls = {str(c["id"]) for c in m.get("tool_calls") or ()}
        k = n + 1
        while k < len(messages) and messages[k].get("role") == "tool":
            calls.discard(str(messages[k].get("tool_call_id")))
            k += 1
        missing += sorted(calls)
    return missing


def test_smolagents_runs_in_one_session_never_send_a_finished_runs_unanswered_final_answer(small: Proxy, upstream: Upstream) -> None:
    """Each smolagents run ends on a `final_answer` tool call that nobody answers. The next run of
    the session (a fresh agent: only memory knows run 1) must reach the upstream with run 1's
    answer but without that call as a call: OpenAI refuses a tool call with no tool message after
    it, and the strict fake does too."""
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("read_log", {"run": n}, id=f"call_a{n}"),)) for n in range(5)],
                          Reply(tool_calls=(ToolCall("final_answer", {"answer": "The codename is heliotrope."}, id="call_a_end"),)))
    assert _agent(small, "smol-runs").run("Find the release codename of project Aurora in its build logs.") == "The codename is heliotrope."
    first_run = len(upstream.fake.chat_requests())
    assert first_run == 6

    fresh = _agent(small, "smol-runs")
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("final_answer", {"answer": "It was heliotrope."}, id="call_b_end"),)))
    assert fresh.run("Which release codename did you find in the Aurora build logs earlier?") == "It was heliotrope."
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("read_log", {"run": 7}, id="call_c7"),)),
                          Reply(tool_calls=(ToolCall("final_answer", {"answer": "280 ms."}, id="call_c_end"),)))
    assert fresh.run("Now read run 7's log: how long did step 39 take?", reset=False) == "280 ms."

    sent = [r.json()["messages"] for r in upstream.fake.chat_requests()]
    assert len(sent) == first_run + 3  # every call accepted, none retried
    for messages in sent:
        assert _unanswered(messages) == []
    second = sent[first_run]
    earlier = json.dumps(second[:-1])
    assert "heliotrope" in earlier  # run 1's answer reaches run 2, which only memory remembers
    # ...said as what it was: a final_answer call of run 1 (its name and its argument).
    assert any(m["role"] == "assistant" and "final_answer" in str(m.get("content")) and "The codename is heliotrope." in str(m.get("content"))
               for m in second)
