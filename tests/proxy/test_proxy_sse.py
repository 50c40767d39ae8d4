from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sse import DONE, SSEDecoder, ServerSentEvent, encode_data, encode_event, iter_events

PAYLOADS = [
    {"id": "c1", "choices": [{"delta": {"content": "héllo wörld ✓ 😀"}}]},
    {"id": "c2", "choices": [{"delta": {"content": "line\nbreak"}}]},
    {"error": {"message": "boom", "type": "upstream_error", "param": None, "code": None}},
]


def _stream(line_end: bytes) -> bytes:
    body = b"".join(encode_data(p) for p in PAYLOADS) + b": keep-alive comment\n\n" + encode_event("a\nb", event="note") + DONE
    return body.replace(b"\n", line_end)


def _expected() -> list[ServerSentEvent]:
    return [ServerSentEvent(data=json.dumps(p, separators=(",", ":"), ensure_ascii=False)) for p in PAYLOADS] + [
        ServerSentEvent(data="a\nb", event="note"),
        ServerSentEvent(data="[DONE]"),
    ]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def test_encode_data_is_one_compact_event() -> None:
    assert encode_data({"a": "x\ny"}) == b'data: {"a":"x\\ny"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_decode_whole_stream() -> None:
    events = list(iter_events([_stream(b"\n")]))
    assert events == _expected()
    assert events[0].json() == PAYLOADS[0]


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40), line_end=st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_decode_is_independent_of_chunk_boundaries(cuts: list[int], line_end: bytes) -> None:
    data = _stream(line_end)
    assert list(iter_events(_split(data, cuts))) == _expected()


def test_byte_at_a_time_with_crlf_and_multibyte() -> None:
    data = _stream(b"\r\n")
    assert list(iter_events([data[i : i + 1] for i in range(len(data))])) == _expected()


def test_flush_dispatches_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.flush() == [ServerSentEvent(data="x")]


def test_fields_id_retry_and_space_handling() -> None:
    events = list(iter_events([b"id: 7\nretry: 150\nevent:e\ndata:no-space\ndata:  two\n\n"]))
    assert events == [ServerSentEvent(data="no-space\n two", event="e", id="7", retry=150)]
