"""Small helpers shared by the benchmark sections: percentiles, timing, message text, progress."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

__all__ = ["splice_section", "BUDGETS", "MODEL", "Percentiles", "percentiles", "messages_text", "canonical", "content_words", "progress", "Stopwatch", "rss_mb", "reset_peak_rss",
           "peak_rss_mb"]

T = TypeVar("T")
BUDGETS = (800, 2000, 8000)
MODEL = "gpt-4o-mini"
_STOP = frozenset("a an the is are was were be to of in on for by with and or how what when where who why does do "
                  "did it its this that they them their before after again need needs".split())


@dataclass(frozen=True)
class Percentiles:
    """Latency summary in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float


def content_words(text: str) -> set[str]:
    """Lower-case words of `text` without stop words: a question that shares none of them with a
    fact cannot be answered by keyword search alone."""
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def percentiles(samples_ms: Iterable[float]) -> Percentiles:
    values = np.asarray(list(samples_ms), dtype=np.float64)
    if values.size == 0:
        return Percentiles(0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return Percentiles(int(values.size), float(p50), float(p95), float(p99), float(values.mean()), float(values.max()))


def messages_text(messages: list[dict[str, Any]]) -> str:
    """All text a model would read in a message list (string content and text parts), one block
    per message, so evidence can be checked by substring."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n\n".join(parts)


def canonical(value: Any) -> str:
    """A byte-stable rendering for identity checks (determinism)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def progress(items: Iterable[T], desc: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """A tqdm bar on stderr, or the plain iterable when disabled."""
    if not enabled:
        yield from items
        return
    yield from tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.ms` — wall time of a block in milliseconds."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.ms = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self._start) * 1000.0


def _status_kb(field: str) -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), in MiB."""
    return _status_kb("VmRSS") / 1024.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return _status_kb("VmHWM") / 1024.0


def reset_peak_rss() -> None:
    """Start `peak_rss_mb` over from the current RSS (Linux: /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def splice_section(markdown: str, letter: str, section: Sequence[str]) -> str:
    """`markdown` (a RESULTS.md) with its section `letter` (the text from its `## <letter>. ` heading
    to the next `## ` heading) replaced by `section`, or `section` appended when it has none: how a
    benchmark that owns one section writes it without touching the others."""
    text = "\n".join(section).rstrip("\n") + "\n"
    start = markdown.find(f"\n## {letter}. ")
    if start < 0:
        return markdown.rstrip("\n") + "\n\n" + text
    end = markdown.find("\n## ", start + 1)
    return markdown[: start + 1] + text + (markdown[end:] if end >= 0 else "")
