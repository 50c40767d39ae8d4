"""What the proxy streams decodes, with the official openai client's own SSE decoder, to exactly
the payloads it encoded, however the bytes are split in transit."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from proxy.sse import DONE, SSEDecoder as ProxyDecoder, encode_data, encode_event

PAYLOADS = [
    {"id": "c1", "choices": [{"delta": {"content": "héllo wörld ✓ 😀"}}]},
    {"id": "c2", "choices": [{"delta": {"content": "line\nbreak\r\nand\rreturns"}}]},
    {"error": {"message": "boom", "type": "upstream_error", "param": None, "code": None}},
]
STREAM = b"".join(encode_data(p) for p in PAYLOADS) + DONE


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def _decoded(chunks: list[bytes]) -> list[str]:
    return [event.data for event in SSEDecoder().iter_bytes(iter(chunks))]


def test_encode_data_is_one_compact_event() -> None:
    assert encode_data({"a": "x\ny"}) == b'data: {"a":"x\\ny"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_the_openai_client_decodes_what_we_encode_however_it_is_split(cuts: list[int]) -> None:
    decoded = _decoded(_split(STREAM, cuts))
    assert [json.loads(d) for d in decoded[:-1]] == PAYLOADS
    assert decoded[-1] == "[DONE]"


RESPONSES_STREAM = (b"event: response.created\ndata: {\"type\":\"response.created\",\"n\":\"h\\u00e9\"}\n\n"
                    b": keep-alive comment\r\n"
                    b"event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\r\ndata: \"delta\":\"\xc3\xa9\xe2\x9c\x93\"}\r\n\r\n"
                    b"event: response.completed\rdata: {\"type\":\"response.completed\"}\r\r")


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_our_decoder_reads_responses_streams_however_they_are_split(cuts: list[int]) -> None:
    decoder = ProxyDecoder()
    events = [e for chunk in _split(RESPONSES_STREAM, cuts) for e in decoder.feed(chunk)] + decoder.close()
    assert [e.event for e in events] == ["response.created", "response.output_text.delta", "response.completed"]
    assert [json.loads(e.data)["type"] for e in events] == [e.event for e in events]
    assert json.loads(events[1].data)["delta"] == "é✓"
    # What we encode as named events, the openai client decodes back.
    encoded = b"".join(encode_event(str(e.event), json.loads(e.data)) for e in events)
    assert [json.loads(d) for d in _decoded(_split(encoded, cuts))] == [json.loads(e.data) for e in events]


def test_an_event_not_closed_by_a_blank_line_is_dropped_at_the_end() -> None:
    decoder = ProxyDecoder()
    assert decoder.feed(b"data: {\"a\": 1}\n") == []
    assert decoder.close() == []
