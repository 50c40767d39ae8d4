"""Deterministic workload text built from this project's own source files: 50-line code windows,
and chat turns about them. Used by the session scenarios and the scale generator."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CodeWindow", "code_windows", "user_turn", "assistant_turn", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("memory", "proxy")
_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


@dataclass(frozen=True)
class CodeWindow:
    path: str  # repo-relative
    start: int  # 1-based first line
    end: int
    text: str

    @property
    def source(self) -> str:
        return f"{self.path}#L{self.start}-{self.end}"

    def names(self) -> list[str]:
        return _DEF.findall(self.text)


def code_windows(count: int, lines: int = 50, root: Path = REPO_ROOT) -> list[CodeWindow]:
    """`count` windows of `lines` lines (the last window of a file may be shorter, down to 10) over the project's source files in sorted order, cycling
    when the files run out (a cycled window repeats content and source exactly)."""
    files = sorted(p for d in SOURCE_DIRS for p in (root / d).rglob("*.py") if p.stat().st_size > 0)
    pool: list[CodeWindow] = []
    for path in files:
        text_lines = path.read_text(encoding="utf-8").splitlines()
        for start in range(0, len(text_lines), lines):
            chunk = text_lines[start : start + lines]
            if len(chunk) >= min(10, lines):
                rel = path.relative_to(root).as_posix()
                pool.append(CodeWindow(rel, start + 1, start + len(chunk), "\n".join(chunk)))
    if not pool:
        raise RuntimeError(f"no source files under {root}")
    return [pool[i % len(pool)] for i in range(count)]


def user_turn(window: CodeWindow) -> str:
    return f"Let's go through {window.path} lines {window.start}-{window.end}. What does this part do, and is anything off?"


def assistant_turn(window: CodeWindow) -> str:
    names = window.names()
    if names:
        listed = ", ".join(f"`{n}`" for n in names[:4])
        return f"That part of {window.path} defines {listed}. The logic reads correctly; I would keep it as is."
    return f"That part of {window.path} is supporting code (constants and helpers). Nothing looks off."
