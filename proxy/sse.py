"""Server-sent events: pure functions and a pure incremental decoder, no transport.

Streams from the OpenAI-compatible upstream (chat and Responses) are read by the proxy itself
(`SSEDecoder`, in `proxy.direct`), so their events reach the client as the provider sent them;
Gemini's are decoded by litellm. The test-suite
checks what we encode with the official openai client's own decoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["encode_data", "encode_event", "DONE", "SSEDecoder", "ServerEvent"]

DONE = b"data: [DONE]\n\n"


def encode_data(payload: Any) -> bytes:
    """One `data:` event carrying `payload` as compact JSON (JSON never contains a raw newline)."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def encode_event(name: str, payload: Any) -> bytes:
    """A named event (`event: <name>` then its data), as the Responses API sends them."""
    return b"event: " + name.encode("utf-8") + b"\n" + encode_data(payload)


@dataclass(frozen=True)
class ServerEvent:
    event: str | None
    data: str


@dataclass
class SSEDecoder:
    """Feed it bytes as they arrive (split anywhere); it returns the events completed so far.
    Lines end in LF, CRLF or CR; `data:` lines of one event are joined by LF; comments are skipped."""

    _buffer: bytes = b""
    _event: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        self._buffer += chunk
        out: list[ServerEvent] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return out
            end, after = cut
            line = self._buffer[:end].decode("utf-8")
            self._buffer = self._buffer[after:]
            event = self._line(line)
            if event is not None:
                out.append(event)

    def close(self) -> list[ServerEvent]:
        """At the end of the stream: a lone CR ends its line; an event not closed by a blank line
        is incomplete and dropped (the SSE rule)."""
        out = self.feed(b"\n") if self._buffer.endswith(b"\r") else []
        self._buffer, self._event, self._data = b"", None, []
        return out

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = ServerEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """(end of the first complete line, start of the next) in `buffer`, or None. A CR at the very
    end may be the first half of a CRLF, so it waits for the next byte."""
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr < 0 or (0 <= lf < cr):
        return (lf, lf + 1) if lf >= 0 else None
    if cr + 1 == len(buffer):
        return None
    return cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
