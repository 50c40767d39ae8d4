"""The message memo answers exactly what hashing and counting answer, stays bounded, and never
keys a long text by its content."""

from __future__ import annotations

from typing import Any

from memory import get_counter
from memory.recall.memo import MAX_KEYED_TEXT, MessageMemo
from memory.ingest.transcript import message_hash

MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "hello there"},
    {"role": "user", "content": "hello there", "name": "ann"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}}]},
    {"role": "user", "content": "x " * (MAX_KEYED_TEXT + 10)},
]


def test_same_answers_as_hashing_and_counting_every_time() -> None:
    memo = MessageMemo(100)
    for model in ("gpt-4o-mini", "gpt-4"):
        counter = get_counter(model)
        for _ in range(2):  # computed, then remembered
            for message in MESSAGES:
                assert memo.hash(message) == message_hash(message)
                assert memo.tokens(counter, message) == counter.message_tokens(message)


def test_bounded_and_long_texts_not_kept_as_keys() -> None:
    memo = MessageMemo(3)
    counter = get_counter("gpt-4o-mini")
    for n in range(10):
        message = {"role": "user", "content": f"message {n}"}
        assert memo.hash(message) == message_hash(message)
        assert memo.tokens(counter, message) == counter.message_tokens(message)
    long = {"role": "user", "content": "y" * (MAX_KEYED_TEXT + 1)}
    memo.tokens(counter, long)
    memo.hash(long)
    assert len(memo._hashes) <= 3 and len(memo._tokens) <= 3
    assert all(len(k[1]) == 16 or len(k[1][1]) <= MAX_KEYED_TEXT for k in memo._tokens)
    assert all(len(text) <= MAX_KEYED_TEXT for _, text in memo._hashes)


def test_memo_counter_counts_as_the_counter_does_and_each_message_once() -> None:
    memo = MessageMemo(100)
    plain = get_counter("gpt-4o-mini")
    counter = memo.counter(plain)
    assert counter.encoding_name == plain.encoding_name
    for _ in range(2):
        for message in MESSAGES:
            assert counter.message_tokens(message) == plain.message_tokens(message)
    assert counter.messages_tokens(MESSAGES) == plain.messages_tokens(MESSAGES)
    assert counter.count("a few words") == plain.count("a few words")
    # Within its request a message object is counted once, whatever the content memo holds.
    memo._tokens.clear()
    counter.message_tokens(MESSAGES[4])
    assert memo._tokens == {}
    # Another request's counter knows objects only by their content.
    fresh = memo.counter(plain)
    same_content = dict(MESSAGES[4])
    assert fresh.message_tokens(same_content) == plain.message_tokens(same_content)
    assert len(memo._tokens) == 1


def test_tool_results_are_remembered_by_every_field() -> None:
    memo = MessageMemo(100)
    counter = get_counter("gpt-4o-mini")
    first = {"role": "tool", "tool_call_id": "call_1", "content": "same output"}
    other = {"role": "tool", "tool_call_id": "call_22222222", "content": "same output"}
    named = {"role": "tool", "tool_call_id": "call_1", "content": "same output", "name": "bash"}
    for _ in range(2):
        for message in (first, other, named):
            assert memo.hash(message) == message_hash(message)
            assert memo.tokens(counter, message) == counter.message_tokens(message)
    assert len({memo.hash(m) for m in (first, other, named)}) == 3
    assert memo.tokens(counter, other) > memo.tokens(counter, first)
    # Remembered under their fields, not recomputed: a long output is not (it is keyed by digest).
    assert any(isinstance(k, tuple) and ("tool_call_id", "call_1") in k for k in memo._hashes)
    long = {"role": "tool", "tool_call_id": "call_3", "content": "z" * MAX_KEYED_TEXT}
    assert memo.hash(long) == message_hash(long)
    assert not any(isinstance(k, tuple) and ("tool_call_id", "call_3") in k for k in memo._hashes)
