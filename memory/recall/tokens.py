"""Exact token counting with tiktoken, offline, and OpenAI's chat-message overhead formula.

The BPE rank files ship inside this package (`memory/tokenizers/`, see SOURCE.md there) and are read
by path, sha256-checked, instead of through tiktoken's download cache: no environment variable has
to be set, no other package is needed, and nothing is ever fetched. The regex patterns below are
tiktoken's own (tiktoken_ext), copied because tiktoken only exposes them through its download-based
constructors; a test checks our encodings token-for-token against tiktoken's.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

import tiktoken

from memory.errors import InvalidArgumentError, MemoryRuntimeError

__all__ = ["TokenCounter", "TiktokenCounter", "encoding_name_for_model", "get_counter", "stored_counter", "EXTRA_TOKENS_KEY",
           "STORED_ENCODING"]

# Reply priming: every chat completion prompt is followed by <|start|>assistant<|message|>.
REPLY_PRIMING_TOKENS = 3
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
# Vision input cost for one image part; OpenAI's fixed "low" cost, and its 512px-tile default otherwise.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_DEFAULT = 765
# A message may say how many tokens it carries beyond what this counter sees (an API whose images
# ride outside the chat content, such as Anthropic's blocks); they are added to its count.
EXTRA_TOKENS_KEY = "x_extra_tokens"

_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_ENCODINGS: dict[str, dict[str, Any]] = {
    # name: BPE file in memory/tokenizers/, sha256 of its content, pattern, specials
    "o200k_base": {
        "file": "o200k_base.tiktoken",
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat": _O200K_PAT,
        "special": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
    "cl100k_base": {
        "file": "cl100k_base.tiktoken",
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat": _CL100K_PAT,
        "special": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    },
}
# The encoding of the counts stored with the rows (a chunk's text, a message under the chat formula),
# taken once at ingest: gpt-4o's and every later OpenAI model's. A prompt for a model on another
# encoding counts again (and caches in memory).
STORED_ENCODING = "o200k_base"
_BPE_DIR = Path(__file__).resolve().parent / "tokenizers"
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada")


class TokenCounter(Protocol):
    """Counts tokens of text and of OpenAI-format chat messages for one encoding."""

    encoding_name: str

    def count(self, text: str) -> int: ...

    def message_tokens(self, message: dict[str, Any]) -> int: ...

    def messages_tokens(self, messages: list[dict[str, Any]]) -> int: ...


def encoding_name_for_model(model: str) -> str:
    """Pick the tiktoken encoding for a model name: cl100k_base for gpt-4 / gpt-3.5 and the older
    embedding models, o200k_base for everything else (gpt-4o, 4.1, 5, o-series, and as the estimate
    for Gemini and unknown models)."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidArgumentError("model must be a non-empty string")
    name = model.strip().lower().split("/")[-1]
    return "cl100k_base" if name == "gpt-4" or name.startswith(_CL100K_PREFIXES) else "o200k_base"


