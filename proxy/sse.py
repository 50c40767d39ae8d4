"""Server-sent events: pure encode and decode functions, no transport.

Decoding follows the WHATWG event-stream rules that matter for OpenAI-style streams: lines end in
CR, LF or CRLF (possibly split across chunks), `data` lines of one event are joined with "\\n", a
blank line dispatches, comment lines (":") are ignored. Input chunks may split anywhere, even inside
a multi-byte UTF-8 character, because lines are cut on bytes before they are decoded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ServerSentEvent", "SSEDecoder", "encode_data", "encode_event", "DONE", "iter_events", "aiter_events"]

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def encode_data(payload: Any) -> bytes:
    """One `data:` event carrying `payload` as compact JSON (JSON never contains a raw newline)."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def encode_event(data: str, event: str | None = None) -> bytes:
    """An event with arbitrary text data; multi-line data becomes several `data:` lines."""
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class SSEDecoder:
    """Incremental decoder: `feed` bytes, get the events completed so far; `flush` at end of input."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                break
            start, end = cut
            line, self._buffer = self._buffer[:start], self._buffer[end:]
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data and self._event is None:
                return None
            event = ServerSentEvent(data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry)
            self._data, self._event, self._retry = [], None, None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """(start, end) of the first complete line terminator, or None. A CR at the very end of the
    buffer is not complete yet: the next chunk may begin with the LF of a CRLF."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr == len(buffer) - 1:
        return None
    return (cr, cr + 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, cr + 1)


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
