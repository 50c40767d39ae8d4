"""The rules of `proxy.messages`: Anthropic blocks <-> chat messages, and where breakpoints go."""

from __future__ import annotations

import copy
import json
from typing import Any

from memory.ingest.transcript import message_hash

from proxy.messages.blocks import OMITTED_NOTE, reply_message, rewrite, to_anthropic, to_messages
from proxy.messages.cache import MAX_BREAKPOINTS, breakpoints, mark_frame_end, mark_stable_top
from proxy.messages.reply import Assembler
from proxy.messages.upstream import forwarded_headers

SYSTEM = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": "look at this"},
                                 {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                                      {"type": "text", "text": "reading two files"},
                                      {"type": "tool_use", "id": "toolu_a", "name": "read", "input": {"path": "a.py"}},
                                      {"type": "tool_use", "id": "toolu_b", "name": "read", "input": {"path": "b.py"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "print('a')"},
                                 {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "oops"}], "is_error": True},
                                 {"type": "text", "text": "<system-reminder>tests pass</system-reminder>", "cache_control": {"type": "ephemeral"}}]},
    {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "done"}]},
    {"role": "user", "content": "thanks"},
]


def test_blocks_round_trip_exactly() -> None:
    original = copy.deepcopy(CONVERSATION)
    chat = to_messages(SYSTEM, CONVERSATION)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
    assert chat[2]["tool_calls"][1]["function"] == {"name": "read", "arguments": '{"path": "b.py"}'}
    assert chat[3]["tool_call_id"] == "toolu_a" and chat[4]["content"] == "oops\n<system-reminder>tests pass</system-reminder>"
    rebuilt = to_anthropic(chat, {id(m) for m in chat})
    assert rebuilt.system == SYSTEM and rebuilt.messages == original
    assert CONVERSATION == original  # nothing was changed in place


def test_stored_copies_lose_old_breakpoints_and_hash_alike() -> None:
    chat = to_messages(SYSTEM, CONVERSATION)
    stored = json.loads(json.dumps(chat))  # memory's copy, as it comes back from storage
    rebuilt = to_anthropic(stored, set())
    assert "cache_control" not in json.dumps(rebuilt.messages)
    # A breakpoint moved elsewhere by the client leaves the message's identity alone.
    moved = copy.deepcopy(CONVERSATION)
    del moved[2]["content"][2]["cache_control"]
    assert [message_hash(m) for m in to_messages(None, moved)] == [message_hash(m) for m in chat[1:]]
    # A changed signature or image is a different message.
    changed = copy.deepcopy(CONVERSATION)
    changed[1]["content"][0]["signature"] = "sig-2"
    assert message_hash(to_messages(None, changed)[1]) != message_hash(chat[2])


def test_a_stubbed_tool_result_is_rebuilt_in_anthropic_form() -> None:
    chat = to_messages(None, CONVERSATION)
    stub = {**chat[2], "content": "[tool output elided: 2 lines]"}
    rebuilt = to_anthropic([chat[0], chat[1], stub, chat[3], chat[4]], {id(m) for m in chat})
    results = rebuilt.messages[2]["content"]
    assert results[0] == {"type": "tool_result", "tool_use_id": "toolu_a", "content": "[tool output elided: 2 lines]"}
    assert results[1]["tool_use_id"] == "toolu_b" and results[1]["is_error"] is True  # its neighbour untouched


def test_memory_context_goes_in_user_messages_and_the_user_speaks_first() -> None:
    chat = to_messages(SYSTEM, CONVERSATION)
    state = {"role": "system", "content": "Session state:\nDecision: Go."}
    evidence = {"role": "system", "content": "Relevant context: b.py"}
    # system, base, a window starting at the assistant's reply, evidence, the tail.
    laid = [chat[0], state, chat[5], evidence, chat[6]]
    rebuilt = to_anthropic(laid, {id(m) for m in chat}, frame_end=3)
    assert [m["role"] for m in rebuilt.messages] == ["user", "assistant", "user", "user"]
    assert rebuilt.messages[0]["content"] == [{"type": "text", "text": "Session state:\nDecision: Go."}]
    assert rebuilt.messages[2]["content"] == [{"type": "text", "text": "Relevant context: b.py"}]
    assert rebuilt.frame_last == 1
    bare = to_anthropic([chat[0], chat[5], chat[6]], {id(m) for m in chat}, frame_end=2)
    assert bare.messages[0] == {"role": "user", "content": [{"type": "text", "text": OMITTED_NOTE}]} and bare.frame_last == 1


def test_frame_breakpoint_is_added_moved_or_left_by_the_rule() -> None:
    def body(marks: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": f"m{i}"}]}
                                          for i in range(8)]
        for i in range(marks):
            messages[7 - 2 * i]["content"][0]["cache_control"] = {"type": "ephemeral"}
        return {"system": [{"type": "text", "text": "s"}], "messages": messages}

    added = body(1)
    assert mark_frame_end(added, 3) and added["messages"][3]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert len(breakpoints(added)) == 2
    full = body(4)  # breakpoints on messages 7, 5, 3, 1: 3 and 1 are inside the frame (0..4)
    assert mark_frame_end(full, 4)
    assert len(breakpoints(full)) == MAX_BREAKPOINTS
    assert "cache_control" in full["messages"][4]["content"][0] and "cache_control" not in full["messages"][3]["content"][0]
    assert "cache_control" in full["messages"][1]["content"][0]
    outside = body(0)
    outside["tools"] = [{"name": f"t{i}", "input_schema": {}, "cache_control": {"type": "ephemeral"}} for i in range(4)]
    assert not mark_frame_end(outside, 4) and len(breakpoints(outside)) == 4
    hour = body(1)
    hour["messages"][7]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    assert mark_frame_end(hour, 2) and hour["messages"][2]["content"][0]["cache_control"]["ttl"] == "1h"


