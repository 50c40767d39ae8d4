"""Which budget a request gets, decided once for every route (chat, Responses, Messages).

- `X-Memory-Budget: <tokens>` on the request wins, counting the whole prompt (what the benchmarks
  and a client that knows its window ask for);
- a request that declares tools (an agent, a chat app with function calling) gets
  `agent_budget_tokens`, counting only what memory controls (the conversation and the live tool
  loop): the app's fixed part (system and developer messages, re-sent context, tool definitions)
  and the turn's task message go on top, so 4-20k tokens of agent instructions (Codex, Claude Code)
  take nothing from the loop;
- any other request gets `budget_tokens`, counting the whole prompt (`memory.turn.room`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memory import Budget
from memory.turn.room import MEMORY, PROMPT
from proxy.config import ProxyConfig

__all__ = ["request_budget", "budget_header"]

HEADER = "X-Memory-Budget"


def request_budget(header: int | None, config: ProxyConfig, body: Mapping[str, Any]) -> Budget:
    """The budget of one request: its `X-Memory-Budget` header (`header`, None when absent), else
    `agent_budget_tokens` when the body declares tools (`tools`, or the legacy `functions`) and that
    key is set, else `budget_tokens`."""
    if header:
        return Budget(header, PROMPT, HEADER)
    if config.agent_budget_tokens is not None and (body.get("tools") or body.get("functions")):
        return Budget(config.agent_budget_tokens, MEMORY, "agent_budget_tokens")
    return Budget(config.budget_tokens, PROMPT, "budget_tokens")


def budget_header(budget: Budget) -> str:
    """The response header's value: the tokens, what they count and where they came from, e.g.
    `16000; covers=memory; from=agent_budget_tokens`."""
    return f"{budget.tokens}; covers={budget.covers}; from={budget.source}"
