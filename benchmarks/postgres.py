"""The PostgreSQL side of the benchmarks (`python -m benchmarks.run_all --postgres`): the same
measurements on the PostgreSQL store, next to SQLite's from the same run.

- B: LoCoMo strict recall of memory-runtime on PostgreSQL (fed the same turns as the SQLite run);
- D: scale rows on PostgreSQL (a fresh database per size);
- E: stress with 1 instance on SQLite against 1, 2 and 3 instances sharing one PostgreSQL database;
- where dense search should run (in process or pgvector HNSW), measured (`benchmarks.pg_vectors`).

The server is `--pg-url` when given, else a private `pgserver` (PostgreSQL 16 from PyPI) for the
run; every measurement gets its own database.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from testkit.pg import PgServer, start_pg

from .pg_vectors import VectorRow
from .scale import ScaleRow
from .stress import StressResult

__all__ = ["PostgresResult", "RecallPair", "pg_server", "describe"]


@dataclass(frozen=True)
class RecallPair:
    budget: int
    sqlite: float  # strict recall, memory-runtime on SQLite
    postgres: float  # the same on PostgreSQL

    @property
    def difference(self) -> float:
        return self.postgres - self.sqlite


@dataclass
class PostgresResult:
    server: str
    recall: list[RecallPair] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)
    scale_sqlite: list[ScaleRow] = field(default_factory=list)  # section D's rows of the same run, to compare with
    stress: list[StressResult] = field(default_factory=list)
    vectors: list[VectorRow] = field(default_factory=list)


def describe(server: PgServer) -> str:
    version = server.version()
    return f"private pgserver ({version})" if server.handle is not None else f"an existing server ({version})"


@contextmanager
def pg_server(url: str | None) -> Iterator[PgServer]:
    """The server for the run: `url`, or a private one in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        server = start_pg(Path(tmp) / "data", url)
        try:
            yield server
        finally:
            server.stop()
