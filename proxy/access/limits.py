"""Bounds on one chat request, checked before memory or the upstream sees it.

Over a bound the request is refused whole with a 413 in the OpenAI envelope (nothing stored,
nothing forwarded): a partial ingest would leave memory silently missing part of what the client
believes it sent. The bounds (config `server.max_body_bytes`, `limits.*`):

- the body, in bytes (checked while reading it, `proxy.http.read_body`);
- the number of messages;
- the tokens of any one message (OpenAI's count for the request's model). A token is at least one
  byte, so only messages whose UTF-8 size exceeds the bound are counted, off the event loop. A
  message longer than 8 characters per token of the bound is refused without counting: natural
  text averages 3-5, and tiktoken needs seconds for the long runs of one character that reach more
  (2 MB of "a" took 1.9 s; 200 KB of "." 0.6 s).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from memory import get_counter
from memory.errors import MemoryRuntimeError

from proxy.config import LimitsConfig
from proxy.errors import InvalidRequestError, PayloadTooLargeError

__all__ = ["check_limits", "CHARS_PER_TOKEN_CAP"]

CHARS_PER_TOKEN_CAP = 8


def _size(message: dict[str, Any]) -> int:
    """An upper bound on the UTF-8 bytes of a message's text (a character is at most 4 bytes)."""
    content = message.get("content")
    if isinstance(content, str) and len(message) <= 2:
        return 4 * len(content)
    return 4 * len(json.dumps(message, ensure_ascii=False, default=str))


async def check_limits(messages: list[dict[str, Any]], model: str, limits: LimitsConfig) -> None:
    """Raise `PayloadTooLargeError` when `messages` break a limit; returns quickly when they cannot."""
    if len(messages) > limits.max_messages:
        raise PayloadTooLargeError(
            f"{len(messages)} messages; the limit is {limits.max_messages} (limits.max_messages)", param="messages", code="too_many_messages"
        )
    big = [(i, m) for i, m in enumerate(messages) if _size(m) > limits.max_message_tokens]
    if big:
        await asyncio.to_thread(_check_tokens, big, model, limits.max_message_tokens)


def _check_tokens(big: list[tuple[int, dict[str, Any]]], model: str, limit: int) -> None:
    try:
        counter = get_counter(model)
    except MemoryRuntimeError as exc:
        raise InvalidRequestError(str(exc), param="model") from None
    for i, message in big:
        text_size = len(json.dumps(message, ensure_ascii=False, default=str))
        tokens = None if text_size > CHARS_PER_TOKEN_CAP * limit else counter.message_tokens(message)
        if tokens is None or tokens > limit:
            shown = f"{tokens} tokens" if tokens is not None else f"{text_size} characters"
            raise PayloadTooLargeError(
                f"messages[{i}] is {shown}; the limit is {limit} tokens per message (limits.max_message_tokens)",
                param=f"messages[{i}]",
                code="message_too_large",
            )
