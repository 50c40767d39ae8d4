"""Split text into retrieval chunks.

Messages stay whole when short; long texts split on paragraph boundaries; code and files split on
line groups with their line range kept, so an excerpt can say where it came from. Diffs split by hunk.
Target size is ~100-300 tokens: large enough to carry a fact with its context, small enough that an
excerpt of a long file does not swallow the budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable

__all__ = ["Chunk", "chunk_text", "MAX_CHUNK_TOKENS"]

MAX_CHUNK_TOKENS = 240
MIN_CHUNK_TOKENS = 60
_HUNK = re.compile(r"^@@ ", re.M)


@dataclass(frozen=True)
class Chunk:
    text: str
    start_line: int  # 1-based, inclusive
    end_line: int
    probes: tuple[str, ...] = ()


PROBE_MIN_CHUNK_TOKENS = 80
PROBE_MAX_TOKENS = 48
_PROSE_WORD = re.compile(r"[^\W\d_]{2,}", re.U)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _probes(text: str, count: Callable[[str], int]) -> tuple[str, ...]:
    """Short prose windows inside a long chunk (comments, docstrings, config notes, sentences).

    A sentence embedding of a 240-token block of code barely reflects the one comment line that
    states a fact; embedding that line's window on its own lets a paraphrased question find it,
    while the chunk around it is what gets rendered."""
    probes: list[str] = []
    buf: list[str] = []
    marker: str | None = None
    for line in text.split("\n") + [""]:
        raw = line.strip()
        stripped = raw.lstrip("#/*-\"' ").strip()
        line_marker = raw[: len(raw) - len(raw.lstrip("#/*-\"' "))].strip()
        # A comment next to a docstring or another kind of comment starts its own probe.
        if buf and (not _is_prose(stripped) or line_marker != marker):
            probes.append(" ".join(buf))
            buf = []
        if not _is_prose(stripped):
            continue
        marker = line_marker
        for piece in (p for p in _SENTENCE.split(stripped) if p):
            if buf and count(" ".join(buf + [piece])) > PROBE_MAX_TOKENS:
                probes.append(" ".join(buf))
                buf = []
            buf.append(piece)
    return tuple(p for p in probes if p != text.strip())


_CODE_START = frozenset(
    "from import def class return if elif else for while with async await raise try except finally "
    "const let var function fn pub public private protected package use func struct impl type interface "
    "select insert update delete create".split()
)
_IDENTIFIER = re.compile(r"\b(?:[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*|\w+_\w+)\b")


def _is_prose(line: str) -> bool:
    """A line of natural language (a comment, a sentence, a config note), not code."""
    words = _PROSE_WORD.findall(line)
    if len(words) < 4 or line.split(" ", 1)[0].lower() in _CODE_START:
        return False
    if len(_IDENTIFIER.findall(line)) * 3 > len(words):  # camelCase / snake_case: code, not prose
        return False
    plain = sum(1 for ch in line if ch.isalpha() or ch.isspace() or ch in ",.;'()-")
    return plain / len(line) >= 0.85 and not line.rstrip().endswith(("{", "[", "(", "\\"))


def _with_probes(chunks: list[Chunk], count: Callable[[str], int]) -> list[Chunk]:
    return [
        Chunk(c.text, c.start_line, c.end_line, _probes(c.text, count)) if count(c.text) >= PROBE_MIN_CHUNK_TOKENS else c
        for c in chunks
    ]


def _line_groups(lines: list[str], count: Callable[[str], int], first_line: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    buf: list[str] = []
    buf_tokens = 0
    start = first_line
    for offset, line in enumerate(lines):
        tokens = count(line) + 1
        # A blank line is a natural boundary once the chunk has some body.
        boundary = not line.strip() and buf_tokens >= MIN_CHUNK_TOKENS * 2
        if buf and (buf_tokens + tokens > MAX_CHUNK_TOKENS or boundary):
            chunks.append(Chunk("\n".join(buf), start, first_line + offset - 1))
            buf, buf_tokens, start = [], 0, first_line + offset
        if tokens > MAX_CHUNK_TOKENS:
            # One enormous line (minified code, a log): cut it by characters.
            step = max(200, len(line) * MAX_CHUNK_TOKENS // tokens)
            for i in range(0, len(line), step):
                chunks.append(Chunk(line[i : i + step], first_line + offset, first_line + offset))
            start = first_line + offset + 1
            continue
        buf.append(line)
        buf_tokens += tokens
    if buf and any(s.strip() for s in buf):
        chunks.append(Chunk("\n".join(buf), start, first_line + len(lines) - 1))
    return chunks


def chunk_text(text: str, count: Callable[[str], int], kind: str = "text", first_line: int = 1) -> list[Chunk]:
    """Split `text` into chunks (with prose probes inside long ones); `count` gives token counts.
    `kind` is "message", "diff" or "text" (code, files, docs and tool output are line-oriented)."""
    return _with_probes(_split(text, count, kind, first_line), count)


def _split(text: str, count: Callable[[str], int], kind: str, first_line: int) -> list[Chunk]:
    if not text.strip():
        return []
    lines = text.split("\n")
    if count(text) <= MAX_CHUNK_TOKENS:
        return [Chunk(text, first_line, first_line + len(lines) - 1)]
    if kind == "diff" and _HUNK.search(text):
        chunks: list[Chunk] = []
        starts = [i for i, line in enumerate(lines) if line.startswith("@@ ")]
        header = lines[: starts[0]] if starts else []
        bounds = starts + [len(lines)]
        for a, b in zip(bounds, bounds[1:]):
            hunk = header[-2:] + lines[a:b] if header else lines[a:b]
            for piece in _line_groups(hunk, count, first_line + a):
                chunks.append(piece)
        return chunks
    return _line_groups(lines, count, first_line)