def test_the_stable_top_gets_a_breakpoint_only_when_the_client_marked_none_there() -> None:
    def body(system: Any, marks: int = 1, tools: bool = True) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": f"m{i}"}]}
                                          for i in range(8)]
        for i in range(marks):
            messages[7 - 2 * i]["content"][0]["cache_control"] = {"type": "ephemeral"}
        out: dict[str, Any] = {"system": system, "messages": messages}
        if tools:
            out["tools"] = [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]
        return out

    plain = body("You are terse.")
    assert mark_stable_top(plain) and plain["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    blocks = body([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
    assert mark_stable_top(blocks) and "cache_control" in blocks["system"][1] and "cache_control" not in blocks["system"][0]
    no_system = body(None)
    assert mark_stable_top(no_system) and no_system["tools"][1]["cache_control"] == {"type": "ephemeral"}
    assert not mark_stable_top(body(None, tools=False))
    marked = body([{"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}}])
    assert not mark_stable_top(marked) and len(breakpoints(marked)) == 2  # the client's own stays the only one there
    full = body("s", marks=4)
    assert not mark_stable_top(full) and len(breakpoints(full)) == MAX_BREAKPOINTS
    hour = body("s")
    hour["messages"][7]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    assert mark_stable_top(hour) and hour["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}  # longer TTLs first


def test_thinking_blocks_never_carry_the_breakpoint() -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "thinking", "thinking": "t", "signature": "s"}]}]}
    assert mark_frame_end(body, 1)
    assert body["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"} and "cache_control" not in body["messages"][1]["content"][1]


def test_assembler_rebuilds_the_streamed_message() -> None:
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "plan"}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "read", "input": {}}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"pa'}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": 'th": "x"}'}}),
        ("content_block_stop", {"index": 1}),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        ("message_stop", {}),
    ]
    assembler = Assembler()
    for name, payload in events:
        assembler.feed(name, payload)
    assert assembler.stopped and assembler.usage == {"input_tokens": 5, "output_tokens": 9}
    assert assembler.content == [{"type": "thinking", "thinking": "plan", "signature": "sig"},
                                 {"type": "tool_use", "id": "t", "name": "read", "input": {"path": "x"}}]
    stored = reply_message(assembler.content)
    assert stored is not None and stored["tool_calls"][0]["id"] == "t" and stored["item_key"]


def test_the_compaction_hook_rewrites_the_carried_blocks() -> None:
    chat = to_messages(None, CONVERSATION)
    stub = rewrite(chat[2], {**chat[2], "content": "[memory-runtime: compacted output of read a.py]"})
    assert stub is not None
    calls = [{**c, "function": {**c["function"], "arguments": '{"path": "a.py…"}'}} if c["id"] == "toolu_a" else c for c in chat[1]["tool_calls"]]
    shortened = rewrite(chat[1], {**chat[1], "tool_calls": calls})
    assert shortened is not None
    rebuilt = to_anthropic([chat[0], shortened, stub, chat[3], chat[4], chat[5]], {id(m) for m in chat}).messages
    assert rebuilt[1]["content"][2] == {"type": "tool_use", "id": "toolu_a", "name": "read", "input": {"path": "a.py…"}}
    assert rebuilt[1]["content"][0]["signature"] == "sig-1"  # the thinking block untouched
    assert rebuilt[2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_a", "content": "[memory-runtime: compacted output of read a.py]"}
    assert rebuilt[2]["content"][1]["tool_use_id"] == "toolu_b"  # the other result of the same message, whole
    assert rewrite(chat[1], {**chat[1], "content": "two texts?"}) is not None  # one text block: it carries the new text
    two_texts = to_messages(None, [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])[0]
    assert rewrite(two_texts, {**two_texts, "content": "ab, shorter"}) is None


def test_anthropic_headers_go_up_as_sent_and_the_environment_key_only_without_one() -> None:
    raw = [(b"host", b"x"), (b"anthropic-beta", b"b2,b1"), (b"x-memory-session", b"s"), (b"anthropic-version", b"2023-06-01"),
           (b"anthropic-beta", b"b0"), (b"cookie", b"c=1"), (b"x-api-key", b"sk-ant-caller")]
    assert forwarded_headers(raw, "sk-ant-env") == [(b"anthropic-beta", b"b2,b1"), (b"anthropic-version", b"2023-06-01"),
                                                    (b"anthropic-beta", b"b0"), (b"x-api-key", b"sk-ant-caller")]
    assert forwarded_headers(raw[:4], "sk-ant-env")[-1] == (b"x-api-key", b"sk-ant-env")
    assert forwarded_headers(raw[:4], None) == [(b"anthropic-beta", b"b2,b1"), (b"anthropic-version", b"2023-06-01")]
