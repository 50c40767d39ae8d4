"""The text that stands in for a compacted tool output or a long tool-call argument.

Every rendering is a pure, deterministic function of the content it replaces (and of the call that
produced it), so a prompt built twice from the same messages is byte-identical and the provider's
prompt cache keeps hitting. Each one says what it was, where the whole of it is (a content address,
`sha256:<12 hex>`, of the text memory stores with the session) and how to get it back: the agent
re-runs its own tool. Nothing here names a tool the client did not declare.

    stub     [compacted output of bash {"command": "cat a.py"}: 120 lines, 4,211 chars, artifact
             sha256:…; first and last lines below; re-run the tool to see it again]
    pointer  [same output as the later call call_x of bash {...} below (artifact sha256:…); not repeated]
    diff     [output of bash {...}: the earlier call call_y's output above (artifact sha256:…) with
             this unified diff applied; unchanged lines not repeated] + the diff
    argument a long string inside tool-call arguments: its head, a marker with its size and
             artifact id, its tail (the JSON stays valid, the call keeps its name and id)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Any

__all__ = ["artifact_id", "call_label", "stub_text", "pointer_text", "diff_text", "shorten_arguments", "shorten_text",
           "same_output", "STUB_MARK"]

# Every rendering starts with this, so a reader (or a test) can tell memory's text from a tool's.
STUB_MARK = "[memory-runtime"
LINE_CHARS = 200
LABEL_CHARS = 240


def artifact_id(text: str) -> str:
    """The content address memory gives `text` (the same text has the same id in every session)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def call_label(name: str, arguments: str) -> str:
    """`name arguments`, the arguments cut to a readable length (whole when short)."""
    args = " ".join(arguments.split())
    if len(args) > LABEL_CHARS:
        args = args[: LABEL_CHARS - 1] + "…"
    return f"{name} {args}".strip()


def _line(text: str) -> str:
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


def stub_text(content: str, label: str, head: int, tail: int) -> str:
    """A compacted tool output: what produced it, its size and address, its first `head` and last
    `tail` lines (each cut to LINE_CHARS characters)."""
    lines = content.splitlines()
    shown_head = lines[:head]
    shown_tail = lines[max(head, len(lines) - tail):]
    hidden = len(lines) - len(shown_head) - len(shown_tail)
    parts = [f"{STUB_MARK}: compacted output of {label}: {len(lines):,} lines, {len(content):,} chars, artifact "
             f"{artifact_id(content)}; first and last lines below; re-run the tool to see it again]"]
    parts += [_line(x) for x in shown_head]
    if hidden:
        parts.append(f"[… {hidden:,} lines not shown …]")
    parts += [_line(x) for x in shown_tail]
    return "\n".join(parts)


# The Codex CLI prints a header of its own above every command's output (`Chunk ID: …`, `Wall
# time: …`, exit code, token count, `Output:`); the chunk id and the wall time differ on every run,
# so the same file read twice never came out the same whole.
_RUN_HEADER = re.compile(r"\AChunk ID: [^\n]*\nWall time: [^\n]*\n")


def same_output(text: str) -> str:
    """What makes two tool outputs the same output: the text less the part of a run header that
    differs on every run (the Codex CLI's chunk id and wall time; its exit code stays)."""
    return _RUN_HEADER.sub("", text, count=1)


def pointer_text(content: str, label: str, target_call: str, exact: bool = True) -> str:
    """An output the same as a later one that goes up verbatim (identical, or but for its run
    header's chunk id and wall time: `same_output`)."""
    same = "identical to" if exact else "the same, but for its chunk id and wall time, as"
    return (f"{STUB_MARK}: output of {label}: {same} the output of the later call {target_call} below "
            f"(artifact {artifact_id(content)}, {len(content):,} chars); not repeated]")


def diff_text(base: str, content: str, label: str, base_call: str, max_share: float) -> str | None:
    """`content` as a unified diff against `base` (an earlier output still verbatim above), or None
    when the diff would not be smaller than `max_share` of the content."""
    diff = "".join(difflib.unified_diff(base.splitlines(keepends=True), content.splitlines(keepends=True),
                                        fromfile=base_call, tofile="this call", n=2))
    if not diff or len(diff) > max_share * len(content):
        return None
    if not diff.endswith("\n"):
        diff += "\n"
    return (f"{STUB_MARK}: output of {label}: the output of the earlier call {base_call} above (artifact "
            f"{artifact_id(base)}) with this diff applied; unchanged lines not repeated; this output is artifact "
            f"{artifact_id(content)}]\n{diff.rstrip(chr(10))}")


def shorten_text(text: str, keep: int) -> str:
    """`text` as its first and last `keep` characters around a marker naming its size and address;
    unchanged when that would not be shorter."""
    if len(text) <= 2 * keep + 120:
        return text
    return (f"{text[:keep]}\n{STUB_MARK}: {len(text) - 2 * keep:,} of {len(text):,} chars elided here; whole text is artifact "
            f"{artifact_id(text)}]\n{text[-keep:]}")


def shorten_arguments(arguments: str, limit: int, keep: int) -> str:
    """Tool-call arguments with every string value longer than `limit` characters shortened
    (`shorten_text`); the JSON stays valid and every key stays. Arguments that are not a JSON
    object (a custom tool's free-form input) are shortened as text."""
    if len(arguments) <= limit:
        return arguments
    try:
        value = json.loads(arguments)
    except ValueError:
        return shorten_text(arguments, keep)
    if not isinstance(value, dict):
        return arguments

    def walk(v: Any) -> Any:
        if isinstance(v, str) and len(v) > limit:
            return shorten_text(v, keep)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    out = json.dumps(walk(value), ensure_ascii=False)
    return out if len(out) < len(arguments) else arguments
