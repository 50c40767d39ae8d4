"""What a compiled `/v1/messages` prompt costs under Anthropic's cache rule, driven with raw HTTP
(the breakpoints placed as Claude Code places them) against the fake Anthropic upstream, which
bills every prompt by the breakpoint rule: the question's evidence goes after the client's last
message (uncached), a tool step of the same turn sends the same evidence and reads the turn's
prefix, and the next turn reads the previous turn's messages instead of writing them again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from memory.prompt.evidence import EVIDENCE_HEADER
from testkit.fake_anthropic import anthropic_requests
from testkit.harness import Proxy, Upstream
from testkit.script import Reply, ToolCall

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-test-cache-caller"
SYSTEM = [{"type": "text", "text": "You are a careful coding agent. " + "Follow the house style. " * 60,
           "cache_control": {"type": "ephemeral"}}]
TOOLS = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]
FACTS = ["The staging database password rotates every Tuesday at noon.", "Invoices are rendered by the quill-pdf service.",
         "The mobile app pins TLS certificates for api.example.net."]


@pytest.fixture(scope="module")
def cproxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 3000\nagent_budget_tokens: null\n")


def _marked(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as Claude Code sends them: a breakpoint on the last block of the last one."""
    out: list[dict[str, Any]] = json.loads(json.dumps(messages))
    if isinstance(out[-1]["content"], str):
        out[-1]["content"] = [{"type": "text", "text": out[-1]["content"]}]
    out[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return out


def _filler(i: int) -> str:
    return f"Notes on module {i}: " + " ".join(f"routine-{i}-{k}" for k in range(120))


def test_evidence_goes_last_is_reused_by_the_turns_tool_step_and_the_turn_is_written_once(cproxy: Proxy, upstream: Upstream) -> None:
    history: list[dict[str, Any]] = []
    usages: list[dict[str, Any]] = []
    with httpx.Client(base_url=cproxy.url, timeout=60, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01",
                                                                 "X-Memory-Session": "cache-evidence"}) as http:
        def call(reply: Reply) -> dict[str, Any]:
            upstream.fake.enqueue(reply)
            response = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 256, "system": SYSTEM, "tools": TOOLS,
                                                       "messages": _marked(history)})
            assert response.status_code == 200, response.text
            usages.append(anthropic_requests(upstream.fake)[-1].reported or {})
            return dict(response.json())

        for i, fact in enumerate(FACTS + [_filler(n) for n in range(14)]):
            history.append({"role": "user", "content": f"Remember this. {fact}"})
            history.append({"role": "assistant", "content": call(Reply(text=f"Noted, item {i}."))["content"]})
        history.append({"role": "user", "content": "Which service renders the invoices, quill-pdf or another one?"})
        asked = call(Reply(tool_calls=(ToolCall("Read", {"file_path": "billing/render.py"}, id="toolu_cache_1"),)))
        first = anthropic_requests(upstream.fake)[-1].json()
        history.append({"role": "assistant", "content": asked["content"]})
        history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_cache_1", "content": "render = quill_pdf.render"}]})
        call(Reply(text="quill-pdf renders them."))
        second = anthropic_requests(upstream.fake)[-1].json()
        history.append({"role": "assistant", "content": [{"type": "text", "text": "quill-pdf renders them."}]})
        history.append({"role": "user", "content": "Thanks. " + _filler(99)})
        call(Reply(text="ok"))

    # The question's evidence is memory's last message, after the client's own (which keeps its breakpoint).
    for sent in (first, second):
        evidence = sent["messages"][-1]["content"][0]["text"]
        assert evidence.startswith(EVIDENCE_HEADER) and "quill-pdf" in evidence
        assert "cache_control" in json.dumps(sent["messages"][-2]) and "cache_control" not in json.dumps(sent["messages"][-1])
        assert json.dumps(sent).count('"cache_control"') <= 4
    assert first["messages"][-2]["content"][-1]["text"] == history[-5]["content"]  # the question
    # The tool step sends the same evidence and reads everything the first step cached.
    assert second["messages"][-1] == first["messages"][-1]
    one, two, three = usages[-3:]
    assert two["cache_read_input_tokens"] == one["cache_read_input_tokens"] + one["cache_creation_input_tokens"]
    assert two["input_tokens"] == one["input_tokens"]  # the evidence alone goes uncached, both times
    # The next turn reads the finished turn from the cache: nothing of it is written again.
    assert three["cache_read_input_tokens"] >= two["cache_read_input_tokens"] + two["cache_creation_input_tokens"]
