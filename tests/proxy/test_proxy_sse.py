"""What the proxy streams decodes, with the official openai client's own SSE decoder, to exactly
the payloads it encoded, however the bytes are split in transit."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from proxy.sse import DONE, encode_data

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
