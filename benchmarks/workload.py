"""A deterministic generator of realistic coding-assistant session events for the scale runs.

Chat turns are short sentences about this project's own identifiers with numbers that make every
one unique (so every message is a new chunk to store, index and embed); every 25th event is a
tool output; every 50th a 50-line window of the project's source (a small pool of files that
real sessions also resend, so those dedupe by content hash as they would in use).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

from .corpus import REPO_ROOT, SOURCE_DIRS, code_windows

__all__ = ["session_events", "queries", "chat_turns"]

_IDENT = re.compile(r"\b(?:def|class)\s+([A-Za-z_][A-Za-z0-9_]{3,})")
_USER = (
    "Why does {f} in {m} return {n} items when the {o} is empty?",
    "Can you add a test for {f} that covers the {o} case with {n} rows?",
    "The {o} check in {m} fails after {n} retries; is {f} the culprit?",
    "Please rename {f} to something clearer and update the {o} docs in {m}.",
    "How slow is {f} on a {o} of {n} entries, and can we cache it?",
    "I changed {m} so {f} skips the {o}; does anything else depend on that ({n})?",
)
_ASSISTANT = (
    "{f} in {m} walks the {o} once, so with {n} entries it stays linear; the empty case returns early.",
    "I added a test for {f}: it builds a {o} of {n} rows and checks the order and the totals.",
    "The failure comes from {f}: after {n} retries the {o} is stale. Refreshing it before the loop fixes it.",
    "Renamed {f}; {m} and its callers are updated, and the {o} section of the docs now says what it does ({n} lines).",
    "{f} costs about {n} microseconds per {o} entry; caching the parsed form in {m} removes most of it.",
    "Only {m} calls {f} on the {o} path; skipping it is safe, the other {n} call sites never reach it.",
)
_OBJECTS = ("session", "budget", "manifest", "chunk list", "token count", "transcript", "config", "cache",
            "index", "request", "stream", "header", "queue", "vector table", "migration", "diff")


def _identifiers() -> tuple[list[str], list[str]]:
    names: set[str] = set()
    modules: list[str] = []
    for d in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / d).glob("*.py")):
            modules.append(path.relative_to(REPO_ROOT).as_posix())
            names.update(_IDENT.findall(path.read_text(encoding="utf-8")))
    return sorted(names) or ["compile"], modules or ["memory/runtime.py"]


def _fill(rng: random.Random, template: str, names: list[str], modules: list[str]) -> str:
    return template.format(f=rng.choice(names), m=rng.choice(modules), o=rng.choice(_OBJECTS), n=rng.randint(2, 99_999))


def session_events(count: int, seed: int = 7, unique: int | None = None) -> Iterator[dict[str, Any]]:
    """`count` events in order: user/assistant turns, tool outputs, source windows. With `unique`,
    event i >= unique repeats event i % unique verbatim: every event is still stored, chunked and
    indexed, but only the first `unique` texts need embedding (vectors are keyed by content hash)."""
    if unique is not None and count > unique:
        head = list(session_events(unique, seed))
        for i in range(count):
            yield head[i % unique]
        return
    rng = random.Random(seed)
    names, modules = _identifiers()
    windows = code_windows(60)
    for i in range(count):
        if i % 50 == 49:
            w = windows[(i // 50) % len(windows)]
            yield {"type": "snippet", "payload": {"source": w.source, "content": w.text}}
        elif i % 25 == 24:
            passed, failed = rng.randint(10, 400), rng.randint(0, 3)
            text = f"pytest: {passed} passed, {failed} failed in {rng.uniform(0.5, 90):.2f}s (run {i})"
            if failed:
                text += f"; FAILED tests/test_{rng.choice(names).lower()}.py::test_{rng.choice(_OBJECTS).replace(' ', '_')}"
            yield {"type": "tool_output", "payload": {"content": text}}
        elif i % 2 == 0:
            yield {"type": "user_message", "payload": {"content": _fill(rng, rng.choice(_USER), names, modules)}}
        else:
            yield {"type": "assistant_message", "payload": {"content": _fill(rng, rng.choice(_ASSISTANT), names, modules)}}


def queries(count: int, seed: int = 99) -> list[str]:
    """Fresh user questions in the same style, for compile latency."""
    rng = random.Random(seed)
    names, modules = _identifiers()
    return [_fill(rng, _USER[i % len(_USER)], names, modules) for i in range(count)]


def chat_turns(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """`count` alternating user/assistant messages (no artifacts): a plain chat history."""
    rng = random.Random(seed)
    names, modules = _identifiers()
    return [
        {"type": "user_message" if i % 2 == 0 else "assistant_message",
         "payload": {"content": _fill(rng, rng.choice(_USER if i % 2 == 0 else _ASSISTANT), names, modules)}}
        for i in range(count)
    ]
