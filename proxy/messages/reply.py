"""A reply's content and usage: assembled from the stream's events, and read for memory.

`Assembler` rebuilds the Message a stream describes (`message_start`, `content_block_start` /
`_delta` / `_stop`, `message_delta`, `message_stop`): text, tool_use input (from its
`input_json_delta` pieces), thinking with its signature, citations. `memory_usage` turns
Anthropic's usage into the chat form memory records: prompt tokens are everything the prompt was
billed as (`input_tokens` after the last breakpoint, `cache_creation_input_tokens`,
`cache_read_input_tokens`), of which the cached ones are the reads.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Assembler", "memory_usage", "cache_figures"]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def cache_figures(usage: dict[str, Any] | None) -> tuple[int, int]:
    """(cache_creation_input_tokens, cache_read_input_tokens) of an Anthropic usage."""
    usage = usage or {}
    return _int(usage.get("cache_creation_input_tokens")), _int(usage.get("cache_read_input_tokens"))


def memory_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Anthropic's usage in the chat form memory and the metrics read (None for no usage)."""
    if not isinstance(usage, dict):
        return None
    written, read = cache_figures(usage)
    return {"prompt_tokens": _int(usage.get("input_tokens")) + written + read, "completion_tokens": _int(usage.get("output_tokens")),
            "prompt_tokens_details": {"cached_tokens": read}, "cache_creation_input_tokens": written}


@dataclass
class Assembler:
    """Feed it a stream's events in order; `message` is the reply once `message_stop` arrived."""

    started: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    pieces: dict[int, list[str]] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False

    def feed(self, name: str, payload: dict[str, Any]) -> None:
        if name == "message_start" and isinstance(payload.get("message"), dict):
            self.started = copy.deepcopy(payload["message"])
            self.usage.update(self.started.get("usage") or {})
        elif name == "content_block_start" and isinstance(payload.get("content_block"), dict):
            self.blocks[int(payload.get("index", len(self.blocks)))] = copy.deepcopy(payload["content_block"])
        elif name == "content_block_delta":
            self._delta(int(payload.get("index", 0)), payload.get("delta") or {})
        elif name == "content_block_stop":
            index = int(payload.get("index", 0))
            if index in self.pieces and index in self.blocks:
                text = "".join(self.pieces.pop(index))
                self.blocks[index]["input"] = json.loads(text) if text.strip() else self.blocks[index].get("input", {})
        elif name == "message_delta":
            if self.started is not None:
                self.started.update(payload.get("delta") or {})
            self.usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
        elif name == "message_stop":
            self.stopped = True

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self.blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = str(block.get("text", "")) + str(delta.get("text", ""))
        elif kind == "input_json_delta":
            self.pieces.setdefault(index, []).append(str(delta.get("partial_json", "")))
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking", "")) + str(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block["signature"] = str(block.get("signature", "")) + str(delta.get("signature", ""))
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    @property
    def content(self) -> list[dict[str, Any]]:
        return [self.blocks[i] for i in sorted(self.blocks)]
