"""What Anthropic's Messages API refuses, in its words, and how it bills a prompt: the fake's rules.

Written apart from the proxy's own checks on purpose: the fake is the provider, and a proxy bug
must not be hidden by sharing its code.

Refusals (400 `invalid_request_error` unless said): no key (401 `authentication_error`), no
`anthropic-version` header, a missing `model` / `max_tokens` / `messages`, a role other than user
and assistant, a first message that is not the user's, an empty text block, a `tool_use` not
answered by `tool_result`s in the very next message, a `tool_result` answering no `tool_use` of
the message before, more than 4 `cache_control` breakpoints, a breakpoint on a thinking block, a
1-hour breakpoint after a 5-minute one, a thinking block whose signature is not the one the fake
gave it.

Billing (`CacheLedger`): the prompt is the sequence tools, system blocks, message blocks. Tokens:
o200k_base, the encoding the proxy counts Claude models with (no Claude tokenizer ships offline),
over each block's text (other blocks: their JSON), plus 3 per message; an image costs
width x height / 750 after scaling to a 1,568 px long edge, at most 1,600 (Anthropic's documented
rule; the size read from base64 data's header, 1,600 for a URL or an unreadable header). A breakpoint caches the
prefix ending at its block when that prefix has at least 1,024 tokens; a request reads the longest
cached prefix found at a breakpoint or up to 20 blocks before one (Anthropic's lookback), and
writes what lies between that and its last cacheable breakpoint. Usage: `input_tokens` (after
the last breakpoint, or not cached), `cache_creation_input_tokens` (written, billed 1.25x),
`cache_read_input_tokens` (read, billed 0.1x).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any

from memory.recall.image_size import base64_image_size
from memory.recall.tokens import TiktokenCounter, get_counter

__all__ = ["Refusal", "check_request", "CacheLedger", "Billed", "sign", "MIN_CACHEABLE", "LOOKBACK", "prompt_tokens"]

MIN_CACHEABLE = 1024
LOOKBACK = 20
MAX_BREAKPOINTS = 4
_SECRET = b"fake-anthropic-thinking-signature"
_PER_MESSAGE = 3


def sign(thinking: str) -> str:
    """The signature the fake gives a thinking block (and checks when the block comes back)."""
    return hashlib.sha256(_SECRET + thinking.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Refusal:
    message: str
    status: int = 400
    type: str = "invalid_request_error"

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message}}


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _ids(content: Any, kind: str, key: str) -> list[str]:
    return [str(b.get(key)) for b in _blocks(content) if isinstance(b, dict) and b.get("type") == kind]


def _breakpoint_ttls(body: dict[str, Any]) -> list[str]:
    ttls: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("cache_control"), dict):
                ttls.append(str(value["cache_control"].get("ttl", "5m")))
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit(body.get("tools"))
    visit(body.get("system"))
    visit(body.get("messages"))
    return ttls


def _check_messages(messages: list[Any]) -> Refusal | None:
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return Refusal(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(m.get("content"), (str, list)):
            return Refusal(f"messages.{i}.content: Field required")
        for n, b in enumerate(_blocks(m["content"])):
            if not isinstance(b, dict) or not isinstance(b.get("type"), str):
                return Refusal(f"messages.{i}.content.{n}.type: Field required")
            if b["type"] == "text" and not b.get("text"):
                return Refusal("messages: text content blocks must be non-empty")
            if b["type"] in ("thinking", "redacted_thinking") and "cache_control" in b:
                return Refusal(f"messages.{i}.content.{n}.{b['type']}.cache_control: Extra inputs are not permitted")
            if b["type"] == "thinking" and b.get("signature") != sign(str(b.get("thinking", ""))):
                return Refusal(f"messages.{i}.content.{n}: Invalid `signature` in `thinking` block")
    if messages and messages[0].get("role") != "user":
        return Refusal('messages: first message must use the "user" role')
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            uses = _ids(m["content"], "tool_use", "id")
            if uses and i + 1 < len(messages):
                after = messages[i + 1]
                answered = set(_ids(after["content"], "tool_result", "tool_use_id")) if after["role"] == "user" else set()
                missing = [u for u in uses if u not in answered]
                if missing:
                    return Refusal(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                                   f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
        else:
            asked = set(_ids(messages[i - 1]["content"], "tool_use", "id")) if i > 0 and messages[i - 1]["role"] == "assistant" else set()
            for n, used in enumerate(_ids(m["content"], "tool_result", "tool_use_id")):
                if used not in asked:
                    return Refusal(f"messages.{i}.content.{n}: unexpected `tool_use_id` found in `tool_result` blocks: {used}. "
                                   "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
    return None


def check_request(body: Any, headers: dict[str, str]) -> Refusal | None:
    """Why Anthropic would refuse this `POST /v1/messages`, or None."""
    if not headers.get("x-api-key") and not headers.get("authorization", "").startswith("Bearer "):
        return Refusal("x-api-key header is required", 401, "authentication_error")
    if not headers.get("anthropic-version"):
        return Refusal("anthropic-version: header is required")
    if not isinstance(body, dict):
        return Refusal("The request body is not valid JSON.")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return Refusal(f"{key}: Field required")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return Refusal("messages: at least one message is required")
    refused = _check_messages(body["messages"])
    if refused is not None:
        return refused
    ttls = _breakpoint_ttls(body)
    if len(ttls) > MAX_BREAKPOINTS:
        return Refusal(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(ttls)}.")
    if "5m" in ttls and "1h" in ttls[ttls.index("5m"):]:
        return Refusal("a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block")
    return None


# -- billing ------------------------------------------------------------------------------------------
def _identity(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_identity(v) for v in value]
    return value


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_result":
        content = block.get("content")
        return content if isinstance(content, str) else "\n".join(_block_text(b) for b in _blocks(content) if isinstance(b, dict))
    if kind == "tool_use":
        return str(block.get("name", "")) + json.dumps(block.get("input"), sort_keys=True)
    return json.dumps(_identity(block), sort_keys=True)


def _image_tokens(block: dict[str, Any]) -> int:
    found = block.get("source")
    source: dict[str, Any] = found if isinstance(found, dict) else {}
    size = base64_image_size(source["data"]) if source.get("type") == "base64" and isinstance(source.get("data"), str) else None
    if size is None:
        return 1600
    width, height = size
    if max(width, height) > 1568:
        width, height = round(width * 1568 / max(size)), round(height * 1568 / max(size))
    return min(1600, math.ceil(width * height / 750))


def _block_tokens(counter: TiktokenCounter, block: dict[str, Any]) -> int:
    if block.get("type") == "image":
        return _image_tokens(block)
    if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
        return sum(_block_tokens(counter, b) if isinstance(b, dict) else 0 for b in block["content"])
    return counter.count(_block_text(block))


@dataclass(frozen=True)
class _Unit:
    """One block of the prompt in order: its identity, tokens, and breakpoint TTL if it has one."""

    identity: str
    tokens: int
    ttl: str | None


def _units(body: dict[str, Any]) -> list[_Unit]:
    counter = get_counter(str(body.get("model") or "claude"))
    units: list[_Unit] = []

    def add(where: str, block: dict[str, Any], extra: int = 0) -> None:
        control = block.get("cache_control")
        ttl = str(control.get("ttl", "5m")) if isinstance(control, dict) else None
        identity = where + json.dumps(_identity(block), sort_keys=True, ensure_ascii=False)
        units.append(_Unit(identity, _block_tokens(counter, block) + extra, ttl))

    for tool in body.get("tools") or []:
        add("tool:", {"type": "tool", **tool} if isinstance(tool, dict) else {"type": "tool"})
        units[-1] = _Unit(units[-1].identity, counter.count(json.dumps(_identity(tool), sort_keys=True)), units[-1].ttl)
    for block in _blocks(body.get("system")):
        add("system:", block)
    for m in body.get("messages") or []:
        for n, block in enumerate(_blocks(m.get("content"))):
            add(f"{m.get('role')}{'+' if n == 0 else ''}:", block, _PER_MESSAGE if n == 0 else 0)
    return units


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt's token count as the fake bills it (what count_tokens answers)."""
    return sum(u.tokens for u in _units(body))


