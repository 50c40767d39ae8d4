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


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class OpenFiles:
    """The database file and its WAL as the connection opened them (nothing for ":memory:")."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Expanded once: the check runs on every commit.
        self._file = str(Path(path).expanduser()) if path != ":memory:" else path
        self._wal = self._file + WAL_SUFFIX
        self._file_id: tuple[int, int] | None = None
        self._wal_id: tuple[int, int] | None = None

    def record(self) -> None:
        """Remember the files at the path; called once the connection is open in WAL mode (whose
        first read created the -wal file)."""
        if self.path == ":memory:":
            return
        self._file_id = _identity(self._file)
        try:
            self._wal_id = _identity(self._wal)
        except FileNotFoundError:
            self._wal_id = None  # not in WAL mode after all: nothing to watch

    def problem(self) -> str | None:
        """Why the open connection's files no longer are the ones at the path, if they are not."""
        if self._file_id is None:
            return None
        try:
            current = _identity(self._file)
        except FileNotFoundError:
            return f"database file {self.path} was deleted while open; restart to start a new one (nothing is being stored)"
        except OSError as exc:
            return f"database file {self.path} cannot be checked: {exc}"
        if current != self._file_id:
            return f"database file {self.path} was replaced while open; restart to use the new file (nothing is being stored)"
        return self._wal_problem()

    def _wal_problem(self) -> str | None:
        if self._wal_id is None:
            return None
        wal = self.path + WAL_SUFFIX
        try:
            current = _identity(self._wal)
        except FileNotFoundError:
            return (f"WAL file {wal} was deleted while open; restart to store again (nothing is being stored, and what it "
                    "held since the last checkpoint is lost at exit)")
        except OSError as exc:
            return f"WAL file {wal} cannot be checked: {exc}"
        if current != self._wal_id:
            return f"WAL file {wal} was replaced while open; restart to store again (nothing is being stored)"
        return None
