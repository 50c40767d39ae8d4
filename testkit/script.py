"""What a test tells the fake upstream to answer, and what the fake recorded.

One `Script` is shared by every API the fake speaks (OpenAI, Gemini, and any added later): replies
queue in order whichever API asks, and every request is recorded in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .prompt_cache import PromptCache

__all__ = ["ToolCall", "Reply", "Recorded", "Script", "pieces", "sse", "CHAT_PATHS", "HOLD_LIMIT_S"]

# Paths (or path fragments) of the calls that are model calls, in every API the fake speaks.
CHAT_PATHS = ("/chat/completions", ":generateContent", ":streamGenerateContent")


# The longest a held reply waits for the test to let it go: far beyond any machine's slowness (a
# hold that gave up while the test still expected it held would fail the test), bounded so a test
# that failed before releasing leaves no thread behind for long.
HOLD_LIMIT_S = 120.0


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = "call_fake_1"
    thought_signature: str | None = None
    # OpenAI APIs only: the arguments exactly as this JSON text (a recorded agent's own bytes)
    # instead of `json.dumps(arguments)`.
    raw_arguments: str | None = None

    def arguments_json(self) -> str:
        return self.raw_arguments if self.raw_arguments is not None else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # Respond with this HTTP status and an error body instead of a completion.
    error_status: int | None = None
    error_message: str = "fake upstream error"
    # Streaming only: send this many content chunks, then drop the connection.
    die_after_chunks: int | None = None
    # Streaming only: send this many content chunks, then end the response cleanly with no finish
    # reason and no [DONE] (a truncated reply that looks like a normal end of stream).
    end_after_chunks: int | None = None
    # Wait this long before answering (for timeout tests).
    delay_seconds: float = 0.0
    # Streaming only: after the first content chunk, wait until the test sets this event (at most
    # HOLD_LIMIT_S).
    hold: threading.Event | None = None
    # Responses API only: end the response "failed" or "incomplete" instead of "completed".
    responses_status: str | None = None
    # Streaming, Anthropic Messages and OpenAI chat: after the first content chunk, send an error
    # event with this message (Anthropic's `error` event; OpenAI's `data: {"error": ...}`) and end.
    stream_error: str | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    # The usage the fake reported for a model call (None for other calls, errors and faults).
    reported: dict[str, Any] | None = None
    # The path exactly as it arrived on the wire, percent-encoding and all (`path` is decoded).
    raw_path: str = ""
    # The caller's address and port: one port for several requests means one kept-alive connection.
    peer: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Script:
    """The reply queue and the request log. `keep_requests=False` for long benchmark runs, which
    must not grow a log nobody reads; `latency_s` delays every model call (the first chunk when
    streaming) to stand in for a real model; `chunk_chars` sizes the streamed text pieces."""

    keep_requests: bool = True
    latency_s: float = 0.0
    chunk_chars: int = 7
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    # Prompt caching as the provider does it: every API reports cached prefix tokens from here.
    cache: PromptCache = field(default_factory=PromptCache)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.replies.clear()
            self.requests.clear()
        self.cache.reset()

    def take_requests(self) -> list[Recorded]:
        """The request log so far, emptied: a long replay reads each step's requests and keeps none."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def discard_replies(self) -> int:
        """Drop what is still queued (a request the fake rejected never took its reply); how many."""
        with self._lock:
            left = len(self.replies)
            self.replies.clear()
        return left

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if any(p in r.path for p in CHAT_PATHS)]

    def last_chat(self) -> Recorded:
        return self.chat_requests()[-1]

    def responses_requests(self) -> list[Recorded]:
        """Model calls to the Responses API (POST /v1/responses)."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/v1/responses")]

    def last_response_request(self) -> Recorded:
        return self.responses_requests()[-1]

    def next_reply(self, default_text: str) -> Reply:
        """The next queued reply, or `echo: <default_text>` when the queue is empty."""
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        return Reply(text=f"echo: {default_text}")

    async def record(self, request: Request) -> Recorded:
        rec = Recorded(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            raw_path=bytes(request.scope.get("raw_path") or b"").decode("latin-1"),
            peer=f"{request.client.host}:{request.client.port}" if request.client else "",
        )
        if self.keep_requests:
            with self._lock:
                self.requests.append(rec)
        return rec

    def pieces(self, text: str) -> list[str]:
        return pieces(text, self.chunk_chars)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(payload: dict[str, Any], end: bytes = b"\n\n") -> bytes:
    """One server-sent event carrying `payload` as JSON (Gemini ends its events with CRLF CRLF)."""
    return b"data: " + json.dumps(payload).encode() + end
