"""What the provider reported for a call, and a session's usage totals as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memory.records import UsageTotals

__all__ = ["Usage", "totals_dict"]


@dataclass(frozen=True)
class Usage:
    """What the provider reported for one call (None where it reported nothing)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None

    @classmethod
    def from_openai(cls, usage: Any) -> Usage:
        """From an OpenAI `usage` object (chat: prompt_tokens / prompt_tokens_details; Responses:
        input_tokens / input_tokens_details), or the chat form of Anthropic's, which adds
        `cache_creation_input_tokens` (tokens written to the provider's cache)."""
        if not isinstance(usage, dict):
            return cls()
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        return cls(_int(prompt), _int(completion), _int(cached), _int(usage.get("cache_creation_input_tokens")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def totals_dict(totals: UsageTotals) -> dict[str, Any]:
    out: dict[str, Any] = totals.as_dict()
    out["saved_tokens"] = max(0, totals.sent_tokens - totals.forwarded_tokens)
    out["cached_share"] = round(totals.cached_tokens / totals.prompt_tokens, 4) if totals.prompt_tokens else None
    return out
