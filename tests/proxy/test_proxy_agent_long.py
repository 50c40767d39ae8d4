"""Long coding-agent sessions through the proxy, as a new user runs them: the real Codex CLI
(`codex exec`, Responses API) and the real Claude Code (`claude -p`, `/v1/messages`), each
working a small project for 42 tool calls — listings, file reads, re-reads of unchanged files, an
edit and the re-read after it, test runs — played step by step by the scripted fake model, the
commands run by the client itself, at a budget where the loop is compacted. Asserted on what the
upstream received, request by request: the client's instructions and tools as sent, the task,
every tool call followed by its answer (the strict fake refuses anything else), stubs that say how
to get the content back and name only declared tools, pointers and diffs that refer only to a copy
still in the prompt, and a prefix that stays byte-identical between compactions (the fake reports
the provider's cached tokens)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.prompt.evidence import EVIDENCE_HEADER
from memory.recall.tokens import get_counter
from memory.turn.excerpts import EXCERPTS_HEADER
from memory.turn.stubs import STUB_MARK
from testkit.agent_clients import Codex
from testkit.claude_code import ClaudeCode
from testkit.fake_anthropic import anthropic_requests
from testkit.harness import OPENAI_KEY, Proxy, Upstream
from testkit.script import Reply, ToolCall

TASK = "Fix the failing ledger test in this project; read the modules first."
BUDGET = 16000
MODULES = 8
COUNTER = get_counter("gpt-4o-mini")
FIX = ("    total = amount * rate + 305", "    total = amount * rate + 305  # fixed: lx3q5")


def _project(work: Path) -> None:
    (work / "pkg").mkdir(parents=True)
    (work / "tests").mkdir()
    (work / "pkg" / "__init__.py").write_text("")
    (work / "tests" / "__init__.py").write_text("")
    for m in range(MODULES):
        lines = [f'"""Module {m}: ledger helpers, part {m}."""', ""]
        for f in range(14):
            lines += [f"def ledger_{m}_{f}(amount, rate={f + 1}):", f'    """Scale amount by rate for ledger {m}/{f} (token lx{m}q{f})."""',
                      f"    total = amount * rate + {m * 100 + f}", "    return round(total, 2)", ""]
        (work / "pkg" / f"mod{m}.py").write_text("\n".join(lines) + "\n")
    (work / "tests" / "test_pkg.py").write_text("import unittest\nfrom pkg import mod3\n\n\nclass T(unittest.TestCase):\n"
                                                "    def test_ledger(self):\n        self.assertEqual(mod3.ledger_3_5(2), 312)\n")


def _plan() -> list[tuple[str, str]]:
    """The agent's 42 steps: (kind, file or pattern)."""
    reads = [("read", f"pkg/mod{m}.py") for m in range(MODULES)]
    return ([("ls", ""), *reads, ("grep", "def ledger_3_"), ("test", ""), ("read", "pkg/mod3.py"), ("read", "pkg/mod5.py"),
             ("read", "pkg/mod1.py"), ("edit", "pkg/mod3.py"), ("read", "pkg/mod3.py"), ("test", ""), ("read", "tests/test_pkg.py"),
             *reads, ("grep", "return round"), ("test", ""), ("read", "pkg/mod3.py"), *reads[:6], ("test", ""), ("read", "pkg/mod5.py"),
             ("grep", "fixed"), ("read", "pkg/mod3.py"), ("ls", ""), ("read", "tests/test_pkg.py"), ("test", "")])


def _command(kind: str, arg: str) -> str:
    return {"ls": "ls -R pkg tests", "read": f"cat {arg}", "grep": f"grep -n '{arg}' pkg/*.py",
            "test": "python3 -m unittest discover -s tests -t . 2>&1 | tail -25",
            "edit": f"sed -i 's/rate + 305$/rate + 305  # fixed: lx3q5/' {arg}"}[kind]


def _check_stub(text: str, verbatim: dict[str, str], declared: set[str]) -> None:
    """A compacted output names a declared tool and says how to get the content back; a pointer or
    a diff refers to a call whose output is verbatim in the same prompt."""
    label = re.match(re.escape(STUB_MARK) + r": (?:compacted )?output of (\S+) ", text)
    assert label and label.group(1) in declared, text[:200]
    if "compacted output of" in text:
        assert "re-run the tool to see it again" in text.splitlines()[0]
    for target in re.findall(r"(?:the later call|the earlier call) (\S+) ", text.splitlines()[0]):
        assert target in verbatim and not verbatim[target].startswith(STUB_MARK), (target, text[:200])


def _breaks(prompts: list[list[str]], memory_last: Callable[[str], bool]) -> list[int]:
    """The requests whose prompt does not extend the previous one (less a trailing message of
    memory's, its excerpts or evidence, placed after the stable prefix): the compactions."""
    found = []
    for n in range(1, len(prompts)):
        before = prompts[n - 1][:-1] if prompts[n - 1] and memory_last(prompts[n - 1][-1]) else prompts[n - 1]
        if prompts[n][: len(before)] != before:
            found.append(n)
    return found


