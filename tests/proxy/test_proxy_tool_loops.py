"""Long agent tool loops over budget, through the real proxy with the official openai client, against
the strict fakes (chat completions and Responses, streamed and not): every request accepted, older
outputs stubbed, a re-read after an edit sent as a diff, an identical re-read sent once, the task and
the system message at every step, and the provider's cache hitting between compactions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from memory import get_counter
from memory.turn.excerpts import EXCERPTS_HEADER
from memory.turn.stubs import STUB_MARK
from testkit.checks import orphan_problems
from testkit.harness import Proxy, Upstream
from testkit.openai_rules import check_chat
from testkit.script import Reply, ToolCall

MODEL = "gpt-4o-mini"
SYSTEM = "You are a coding agent. Use the bash tool to inspect and change the repository, one command per step. " * 4
TASK = "Fix the off-by-one error in src/pager.py so that the last page is never empty; run the tests after the fix."
BASH = {"type": "function", "function": {"name": "bash", "description": "Run a shell command",
                                         "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}
BASH_RESPONSES = {"type": "function", "name": "bash", "description": "Run a shell command",
                  "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}
STEPS = 64
BUDGET = 13000


def _file(version: int) -> str:
    lines = [f"def page_{k}(items, size):  # helper {k} of the pager module" for k in range(40)]
    lines[20] = f"    return items[start:start + size]  # revision {version} keeps the page bound at {version}"
    return "\n".join(lines)


def _step(k: int) -> tuple[str, str]:
    """The command of step k and its output: file reads (the same file again, and again after an
    edit), edits, greps and test runs."""
    if k % 8 in (0, 2):
        return "cat src/pager.py", _file((k + 6) // 8)  # edited at every k % 8 == 1
    if k % 8 == 1:
        return f"sed -i 's/bound at {(k + 6) // 8}/bound at {(k + 14) // 8}/' src/pager.py", ""
    if k % 8 == 4:
        return f"python -m pytest tests/test_pager.py -q -k case{k}", "\n".join(
            f"tests/test_pager.py::test_case{k}_{n} PASSED  [{n}%]" for n in range(8)) + f"\n8 passed in 0.{k}s"
    return f"grep -n 'page_{k}' -r src", "\n".join(f"src/module_{k}_{n}.py:{n}: page_{k}(rows, {n})  # call site {n}" for n in range(5))


def _tool_output(k: int) -> str:
    command, output = _step(k)
    return f"<returncode>0</returncode>\n<output>\n{output}\n</output>"


def _texts(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _without_excerpts(prompt: list[Any]) -> list[Any]:
    """The prompt less its last message when that is memory's excerpts (it follows the stable part)."""
    last = prompt[-1] if prompt else {}
    return prompt[:-1] if isinstance(last.get("content"), str) and last["content"].startswith(EXCERPTS_HEADER) else prompt


def _appended(before: list[Any], after: list[Any]) -> bool:
    """`after` continues `before` unchanged (the prompt only grew at its end, memory's excerpts aside)."""
    before, after = _without_excerpts(before), _without_excerpts(after)
    return len(after) > len(before) and after[: len(before)] == before


def _check_loop(forwarded: list[list[Any]], cached: list[int | None], modes: list[str]) -> None:
    joined = [_texts(f) for f in forwarded]
    assert all(TASK in j for j in joined), "the task went missing"
    assert any(STUB_MARK in j and "compacted output of bash" in j for j in joined), "no stub went up"
    assert any("with this diff applied" in j for j in joined), "the re-read after the edit never went up as a diff"
    assert any("identical to the output of the later call" in j for j in joined), "an identical re-read went up twice"
    assert "compacted" in modes
    assert any(EXCERPTS_HEADER in j for j in joined), "no excerpts of compacted outputs came back"
    appends = [n for n in range(1, len(forwarded)) if _appended(forwarded[n - 1], forwarded[n])]
    # Between compactions the prompt only grows, so its prefix is in the provider's cache.
    assert len(appends) >= len(forwarded) // 2, f"only {len(appends)} of {len(forwarded)} prompts kept the previous one"
    # (OpenAI caches from 1,024 tokens on.)
    counter = get_counter(MODEL)
    cacheable = [n for n in appends if counter.count(json.dumps(forwarded[n - 1])) >= 1500]
    assert len(cacheable) >= len(appends) - 6
    assert all((cached[n] or 0) >= 1024 for n in cacheable), [cached[n] for n in cacheable]


@pytest.fixture(scope="module")
def loop_proxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n")