@dataclass(frozen=True)
class Billed:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    one_hour: bool = False

    def usage(self, output_tokens: int) -> dict[str, Any]:
        written = self.cache_creation_input_tokens
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": written,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": 0 if self.one_hour else written,
                                   "ephemeral_1h_input_tokens": written if self.one_hour else 0},
                "output_tokens": output_tokens}


@dataclass
class CacheLedger:
    """The prefixes cached so far, per API key (Anthropic caches per organisation)."""

    _cached: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self._cached.clear()

    def bill(self, key: str, body: dict[str, Any]) -> Billed:
        units = _units(body)
        prefix: list[str] = []
        cumulative: list[int] = []
        chain = hashlib.sha256(b"anthropic-prompt")
        total = 0
        for unit in units:
            chain.update(unit.identity.encode("utf-8"))
            prefix.append(chain.hexdigest())
            total += unit.tokens
            cumulative.append(total)
        marks = [i for i, u in enumerate(units) if u.ttl is not None]
        with self._lock:
            read_at = -1
            for mark in marks:
                for i in range(mark, max(-1, mark - LOOKBACK), -1):
                    if (key, prefix[i]) in self._cached:
                        read_at = max(read_at, i)
                        break
            cacheable = [m for m in marks if cumulative[m] >= MIN_CACHEABLE]
            for m in cacheable:
                self._cached[(key, prefix[m])] = cumulative[m]
        read = cumulative[read_at] if read_at >= 0 else 0
        last = cacheable[-1] if cacheable else -1
        written = max(0, cumulative[last] - read) if last >= 0 else 0
        one_hour = last >= 0 and units[last].ttl == "1h"
        return Billed(total - read - written, written, read, one_hour)
