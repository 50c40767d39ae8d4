"""Is the SQLite connection still writing into the files at its path?

A connection keeps writing happily to a database file that was deleted or replaced under it, and all
of it is gone at the next start. The same holds for the `-wal` file, where a commit lands first: a
deleted WAL takes every commit since the last checkpoint with it (a kill -9 later, they are gone).
`OpenFiles` remembers the identity (device, inode) of both as the connection opened them, and says
why they no longer match; the store asks before every commit and for /healthz. It costs two `stat`
calls per commit (`python -m benchmarks.file_checks`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OpenFiles", "WAL_SUFFIX"]

WAL_SUFFIX = "-wal"
_NOT_STORED = "(nothing is being stored)"


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class OpenFiles:
    """The database file and its WAL as the connection opened them (nothing for ":memory:")."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Per file: what it is, its path as shown and as checked (expanded once: the check runs on
        # every commit), its identity, and what a restart does once it was deleted or replaced.
        self._watched: list[tuple[str, str, str, tuple[int, int], str, str]] = []

    def record(self) -> None:
        """Remember the files at the path; called once the connection is open in WAL mode (whose
        first read created the -wal file)."""
        if self.path == ":memory:":
            return
        file = str(Path(self.path).expanduser())
        self._watched = [("database file", self.path, file, _identity(file), f"start a new one {_NOT_STORED}", f"use the new file {_NOT_STORED}")]
        wal = file + WAL_SUFFIX
        try:
            self._watched.append(("WAL file", self.path + WAL_SUFFIX, wal, _identity(wal),
                                  "store again (nothing is being stored, and what it held since the last checkpoint is lost at exit)",
                                  f"store again {_NOT_STORED}"))
        except FileNotFoundError:
            pass  # not in WAL mode after all: nothing to watch

    def problem(self) -> str | None:
        """Why the open connection's files no longer are the ones at the path, if they are not."""
        for what, shown, checked, seen, after_delete, after_replace in self._watched:
            try:
                current = _identity(checked)
            except FileNotFoundError:
                return f"{what} {shown} was deleted while open; restart to {after_delete}"
            except OSError as exc:
                return f"{what} {shown} cannot be checked: {exc}"
            if current != seen:
                return f"{what} {shown} was replaced while open; restart to {after_replace}"
        return None
