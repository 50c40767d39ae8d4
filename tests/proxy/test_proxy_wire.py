from __future__ import annotations

import json

import pytest

from proxy.errors import InvalidRequestError, envelope
from proxy.wire import parse_chat_request, parse_compile_request


def test_unknown_fields_pass_through_in_the_raw_body() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi", "x_extra": 1}], "temperature": 0.2, "seed": 3, "future_field": {"a": 1}}
    chat, raw = parse_chat_request(json.dumps(body).encode())
    assert raw == body
    assert chat.model == "gpt-4o-mini" and chat.stream is False


def test_content_parts_and_tool_messages_are_accepted() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chat, _ = parse_chat_request(json.dumps(body).encode())
    assert chat.stream is True and chat.stream_options is not None and chat.stream_options.include_usage is True


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "m"}',
        b'{"model": "m", "messages": []}',
        b'{"model": "m", "messages": "hi"}',
        b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "", "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"model": "m", "messages": [{"role": "user", "content": 42}]}',
        b'{"model": "m", "messages": [{"content": "hi"}]}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": 7}',
    ],
)
def test_malformed_requests_raise_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    err = envelope(info.value)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and info.value.status == 400


def test_compile_request() -> None:
    req = parse_compile_request(b'{"user_message": "what did we decide?", "budget_tokens": 500}')
    assert req.model == "gpt-4o-mini" and req.budget_tokens == 500
    with pytest.raises(InvalidRequestError):
        parse_compile_request(b'{"user_message": "x", "budget_tokens": -1}')
    with pytest.raises(InvalidRequestError):
        parse_compile_request(b'{"budget_tokens": 10}')