def _turns(proxy: Proxy, session: str, key: str) -> list[dict[str, Any]]:
    with proxy.http(key) as http:
        data: list[dict[str, Any]] = http.get(f"/memory/sessions/{session}/turns").json()["data"]
    return data


def _sessions(proxy: Proxy, key: str) -> list[str]:
    with proxy.http(key) as http:
        return [s["id"] for s in http.get("/memory/sessions").json()["data"]]


def test_a_long_codex_session_is_compacted_in_batches_and_keeps_every_call_answered(proxy_factory: Callable[..., Proxy],
                                                                                   upstream: Upstream, tmp_path: Path) -> None:
    proxy = proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\n")
    codex = Codex(tmp_path, proxy.url + "/v1", OPENAI_KEY)
    _project(codex.work)
    plan = _plan()
    assert len(plan) == 42
    upstream.fake.enqueue(*[Reply(tool_calls=(ToolCall("exec_command", {"cmd": _command(k, a)}, id=f"call_{n:03d}"),))
                            for n, (k, a) in enumerate(plan)], Reply(text="Done: ledger 3/5 fixed."))
    assert "Done: ledger 3/5 fixed." in codex.exec(TASK, sandbox="workspace-write", timeout_s=600)
    assert FIX[1] in (codex.work / "pkg" / "mod3.py").read_text()  # Codex ran the scripted edit itself
    sent = upstream.fake.responses_requests()
    assert len(sent) == len(plan) + 1  # every request accepted by the strict fake, none retried
    bodies = [r.json() for r in sent]
    declared = {t["name"] for t in bodies[0]["tools"]}
    stubs = 0
    for body in bodies:
        items = body["input"]
        # Codex's developer instructions (it sends them as input items) and tools, as it sent them.
        assert [i for i in items if i.get("role") == "developer"] == [i for i in bodies[0]["input"] if i.get("role") == "developer"]
        assert body.get("instructions") == bodies[0].get("instructions") and body["tools"] == bodies[0]["tools"]
        texts = [_text(i) for i in items]
        assert any(i.get("role") == "user" and t == TASK for i, t in zip(items, texts, strict=True))
        assert any(i.get("role") == "user" and t.startswith("<environment_context>") for i, t in zip(items, texts, strict=True))
        calls = [n for n, i in enumerate(items) if i.get("type") == "function_call"]
        for n in calls:  # each call answered right after it (one call per step here)
            assert items[n + 1].get("type") == "function_call_output" and items[n + 1]["call_id"] == items[n]["call_id"]
        outputs = {i["call_id"]: str(i["output"]) for i in items if i.get("type") == "function_call_output"}
        for text in outputs.values():
            if text.startswith(STUB_MARK):
                stubs += 1
                _check_stub(text, outputs, declared)
        assert not any(STUB_MARK in i.get("arguments", "") for i in items if i.get("type") == "function_call" and i is items[calls[-1]]) \
            if calls else True  # the newest step verbatim
    assert stubs  # the loop outgrew the budget and was compacted
    breaks = _breaks([[json.dumps(i, sort_keys=True) for i in b["input"]] for b in bodies],
                     lambda item: json.loads(item).get("role") == "system" and _text(json.loads(item)).startswith(STUB_MARK))
    assert breaks and len(breaks) <= len(bodies) // 3, breaks  # compacted in batches: most steps append untouched
    usage = [r.reported for r in sent]
    for n in range(1, len(bodies)):
        if n not in breaks:  # an untouched step: the previous prompt is cached, but for memory's excerpts after it
            before, now, last = usage[n - 1], usage[n], bodies[n - 1]["input"][-1]
            excerpts = COUNTER.count(_text(last)) + 16 if last.get("role") == "system" and _text(last).startswith(STUB_MARK) else 0
            slack = 2 * excerpts + 160  # the fake renders items with their fields; its cache counts whole 128-token blocks
            assert before and now and now["input_tokens_details"]["cached_tokens"] >= before["input_tokens"] - slack, (n, before, now, slack)
    sessions = _sessions(proxy, OPENAI_KEY)
    assert len(sessions) == 1
    turns = _turns(proxy, sessions[0], OPENAI_KEY)
    assert len(turns) == len(plan) + 1 and turns[0]["mode"] == "full_history"
    assert turns[-1]["mode"] == "compacted" and turns[-1]["forwarded_tokens"] < turns[-1]["sent_tokens"]
    # The next prompt (`codex exec resume`) continues the session after the compacted loop.
    question = "Which ledger did you fix, and how is it marked?"
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("exec_command", {"cmd": "grep -n fixed pkg/mod3.py"}, id="call_next"),)),
                          Reply(text="Ledger 3/5, marked lx3q5."))
    assert "Ledger 3/5, marked lx3q5." in codex.exec(question, resume=True, sandbox="workspace-write")
    resumed = [r.json()["input"] for r in upstream.fake.responses_requests()[len(sent):]]
    assert len(resumed) == 2
    for items in resumed:
        assert any(i.get("role") == "user" and _text(i) == question for i in items)
        assert any(i.get("role") == "assistant" and "Done: ledger 3/5 fixed." in _text(i) for i in items)  # the last turn's reply
    assert [i["call_id"] for i in resumed[1] if i.get("type") == "function_call_output"][-1] == "call_next"
    assert _sessions(proxy, OPENAI_KEY) == sessions and len(_turns(proxy, sessions[0], OPENAI_KEY)) == len(plan) + 3


