"""The real Claude Code CLI through the proxy to the strict fake Anthropic upstream: several
`claude -p` turns of one conversation (a tool call among them, run by Claude Code itself), memory
applied once the conversation outgrows the budget, every turn stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from testkit.claude_code import ClaudeCode
from testkit.fake_anthropic import anthropic_requests
from testkit.harness import Proxy, Upstream
from testkit.script import Reply, ToolCall

KEY = "sk-ant-claude-code-test-9d2c"
BUDGET = 6000


def _filler(i: int) -> str:
    return f"Background {i}: " + " ".join(f"note-{i}-{k}" for k in range(350))


def test_claude_code_turns_are_compiled_over_budget_and_stored(proxy_factory: Callable[..., Proxy], upstream: Upstream,
                                                              tmp_path: Path) -> None:
    proxy = proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n")
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    notes = tmp_path / "work" / "notes.txt"
    notes.write_text("The deploy window is Tuesday 14:00 UTC.\n")
    claude = ClaudeCode(proxy.url, KEY, tmp_path / "home", tmp_path / "work", headers=(("X-Memory-Session", "claude-code-1"),))

    first = claude.ask("Decision: the service is written in Go.\n" + _filler(1))
    assert "echo: Decision: the service is written in Go." in first
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("Read", {"file_path": str(notes)}, id="toolu_cc_read"),)),
                          Reply(text="The notes say the deploy window is Tuesday."))
    second = claude.ask("Read notes.txt and tell me the deploy window.\n" + _filler(2), resume=True)
    assert "deploy window is Tuesday" in second
    answered = anthropic_requests(upstream.fake)[-1].json()
    results = [b for m in answered["messages"] if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"]
    assert results and "Tuesday 14:00 UTC" in json.dumps(results)  # Claude Code ran the tool; the fake checked the pairing
    for i in range(3, 6):
        claude.ask(f"Turn {i}.\n" + _filler(i), resume=True)
    last = claude.ask("What language is the service written in?", resume=True)
    assert last.startswith("echo: ")  # the fake echoes the last user text: the question, or memory's evidence after it

    requests = anthropic_requests(upstream.fake)
    final = requests[-1].json()
    text = json.dumps(final["messages"])
    asked = [m for m in final["messages"] if "What language is the service written in?" in json.dumps(m)]
    assert asked and final["messages"].index(asked[-1]) >= len(final["messages"]) - 2  # the question ends the client's part
    assert "note-1-300" not in text                              # old turns are out of the prompt...
    assert "Decision: the service is written in Go." in text     # ...but the decision is kept by memory
    assert final["tools"] == requests[0].json()["tools"]        # Claude Code's own tools, nothing added
    assert final["system"] == requests[0].json()["system"]
    assert json.dumps(final).count('"cache_control"') <= 4
    assert requests[-1].headers["anthropic-beta"] == requests[0].headers["anthropic-beta"]
    with proxy.http(None) as http:
        export = http.get("/memory/sessions/claude-code-1/export", headers={"x-api-key": KEY})
    assert export.status_code == 200, export.text
    users = [e["content"] for e in export.json()["events"] if e["type"] == "user_message" and not e["detached"]]
    assert any("What language is the service written in?" in u for u in users) and any("Decision: the service" in u for u in users)
    assert any(e["type"] == "tool_message" for e in export.json()["events"])
    with proxy.http(None) as http:
        turns = http.get("/memory/sessions/claude-code-1/turns", headers={"x-api-key": KEY}).json()["data"]
    assert len(turns) == len(requests) == 7  # six prompts, one of them a tool loop of two calls
    assert turns[-1]["mode"] in ("rebased", "frame") and turns[-1]["forwarded_tokens"] < turns[-1]["sent_tokens"]
    assert turns[-1]["forwarded_tokens"] <= BUDGET


def test_claude_code_without_a_session_header_is_one_session_by_its_transcript(proxy: Proxy, upstream: Upstream, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    claude = ClaudeCode(proxy.url, KEY + "-2", tmp_path / "home", tmp_path / "work")
    for n, question in enumerate(("first question", "second question", "third question")):
        assert f"echo: {question}" in claude.ask(question, resume=n > 0)
    with proxy.http(None) as http:
        sessions = http.get("/memory/sessions", headers={"x-api-key": KEY + "-2"}).json()["data"]
    assert len(sessions) == 1 and sessions[0]["messages"] == 6


def test_claude_codes_tool_loop_is_within_budget_at_the_default_configuration(proxy: Proxy, upstream: Upstream, tmp_path: Path) -> None:
    # Claude Code's ~15-18k tokens of system prompt and tools, and the <system-reminder> blocks
    # ahead of its task, go on top of `agent_budget_tokens`: counted against the 4,000 of
    # `budget_tokens` every request of its loop was over_budget.
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    files = []
    for m in range(4):
        files.append(tmp_path / "work" / f"mod{m}.py")
        files[-1].write_text("".join(f"def ledger_{m}_{f}(amount):\n    return amount + {f}  # token lx{m}q{f}\n\n" for f in range(30)))
    claude = ClaudeCode(proxy.url, KEY + "-loop", tmp_path / "home", tmp_path / "work", headers=(("X-Memory-Session", "claude-code-loop"),))
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("Read", {"file_path": str(f)}, id=f"toolu_cc_{n}"),)) for n, f in enumerate(files)],
                          Reply(text="All four modules read."))
    assert "All four modules read." in claude.ask("Read the four modules in this folder, one at a time.")
    requests = anthropic_requests(upstream.fake)
    assert len(requests) == len(files) + 1
    final = json.dumps(requests[-1].json()["messages"])
    assert all(f"lx{m}q29" in final for m in range(4))  # every read went up as Claude Code sent it
    with proxy.http(None) as http:
        turns = http.get("/memory/sessions/claude-code-loop/turns", headers={"x-api-key": KEY + "-loop"}).json()["data"]
    assert len(turns) == len(requests) and not any(t["mode"] == "over_budget" for t in turns), [t["mode"] for t in turns]
