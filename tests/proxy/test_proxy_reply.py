from __future__ import annotations

from proxy.chat.reply import ReplyAssembler, clean_assistant_message, first_message


def _chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_assembles_text_and_split_tool_calls() -> None:
    a = ReplyAssembler()
    a.feed(_chunk({"role": "assistant", "content": ""}))
    a.feed(_chunk({"content": "Hel"}))
    a.feed(_chunk({"content": "lo"}))
    a.feed(_chunk({"content": "ignored"}, index=1))
    a.feed(_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"ci'}}]}))
    a.feed(_chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "put", "arguments": "{}"}}]}))
    a.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Rome"}'}, "provider_specific_fields": {"thought_signature": "S1"}}]}))
    assert a.finish_reason is None
    a.feed(_chunk({}, "tool_calls"))
    a.feed({"choices": [], "usage": {"total_tokens": 3}})
    assert a.finish_reason == "tool_calls"
    msg = a.message()
    assert msg["content"] == "Hello"
    assert [c["id"] for c in msg["tool_calls"]] == ["call_1", "call_2"]
    assert msg["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"city": "Rome"}'}
    assert msg["tool_calls"][0]["provider_specific_fields"] == {"thought_signature": "S1"}


def test_tool_call_only_reply_has_null_content() -> None:
    a = ReplyAssembler()
    a.feed(_chunk({"role": "assistant", "content": ""}))
    a.feed(_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "tool_calls"))
    assert a.message()["content"] is None


def test_message_level_provider_fields_are_kept() -> None:
    a = ReplyAssembler()
    a.feed(_chunk({"content": "x", "provider_specific_fields": {"thought_signatures": ["S"], "other": None}}, "stop"))
    assert a.message()["provider_specific_fields"] == {"thought_signatures": ["S"]}


def test_clean_message_drops_litellm_extras() -> None:
    raw = {
        "role": "assistant",
        "content": None,
        "function_call": None,
        "images": [],
        "thinking_blocks": [],
        "provider_specific_fields": {"refusal": None},
        "tool_calls": [{"index": 0, "id": "c__thought__S", "type": "function", "function": {"name": "f", "arguments": "{}"}, "provider_specific_fields": {"thought_signature": "S"}}],
    }
    assert clean_assistant_message(raw) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c__thought__S", "type": "function", "function": {"name": "f", "arguments": "{}"}, "provider_specific_fields": {"thought_signature": "S"}}],
    }
    assert first_message({"choices": []}) is None
    assert first_message({"choices": [{"message": {"role": "assistant", "content": "hi"}}]}) == {"role": "assistant", "content": "hi"}