def _read_ranks(path: Path, sha256: str) -> dict[bytes, int]:
    """The BPE ranks of a `.tiktoken` file ("<base64 token> <rank>" per line), after checking its
    sha256. Parsed here rather than by `tiktoken.load`, which copies every file it reads into a cache
    folder that the process environment may point anywhere."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise MemoryRuntimeError(f"tiktoken BPE file {path} fails its sha256 check; reinstall memory-runtime")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def _encoding(name: str) -> tiktoken.Encoding:
    spec = _ENCODINGS[name]
    path = _BPE_DIR / spec["file"]
    if not path.exists():
        raise MemoryRuntimeError(f"tiktoken BPE file for {name} missing at {path}; reinstall memory-runtime")
    ranks = _read_ranks(path, spec["sha256"])
    return tiktoken.Encoding(name=name, pat_str=spec["pat"], mergeable_ranks=ranks, special_tokens=spec["special"])


class TiktokenCounter:
    """A `TokenCounter` backed by a local tiktoken encoding."""

    def __init__(self, encoding_name: str) -> None:
        self.encoding_name = encoding_name
        self._enc = _encoding(encoding_name)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._enc.encode_ordinary(text))

    def count_numbered(self, head: str, number: int, tail: str) -> int:
        """`count(f"{head}{number}{tail}")` (a label such as "[turn 812 user]") from remembered
        counts of its pieces: the head, the number's digits in groups of three, the tail. Exact
        because tiktoken splits text into pieces by its pattern before BPE, and BPE never merges
        across pieces: a digit run is always its own pieces (of up to three digits), so the split
        falls at the number's edges, and the head and tail split there as they do alone, unless
        the head ends in a digit or in two whitespace characters (a lookahead would see the digit)
        or the tail starts with a digit: those are counted whole. A compile labels ~400 evidence
        candidates, each with its own turn: tiktoken took a third of a warm compile at 10k events."""
        digits = str(number)
        if number < 0 or head[-1:].isnumeric() or head[-2:].isspace() or tail[:1].isnumeric():
            return self.count(f"{head}{digits}{tail}")
        name = self.encoding_name
        total = _piece_tokens(name, head) + _piece_tokens(name, tail)
        for i in range(0, len(digits), 3):
            total += _piece_tokens(name, digits[i : i + 3])
        return total

    def encode(self, text: str) -> list[int]:
        """The token ids of `text` (special tokens read as plain text)."""
        return self._enc.encode_ordinary(text) if text else []

    def content_tokens(self, content: Any) -> int:
        if content is None:
            return 0
        if isinstance(content, str):
            return self.count(content)
        if isinstance(content, list):
            total = 0
            for part in content:
                if not isinstance(part, dict):
                    total += self.count(str(part))
                elif part.get("type") == "text":
                    total += self.count(str(part.get("text", "")))
                elif part.get("type") == "image_url":
                    detail = (part.get("image_url") or {}).get("detail") if isinstance(part.get("image_url"), dict) else None
                    total += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_DEFAULT
                else:
                    total += self.count(json.dumps(part, sort_keys=True, ensure_ascii=False))
            return total
        return self.count(json.dumps(content, sort_keys=True, ensure_ascii=False))

    def message_tokens(self, message: dict[str, Any]) -> int:
        """Tokens of one message under OpenAI's chat formula, without reply priming. Tool calls are
        counted as their JSON text (OpenAI does not publish their exact framing)."""
        total = TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += self.content_tokens(value)
            elif key in ("role", "tool_call_id"):
                total += self.count(str(value))
            elif key == "name":
                total += self.count(str(value)) + TOKENS_PER_NAME
            elif key == "tool_calls" and value:
                total += self.count(json.dumps(value, sort_keys=True, ensure_ascii=False))
            elif key == "function_call" and value:
                total += self.count(json.dumps(value, sort_keys=True, ensure_ascii=False))
            elif key == EXTRA_TOKENS_KEY and isinstance(value, int) and value > 0:
                total += value
        return total

    def messages_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of a whole message list, including the reply priming."""
        return sum(self.message_tokens(m) for m in messages) + REPLY_PRIMING_TOKENS


@lru_cache(maxsize=4096)
def _piece_tokens(encoding_name: str, piece: str) -> int:
    """Tokens of a short recurring piece of text (see `TiktokenCounter.count_numbered`)."""
    return len(_encoding(encoding_name).encode_ordinary(piece)) if piece else 0


@cache
def get_counter(model: str) -> TiktokenCounter:
    """The shared counter for a model name (encodings are loaded once per process)."""
    return TiktokenCounter(encoding_name_for_model(model))


def stored_counter() -> TiktokenCounter:
    """The counter of `STORED_ENCODING`: what ingest counts with, and what may read stored counts."""
    return _stored_counter(STORED_ENCODING)


@cache
def _stored_counter(encoding_name: str) -> TiktokenCounter:
    return TiktokenCounter(encoding_name)
