"""Hashes and token counts of the messages a client resends on every call, remembered.

A chat client sends its whole history with each request, so the same few hundred messages are
hashed (for alignment) and counted (for the layout) again and again. A plain message (a role and
a text, the bulk of any history) is remembered under its role and text: looking it up costs one
hash of the string, against serialising it to JSON and running sha256 over it (300 messages:
1.3 ms to hash, 0.9 ms to digest for the token cache, 0.03 ms to look up). So is a message whose
every field is a short text (a tool result: role, content, tool_call_id), under its (field, text)
pairs. Other messages (tool calls, content parts) and long texts are hashed every time, and counted
under a digest of their JSON.

The caches are bounded (least recently added leaves first) and shared by the worker threads that
plan turns, hence the lock.

`MessageMemo.counter` gives the planning of one request a `TiktokenCounter` whose
`message_tokens` answers from these caches, and remembers each message object it has counted for
the rest of that request: the alignment, the compaction, the layout and the manifest each count
the same resent messages, which tiktoken would otherwise encode five times per request (an agent
step: 11% of the proxy's CPU before this).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from memory.recall.tokens import TiktokenCounter
from memory.ingest.transcript import message_hash

__all__ = ["MessageMemo", "MemoCounter"]

# Texts longer than this are keyed by digest: the cache must not hold megabytes of pasted content.
MAX_KEYED_TEXT = 8_192


def _plain_key(message: dict[str, Any]) -> tuple[str, str] | None:
    """(role, text) for a message that is nothing but those two, and short enough to key by."""
    if len(message) != 2:
        return None
    role, content = message.get("role"), message.get("content")
    if isinstance(role, str) and isinstance(content, str) and len(content) <= MAX_KEYED_TEXT:
        return role, content
    return None


def _flat_key(message: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """The (field, text) pairs of a message whose every field is a text, short enough to key by:
    a tool result (role, content, tool_call_id) is looked up without serialising it to JSON."""
    size = 0
    for value in message.values():
        if not isinstance(value, str):
            return None
        size += len(value)
    return tuple(sorted(message.items())) if size <= MAX_KEYED_TEXT else None


def _digest(message: dict[str, Any]) -> bytes:
    blob = json.dumps(message, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.blake2b(blob, digest_size=16).digest()


class MessageMemo:
    """Bounded caches of `message_hash` and of each encoding's `message_tokens`."""

    def __init__(self, max_entries: int) -> None:
        self._max = max(1, max_entries)
        self._hashes: dict[tuple[Any, ...], str] = {}
        self._tokens: dict[tuple[str, Any], int] = {}
        self._lock = threading.Lock()

    def hash(self, message: dict[str, Any]) -> str:
        """`memory.ingest.transcript.message_hash(message)`."""
        key = _plain_key(message) or _flat_key(message)
        if key is None:
            return message_hash(message)
        found = self._hashes.get(key)
        if found is None:
            found = message_hash(message)
            self._put(self._hashes, key, found)
        return found

    def tokens(self, counter: TiktokenCounter, message: dict[str, Any]) -> int:
        """`counter.message_tokens(message)`."""
        plain = _plain_key(message) or _flat_key(message)
        key = (counter.encoding_name, plain if plain is not None else _digest(message))
        found = self._tokens.get(key)
        if found is None:
            found = counter.message_tokens(message)
            self._put(self._tokens, key, found)
        return found

    def counter(self, counter: TiktokenCounter) -> MemoCounter:
        """A counter for one request's planning that counts messages through this memo."""
        return MemoCounter(counter, self)

    def _put(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        with self._lock:
            cache[key] = value
            while len(cache) > self._max:
                del cache[next(iter(cache))]


class MemoCounter(TiktokenCounter):
    """`counter` with `message_tokens` remembered: by content across requests (`MessageMemo`), and
    by object within the one request it serves (a message is counted by several stages; the
    object is kept alongside its count, so its id cannot be reused meanwhile). Use one per
    request: the messages of a request are never modified, which the per-object memory relies on."""

    def __init__(self, counter: TiktokenCounter, memo: MessageMemo) -> None:
        super().__init__(counter.encoding_name)
        self._plain_counter = counter
        self._memo = memo
        self._seen: dict[int, tuple[dict[str, Any], int]] = {}

    def message_tokens(self, message: dict[str, Any]) -> int:
        seen = self._seen.get(id(message))
        if seen is not None and seen[0] is message:
            return seen[1]
        tokens = self._memo.tokens(self._plain_counter, message)
        self._seen[id(message)] = (message, tokens)
        return tokens