def _text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


CLAUDE_KEY = "sk-ant-long-session-4c1e"


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    return content if isinstance(content, str) else "\n".join(str(b.get("text", "")) for b in content or [])


def test_a_long_claude_code_session_after_an_earlier_prompt_keeps_its_tool_uses_paired(proxy_factory: Callable[..., Proxy],
                                                                                     upstream: Upstream, tmp_path: Path) -> None:
    """Claude Code's second prompt of a session (`--continue`, so memory holds an earlier turn and
    brings evidence) runs a 42-call loop that is compacted: tool_use/tool_result pairs stay in
    order, breakpoints stay within four, Claude Code's system and tools go up as sent."""
    proxy = proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\n")
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    _project(work)
    claude = ClaudeCode(proxy.url, CLAUDE_KEY, home, work, headers=(("X-Memory-Session", "claude-long"),))
    upstream.fake.enqueue(Reply(text="Noted: ledger rates are per module; lx3q5 is the one that fails."))
    assert "Noted" in claude.ask("Decision: ledger 3/5 (token lx3q5) must return 312 for amount 2.")
    plan = _plan()

    def call(n: int, kind: str, arg: str) -> ToolCall:
        if kind == "read":
            return ToolCall("Read", {"file_path": str(work / arg)}, id=f"toolu_{n:03d}")
        if kind == "edit":
            return ToolCall("Edit", {"file_path": str(work / arg), "old_string": FIX[0], "new_string": FIX[1]}, id=f"toolu_{n:03d}")
        return ToolCall("Bash", {"command": _command(kind, arg), "description": f"step {n}"}, id=f"toolu_{n:03d}")

    upstream.fake.enqueue(*[Reply(text=f"Step {n}.", tool_calls=(call(n, k, a),)) for n, (k, a) in enumerate(plan)],
                          Reply(text="Done: ledger 3/5 fixed."))
    assert "Done: ledger 3/5 fixed." in claude.ask(TASK, resume=True, allowed=("Bash", "Read", "Edit"), timeout_s=600)
    assert FIX[1] in (work / "pkg" / "mod3.py").read_text()  # Claude Code ran the scripted edit itself
    sent = anthropic_requests(upstream.fake)
    assert len(sent) == len(plan) + 2  # every request accepted by the strict fake, none retried
    bodies = [r.json() for r in sent]
    declared = {t["name"] for t in bodies[0]["tools"]}
    stubs = 0
    noted: set[int] = set()
    evidence: set[int] = set()
    for request, body in zip(sent, bodies, strict=True):
        assert body["system"] == bodies[0]["system"] and body["tools"] == bodies[0]["tools"]
        assert request.headers.get("anthropic-beta") == sent[0].headers.get("anthropic-beta")
        assert json.dumps(body).count('"cache_control"') <= 4
        if body is bodies[0]:
            continue
        messages = body["messages"]
        results = {b["tool_use_id"]: _result_text(b) for m in messages if isinstance(m["content"], list) for b in m["content"]
                   if b.get("type") == "tool_result"}
        # Memory's own text where the layout puts it: the note on compacted steps before the first
        # step it stands for; the question's evidence and the excerpts after the client's last message.
        texts = [(n, str(b.get("text", ""))) for n, m in enumerate(messages) if isinstance(m["content"], list) for b in m["content"]
                 if b.get("type") == "text"]
        task = max(n for n, m in enumerate(messages) if m["role"] == "user" and TASK in json.dumps(m))
        first_step = next((n for n, m in enumerate(messages) if n > task and m["role"] == "assistant"), len(messages))
        for n, text in texts:
            if text.startswith(STUB_MARK) and "of this task" in text.splitlines()[0]:  # the compaction's note
                noted.add(len(messages))
                assert n < first_step, (n, first_step, text[:80])
            if text.startswith((EVIDENCE_HEADER, EXCERPTS_HEADER)):
                evidence.add(len(messages))
                assert n == len(messages) - 1, (n, len(messages), text[:80])
        for text in results.values():
            if text.startswith(STUB_MARK):
                stubs += 1
                _check_stub(text, results, declared)
    assert stubs and noted and evidence
    turns = _turns(proxy, "claude-long", CLAUDE_KEY)
    assert len(turns) == len(plan) + 2 and turns[-1]["forwarded_tokens"] < turns[-1]["sent_tokens"]
