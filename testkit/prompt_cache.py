"""Provider prompt caching, simulated by OpenAI's published rule, for the fake upstream.

OpenAI caches prompt prefixes automatically: a prompt whose first 1,024 tokens or more match a
recent prompt's (same organisation; `prompt_cache_key` narrows the routing) is billed for the
matching prefix as cached, counted in 128-token blocks, and reported as
`usage.prompt_tokens_details.cached_tokens` (Responses: `input_tokens_details.cached_tokens`).
Gemini 2.5's implicit caching works the same way and reports `cachedContentTokenCount`.

The prompt is rendered message by message (tools first, as the provider puts them in front) and
tokenized with o200k_base; `lookup` returns the prompt's token count and its cached prefix, and
remembers the prompt for the next call. A cache is per caller key and `prompt_cache_key`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from memory.recall.tokens import get_counter

__all__ = ["PromptCache", "CacheHit", "MIN_PREFIX", "BLOCK"]

MIN_PREFIX = 1024
BLOCK = 128
KEEP_PROMPTS = 32  # per cache namespace: enough for a conversation's recent prompts and its retries
TTL_SECONDS = 600.0  # OpenAI keeps cached prefixes 5-10 minutes while unused


@dataclass(frozen=True)
class CacheHit:
    prompt_tokens: int
    cached_tokens: int


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass
class PromptCache:
    min_prefix: int = MIN_PREFIX
    ttl_seconds: float = TTL_SECONDS
    _prompts: dict[str, OrderedDict[tuple[int, ...], float]] = field(default_factory=dict)
    _pieces: OrderedDict[str, tuple[int, ...]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _tokens(self, piece: str) -> tuple[int, ...]:
        found = self._pieces.get(piece)
        if found is None:
            found = tuple(get_counter("gpt-4o").encode(piece))
            self._pieces[piece] = found
            if len(self._pieces) > 20_000:
                self._pieces.popitem(last=False)
        return found

    def render(self, messages: list[dict[str, Any]], tools: Any = None) -> list[int]:
        """The prompt as token ids: tool definitions, then each message framed by its role."""
        out: list[int] = []
        if tools:
            out += self._tokens(f"<|tools|>{_text(tools)}<|end|>")
        for m in messages:
            if not isinstance(m, dict):
                continue
            extra = {k: m[k] for k in ("name", "tool_calls", "tool_call_id", "function_call") if m.get(k)}
            out += self._tokens(f"<|start|>{m.get('role')}<|message|>{_text(m.get('content'))}{_text(extra) if extra else ''}<|end|>")
        return out

    def lookup(self, namespace: str, tokens: list[int]) -> CacheHit:
        """The cached prefix of `tokens` in `namespace` (0 below `min_prefix` tokens matched, else
        whole 128-token blocks), remembering this prompt for the next call."""
        now = time.monotonic()
        key = tuple(tokens)
        with self._lock:
            seen = self._prompts.setdefault(namespace, OrderedDict())
            best = 0
            for earlier, when in list(seen.items()):
                if now - when > self.ttl_seconds:
                    del seen[earlier]
                    continue
                best = max(best, _common_prefix(earlier, key))
            seen[key] = now
            seen.move_to_end(key)
            while len(seen) > KEEP_PROMPTS:
                seen.popitem(last=False)
        cached = (best // BLOCK) * BLOCK if best >= self.min_prefix else 0
        return CacheHit(len(tokens), cached)

    def reset(self) -> None:
        with self._lock:
            self._prompts.clear()


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
