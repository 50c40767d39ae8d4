"""A text-protocol tool loop (observations sent as user messages) compacted like a tool loop (pure)."""

from __future__ import annotations

from typing import Any

from memory.recall.tokens import get_counter
from memory.turn.compact import CompactPolicy
from memory.turn.observations import text_loop
from memory.turn.stubs import STUB_MARK
from memory.turn.turns import compacted_tail, query_text

COUNTER = get_counter("gpt-4o-mini")
TASK = {"role": "user", "content": [{"type": "text", "text": "New task:\nFind the codename of project Aurora."}]}


def _step(n: int, query: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": f"Thought: look again.\nCalling tools:\n[{{'id': 'call_{n}', "
                                                                      f"'type': 'function', 'function': {{'name': 'web_search', "
                                                                      f"'arguments': {{'query': '{query}'}}}}}}]"}]}


def _observation(body: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": f"Observation:\n{body}"}]}


def _log(n: int) -> str:
    return "\n".join(f"result {n}.{k}: aurora build log line {k} of run {n}" for k in range(60))


def _loop(steps: int) -> list[dict[str, Any]]:
    tail = [TASK]
    for n in range(steps):
        tail += [_step(n, f"aurora run {n}"), _observation(_log(n))]
    return tail


def _sent(tail: list[dict[str, Any]], room: int) -> list[dict[str, Any]]:
    messages, _ = compacted_tail(tail, room, 0, COUNTER.message_tokens, CompactPolicy())
    return messages


def test_a_text_loop_is_read_in_tool_form_and_restored_byte_for_byte() -> None:
    tail = _loop(3)
    loop = text_loop(tail)
    assert loop is not None
    roles = [m["role"] for m in loop.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    assert [c["id"] for c in loop.messages[1]["tool_calls"]] == ["call_0"]
    assert loop.messages[2]["tool_call_id"] == "call_0" and loop.messages[2]["content"].startswith("Observation:\n")
    assert "'id'" not in loop.messages[1]["tool_calls"][0]["function"]["arguments"]  # the action, without its id
    assert all(a is b for a, b in zip(loop.restore(loop.messages), tail, strict=True))
    # A chat without observations is no text loop; nor is a person's question about one.
    assert text_loop([TASK, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "What is an Observation:?"}]) is None


def test_older_observations_go_up_as_stubs_in_the_clients_form_and_the_newest_whole() -> None:
    tail = _loop(20)
    total = sum(COUNTER.message_tokens(m) for m in tail)
    sent = _sent(tail, total // 3)
    assert sent[0] is TASK  # the task, whole
    assert sum(COUNTER.message_tokens(m) for m in sent) <= total // 3
    assert all(m.get("role") in ("user", "assistant", "system") and "tool_calls" not in m for m in sent)
    stubs = [m for m in sent if m["role"] == "user" and STUB_MARK in m["content"][0]["text"]]
    assert stubs and all(isinstance(m["content"], list) and m["content"][0]["type"] == "text" for m in stubs)
    assert "compacted output of Calling tools:" in stubs[0]["content"][0]["text"]
    assert sent[-1] is tail[-1] and sent[-2] is tail[-2]  # the newest step verbatim, the same object
    # Every step still answered by its observation right after it: user/assistant alternate.
    body = [m for m in sent if m["role"] != "system"]
    assert all(a["role"] != b["role"] for a, b in zip(body, body[1:]))


def test_an_observation_read_again_unchanged_goes_up_once() -> None:
    tail = [TASK]
    for n in range(8):
        tail += [_step(n, "aurora config"), _observation(_log(0) if n % 2 == 0 else _log(n))]
    total = sum(COUNTER.message_tokens(m) for m in tail)
    sent = _sent(tail, int(total * 0.8))
    texts = [m["content"][0]["text"] for m in sent if m["role"] == "user"]
    assert sum(t == f"Observation:\n{_log(0)}" for t in texts) == 1
    assert any("identical to the output of the later call" in t for t in texts)


def test_the_query_is_the_task_not_the_observations() -> None:
    assert query_text(_loop(2)) == "New task:\nFind the codename of project Aurora."
