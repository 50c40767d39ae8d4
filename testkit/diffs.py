"""Applying a unified diff (what a model reading memory's diff of a changed context message does),
for tests and benchmarks that check the current text is what the prompt conveys."""

from __future__ import annotations

import re

__all__ = ["apply_diff"]

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def apply_diff(old: str, message: str) -> str:
    """`old` with the unified diff in `message` (after its first line, a header) applied. Raises
    ValueError when a context or removed line does not match `old`: the diff is not of this text."""
    lines, out, at = old.splitlines(keepends=True), [], 0
    for line in message.split("\n", 1)[1].splitlines(keepends=True):
        hunk = _HUNK.match(line)
        if hunk:
            start = int(hunk.group(1)) - (0 if hunk.group(2) == "0" else 1)
            out += lines[at:start]
            at = start
        elif line.startswith(("--- ", "+++ ")):
            continue
        elif line[:1] in ("-", " "):
            if at >= len(lines) or lines[at].rstrip("\n") != line[1:].rstrip("\n"):
                raise ValueError(f"the diff does not apply at line {at + 1}: {line!r}")
            if line[:1] == " ":
                out.append(lines[at])
            at += 1
        elif line.startswith("+"):
            out.append(line[1:] if line.endswith("\n") else line[1:] + "\n")
    return "".join(out + lines[at:])
