"""Which budget a request gets (`proxy.budget`): the header, else the agent budget for a request
that declares tools, else `budget_tokens`."""

from __future__ import annotations

from dataclasses import replace

from memory import Budget
from proxy.budget import budget_header, request_budget
from proxy.config import ProxyConfig
from testkit.harness import Proxy, Upstream

TOOLS = [{"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}]


def test_a_request_without_tools_gets_budget_tokens_over_the_whole_prompt() -> None:
    assert request_budget(None, ProxyConfig(), {"messages": []}) == Budget(4000, "prompt", "budget_tokens")
    assert request_budget(None, ProxyConfig(), {"tools": []}) == Budget(4000, "prompt", "budget_tokens")


def test_a_request_that_declares_tools_gets_the_agent_budget_over_what_memory_controls() -> None:
    agent = Budget(16000, "memory", "agent_budget_tokens")
    assert request_budget(None, ProxyConfig(), {"tools": TOOLS}) == agent
    assert request_budget(None, ProxyConfig(), {"functions": [{"name": "shell"}]}) == agent  # the legacy chat field
    assert request_budget(None, replace(ProxyConfig(), agent_budget_tokens=None), {"tools": TOOLS}) == Budget(4000, "prompt", "budget_tokens")


def test_the_header_wins_over_both_and_counts_the_whole_prompt() -> None:
    assert request_budget(8000, ProxyConfig(), {"tools": TOOLS}) == Budget(8000, "prompt", "X-Memory-Budget")
    assert request_budget(8000, ProxyConfig(), {}) == Budget(8000, "prompt", "X-Memory-Budget")


def test_the_response_header_names_the_budget_that_applied() -> None:
    assert budget_header(Budget(16000, "memory", "agent_budget_tokens")) == "16000; covers=memory; from=agent_budget_tokens"


def test_every_reply_names_the_budget_that_applied_on_each_api(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client()
    chat = [{"role": "user", "content": "What does the shell tool do?"}]
    tools = [{"type": "function", "function": {"name": "shell", "parameters": {"type": "object", "properties": {}}}}]
    plain = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=chat)
    agent = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=chat, tools=tools)
    asked = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=chat, tools=tools,
                                                             extra_headers={"X-Memory-Budget": "8000"})
    responses = client.responses.with_raw_response.create(model="gpt-4o-mini", input="What does the shell tool do?",
                                                          tools=[{"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}])
    assert plain.headers["x-memory-budget"] == "4000; covers=prompt; from=budget_tokens"
    assert agent.headers["x-memory-budget"] == "16000; covers=memory; from=agent_budget_tokens"
    assert asked.headers["x-memory-budget"] == "8000; covers=prompt; from=X-Memory-Budget"
    assert responses.headers["x-memory-budget"] == "16000; covers=memory; from=agent_budget_tokens"
    assert [r.json()["tools"] for r in upstream.fake.chat_requests()[-2:]] == [tools, tools]  # declared tools, nothing added
