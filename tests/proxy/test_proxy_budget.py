"""Which budget a request gets (`proxy.budget`): the header, else the agent budget for a request
that declares tools, else `budget_tokens`."""

from __future__ import annotations

from dataclasses import replace

from memory import Budget
from proxy.budget import budget_header, request_budget
from proxy.config import ProxyConfig

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
