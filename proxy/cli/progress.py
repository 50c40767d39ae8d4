"""One small progress bar for the long commands (export, migrate, provisioning), on stderr so the
command's own output on stdout stays clean: redrawn in place on a terminal; in a log (not a
terminal), one line each tenth of the way, so a CI log shows progress without thousands of lines."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """`bar.update(done, note)` after each step of `total`; `close()` (or the `with` block) ends
    the line."""

    def __init__(self, label: str, total: int, unit: str = "", stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.total = max(0, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._started = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._tenth = -1
        self._open = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self, note: str = "") -> str:
        filled = self.width * self.done // self.total if self.total else self.width
        unit = f" {self.unit}" if self.unit else ""
        elapsed = time.monotonic() - self._started
        text = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}{unit} {elapsed:.1f}s"
        return f"{text} {note}".rstrip()

    def update(self, done: int, note: str = "") -> None:
        self.done = min(max(0, done), self.total) if self.total else done
        if self._tty:
            print(f"\r{self.line(note)}\x1b[K", end="", file=self.stream, flush=True)
            self._open = True
            return
        tenth = 10 * self.done // self.total if self.total else 10
        if tenth != self._tenth:
            self._tenth = tenth
            print(self.line(note), file=self.stream, flush=True)

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.update(self.done + steps, note)

    def close(self) -> None:
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False