@pytest.mark.parametrize("stream", [False, True])
def test_a_long_chat_tool_loop_is_compacted_and_accepted(loop_proxy: Proxy, upstream: Upstream, stream: bool) -> None:
    client = loop_proxy.client(default_headers={"X-Memory-Session": f"loop-chat-{stream}"})
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    forwarded: list[list[Any]] = []
    cached: list[int | None] = []
    modes: list[str] = []
    for k in range(STEPS):
        command, _ = _step(k)
        upstream.fake.enqueue(Reply(text=f"Step {k}: next I run {command}.", tool_calls=(ToolCall("bash", {"command": command}, id=f"call_{k}"),)))
        if stream:
            with client.chat.completions.with_streaming_response.create(model=MODEL, messages=messages, tools=[BASH], stream=True,
                                                                        stream_options={"include_usage": True}) as raw:
                modes.append(raw.headers["x-memory-mode"])
                chunks = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: {")]
            assert not any("error" in c for c in chunks), chunks
            usage = next(c["usage"] for c in chunks if c.get("usage"))
            cached.append(usage["prompt_tokens_details"]["cached_tokens"])
            call = next(tc for c in chunks for ch in c.get("choices", []) for tc in ch["delta"].get("tool_calls") or [])
            reply = {"role": "assistant", "content": f"Step {k}: next I run {command}.",
                     "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}
        else:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, tools=[BASH])
            modes.append(raw.headers["x-memory-mode"])
            completion = raw.parse()
            cached.append(completion.usage.prompt_tokens_details.cached_tokens if completion.usage and completion.usage.prompt_tokens_details else None)
            reply = completion.choices[0].message.model_dump(exclude_none=True)
        sent = upstream.fake.last_chat().json()
        assert check_chat(sent) is None and orphan_problems(sent["messages"]) == []
        assert sent["messages"][0] == {"role": "system", "content": SYSTEM}
        forwarded.append(sent["messages"])
        messages += [reply, {"role": "tool", "tool_call_id": f"call_{k}", "content": _tool_output(k)}]
    statuses = [r for r in upstream.fake.chat_requests()]
    assert len(statuses) == STEPS  # one call per step, none rejected (a rejection would have raised)
    _check_loop(forwarded, cached, modes)
    # The newest step always goes up verbatim, answer right after its call.
    assert _without_excerpts(forwarded[-1])[-2:] == messages[-4:-2]
    with loop_proxy.http() as http:
        manifest = http.get(f"/memory/sessions/loop-chat-{stream}/manifest").json()
        prompt = http.get(f"/memory/sessions/loop-chat-{stream}/prompt").json()
    compaction = manifest["compaction"]
    assert compaction["saved"] > 0 and compaction["changes"] and {"stub", "dropped"} & set(compaction["counts"])
    assert all(c["saved"] == c["tokens_before"] - c["tokens_after"] > 0 for c in compaction["changes"] if c["kind"] != "dropped")
    # The inspector's prompt view: each live-tail item says which message it stands for and how it went up,
    # with the stored text of that message.
    tail = [i for i in prompt["included"] if "tail_index" in i]
    assert prompt["compaction"]["counts"] == compaction["counts"]
    assert {i["compaction"] for i in tail if i.get("compaction")} >= {"verbatim"} and any(i["compaction"] != "verbatim" for i in tail if i.get("compaction"))
    newest = next(i for i in reversed(tail) if i.get("compaction") == "verbatim")
    assert newest["text"] == messages[1 + newest["tail_index"]]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_long_responses_tool_loop_is_compacted_and_accepted(loop_proxy: Proxy, upstream: Upstream, stream: bool) -> None:
    client = loop_proxy.client(default_headers={"X-Memory-Session": f"loop-resp-{stream}"})
    items: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    forwarded: list[list[Any]] = []
    cached: list[int | None] = []
    modes: list[str] = []
    for k in range(STEPS):
        command, _ = _step(k)
        upstream.fake.enqueue(Reply(tool_calls=(ToolCall("bash", {"command": command}, id=f"call_{k}"),)))
        if stream:
            with client.responses.with_streaming_response.create(model=MODEL, input=items, instructions=SYSTEM, tools=[BASH_RESPONSES],
                                                                 stream=True) as raw:
                modes.append(raw.headers["x-memory-mode"])
                events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: {")]
            done = next(e["response"] for e in events if e["type"] == "response.completed")
        else:
            raw = client.responses.with_raw_response.create(model=MODEL, input=items, instructions=SYSTEM, tools=[BASH_RESPONSES])
            modes.append(raw.headers["x-memory-mode"])
            done = raw.parse().model_dump(exclude_none=True)
        cached.append(done["usage"]["input_tokens_details"]["cached_tokens"])
        sent = upstream.fake.last_response_request().json()
        assert sent["instructions"] == SYSTEM
        forwarded.append(sent["input"])
        items += [o for o in done["output"]]
        items.append({"type": "function_call_output", "call_id": f"call_{k}", "output": _tool_output(k)})
    assert len(upstream.fake.responses_requests()) == STEPS  # every request accepted by the strict fake
    _check_loop(forwarded, cached, modes)
    assert _without_excerpts(forwarded[-1])[-2:] == items[-4:-2]  # the newest step verbatim, its output right after its call
    outputs = [i for i in forwarded[-1] if i.get("type") == "function_call_output"]
    calls = [i for i in forwarded[-1] if i.get("type") == "function_call"]
    assert [o["call_id"] for o in outputs] == [c["call_id"] for c in calls]  # every call keeps its output
