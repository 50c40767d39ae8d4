"""Responses items <-> memory's chat messages: every item kind maps, the forwarded input is the
original items, a reply is one assistant turn, and distinct opaque items never hash the same
(while chat messages keep the hashes they always had)."""

from __future__ import annotations

import copy
import hashlib
import json

from memory.ingest.transcript import message_hash
from proxy.responses.items import INSTRUCTIONS_KEY, item_ids, reply_message, rewrite, to_input, to_messages

ITEMS = [
    {"role": "user", "content": "hello"},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look at this"},
                                                    {"type": "input_image", "image_url": "https://example.invalid/a.png"}]},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA-one"},
    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "checking", "annotations": []}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "lookup", "arguments": "{\"q\":1}"},
    {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "lookup", "arguments": "{\"q\":2}"},
    {"type": "function_call_output", "call_id": "call_a", "output": "one"},
    {"type": "function_call_output", "call_id": "call_b", "output": "two"},
    {"role": "developer", "content": "be brief"},
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "x"}},
]


def test_each_item_kind_maps_to_a_message_and_back_verbatim() -> None:
    original = copy.deepcopy(ITEMS)
    messages = to_messages(ITEMS, instructions="You are terse.")
    assert [m["role"] for m in messages] == ["system", "user", "user", "assistant", "tool", "tool", "developer", "assistant"]
    assert messages[0][INSTRUCTIONS_KEY] and messages[1] == {"role": "user", "content": "hello", "item": ITEMS[0]}
    merged = messages[3]  # reasoning, text and both parallel calls: one assistant turn
    assert merged["content"] == "checking" and [c["id"] for c in merged["tool_calls"]] == ["call_a", "call_b"]
    assert merged["items"] == ITEMS[2:6]
    assert [(m["tool_call_id"], m["content"]) for m in messages[4:6]] == [("call_a", "one"), ("call_b", "two")]
    assert to_input(messages) == original  # instructions stay out of input; every item comes back as it was


def test_opaque_items_are_told_apart_and_chat_hashes_are_unchanged() -> None:
    one = to_messages([{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "A"}])[0]
    two = to_messages([{"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "B"}])[0]
    assert message_hash(one) != message_hash(two)
    # A reply sent back with its status dropped, or unset fields filled with null, is the same turn.
    again = to_messages([{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "A", "status": None}])[0]
    assert message_hash(again) == message_hash(one)
    image_a, image_b = (to_messages([{"role": "user", "content": [{"type": "input_text", "text": "see"},
                                                                   {"type": "input_image", "image_url": url}]}])[0]
                        for url in ("https://example.invalid/a.png", "https://example.invalid/b.png"))
    assert message_hash(image_a) != message_hash(image_b)
    # Chat messages hash as they always did (no item_key), so easy text items match them.
    assert message_hash(to_messages([{"role": "user", "content": "hi"}])[0]) == message_hash({"role": "user", "content": "hi"})
    canonical = json.dumps({"content": "hi", "role": "user"}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert message_hash({"role": "user", "content": "hi"}) == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_reply_and_its_items_sent_back_are_the_same_turn() -> None:
    output = [{"type": "message", "id": "msg_9", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "done", "annotations": [], "logprobs": []}]},
              {"type": "function_call", "id": "fc_9", "status": "completed", "call_id": "call_9", "name": "f", "arguments": "{}"}]
    stored = reply_message(output)
    assert stored is not None
    resent = to_messages(copy.deepcopy(output))[0]
    assert message_hash(stored) == message_hash(resent)
    assert message_hash(stored) == message_hash({"role": "assistant", "content": "done", "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    assert [i for i, _ in item_ids(output + [{"type": "item_reference", "id": "msg_0"}])] == ["msg_9", "fc_9"]


def test_messages_memory_wrote_become_easy_input_items() -> None:
    laid_out = [{"role": "system", "content": "Session state: ..."},
                {"role": "assistant", "content": "ok", "tool_calls": [{"id": "c1", "type": "function",
                                                                      "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "result"}]
    assert to_input(laid_out) == [{"role": "system", "content": "Session state: ..."}, {"role": "assistant", "content": "ok"},
                                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                                  {"type": "function_call_output", "call_id": "c1", "output": "result"}]


def test_a_compacted_message_is_rebuilt_as_an_item_of_the_same_kind_and_call() -> None:
    items = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque"},
             {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "bash", "arguments": '{"command": "cat a.py"}'},
             {"type": "custom_tool_call", "id": "ct_2", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n" + "x\n" * 50},
             {"type": "function_call_output", "call_id": "call_1", "output": "line\n" * 100},
             {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
             {"type": "shell_call_output", "call_id": "call_3", "output": [{"stdout": "a\n" * 50, "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]}]
    assistant, out_1, out_2, shell = to_messages(items)
    stub = rewrite(out_1, {**out_1, "content": "[stub]"})
    assert stub is not None and to_input([stub]) == [{"type": "function_call_output", "call_id": "call_1", "output": "[stub]"}]
    assert to_input([rewrite(out_2, {**out_2, "content": "[stub]"})]) == [{"type": "custom_tool_call_output", "call_id": "call_2", "output": "[stub]"}]
    rebuilt = to_input([rewrite(shell, {**shell, "content": "[stub]"})])[0]
    assert rebuilt["type"] == "shell_call_output" and rebuilt["call_id"] == "call_3" and rebuilt["output"][0]["stdout"] == "[stub]"
    calls = [dict(c) for c in assistant["tool_calls"]]
    calls[1] = {**calls[1], "function": {**calls[1]["function"], "arguments": "*** Begin Patch … [elided]"}}
    shortened = to_input([rewrite(assistant, {"role": "assistant", "content": None, "tool_calls": calls})])
    assert shortened[0] == items[0]  # the reasoning item with its encrypted_content, untouched
    assert shortened[1] == items[1] and shortened[2] == {**items[2], "input": "*** Begin Patch … [elided]"}
