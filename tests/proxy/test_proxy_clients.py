"""Real clients through the proxy, against the strict fake upstream, each over budget so that the
test fails if memory is not applied (asserted on what the upstream received):

- the OpenAI Agents SDK's default agent (Responses API) with a function tool, over three turns;
- the official Node `openai` package (npm, installed by the set-up), chat completions and the
  Responses API, streaming and not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from memory import get_counter
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.node_clients import run_node
from testkit.script import Reply, ToolCall

CLIENTS = Path(__file__).parent / "clients"
BUDGET = 450


@pytest.fixture(scope="module")
def cproxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n")


def _filler(i: int) -> str:
    return " ".join(f"remark-{i}-{k} on the schedule" for k in range(45))


def _memory_messages(items: list[dict[str, Any]]) -> list[str]:
    """The texts memory put in a forwarded prompt: its state block and its retrieved evidence."""
    return [str(i["content"]) for i in items if i.get("role") == "system"
            and str(i.get("content")).startswith(("Session state", "Relevant context retrieved"))]


def test_the_agents_sdk_default_agent_with_a_function_tool_over_three_turns(cproxy: Proxy, upstream: Upstream) -> None:
    set_tracing_disabled(True)  # tracing would export to OpenAI's servers
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"{city}: 18C and clear"

    client = openai.AsyncOpenAI(base_url=cproxy.url + "/v1", api_key=OPENAI_KEY, max_retries=0,
                                default_headers={"X-Memory-Session": "agents-sdk"})
    agent = Agent(name="Assistant", instructions="You help plan the rollout.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
    assert isinstance(agent.model, OpenAIResponsesModel)  # the SDK's default: the Responses API
    upstream.fake.enqueue(Reply(text="Noted: Decision recorded."),
                          Reply(tool_calls=(ToolCall("get_weather", {"city": "Lisbon"}, id="call_lisbon"),)),
                          Reply(text="Lisbon is 18C and clear."),
                          Reply(text="We chose canary."))
    turns = [f"Decision: the rollout uses canary deploys.\n{_filler(0)}",
             f"What is the weather in Lisbon for the launch? {_filler(1)}",
             "Remind me: which deploys does the rollout use?"]
    history: list[Any] = []
    finals = []
    for text in turns:
        result = Runner.run_sync(agent, history + [{"role": "user", "content": text}])
        finals.append(result.final_output)
        history = result.to_input_list()
    assert finals == ["Noted: Decision recorded.", "Lisbon is 18C and clear.", "We chose canary."]
    assert calls == ["Lisbon"]
    sent = upstream.fake.responses_requests()
    assert len(sent) == 4  # turn 1, the tool loop's two legs, turn 3
    last = sent[-1].json()
    # Over budget: the history is compiled (the first turn's items are not resent as sent), and its
    # decision comes back from memory (state block or evidence).
    assert len(last["input"]) < len(history) - 1
    assert {"content": turns[0], "role": "user"} not in last["input"]
    assert any("rollout uses canary deploys" in m for m in _memory_messages(last["input"]))
    assert last["input"][-1] == {"role": "user", "content": turns[2]}
    tool_leg = sent[2].json()["input"]
    assert [i.get("type") for i in tool_leg[-2:]] == ["function_call", "function_call_output"]
    with cproxy.http() as http:
        export = http.get("/memory/sessions/agents-sdk/export").json()
    live = [e for e in export["events"] if not e["detached"] and e["type"] in ("user_message", "assistant_message", "tool_message")]
    assert [e["type"] for e in live] == ["user_message", "assistant_message", "user_message", "assistant_message", "tool_message",
                                         "assistant_message", "user_message", "assistant_message"]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_the_node_openai_package_over_budget(cproxy: Proxy, upstream: Upstream, api: str, mode: str) -> None:
    session = f"node-{api}-{mode}"
    turns = run_node(CLIENTS / "node_openai.cjs", cproxy.url + "/v1", api, mode, "6", session, env={"TEST_OPENAI_KEY": OPENAI_KEY})
    assert len(turns) == 6 and all(t["session"] == session for t in turns)
    assert all(t["text"].startswith("echo: ") for t in turns)
    assert all(t["usage"] is not None for t in turns)  # streamed usage reached the Node client too
    last = turns[-1]
    assert last["compiled"] <= BUDGET < last["original"]
    recorded = (upstream.fake.last_chat() if api == "chat" else upstream.fake.last_response_request()).json()
    items = recorded["messages"] if api == "chat" else recorded["input"]
    assert any("release branch is named aurora" in m for m in _memory_messages(items))  # turn 1's decision, from memory
    assert len(items) < 2 * len(turns) - 1  # the resent history was compiled
    if api == "chat":
        assert get_counter("gpt-4o-mini").messages_tokens(recorded["messages"]) <= BUDGET
