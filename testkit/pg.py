"""A PostgreSQL server for the tests and the benchmarks, with nothing installed by hand.

`start_pg(folder, url)`: when `url` is given (tests read it from MEMORY_RUNTIME_TEST_PG_URL), an
existing server is used and only databases this process creates are dropped again; otherwise the
`pgserver` package (PostgreSQL 16 binaries with pgvector, from PyPI) runs a private server in
`folder` on a Unix socket, stopped by `stop()`. Each user gets a fresh database from
`create_database()`, so tests and runs never see each other's rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = ["PgServer", "start_pg", "with_database", "dump_database"]


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@dataclass
class PgServer:
    url: str  # the server's maintenance database
    handle: Any = None  # the pgserver handle when we started the server ourselves
    created: list[str] = field(default_factory=list)
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def create_database(self, prefix: str = "mr") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def version(self) -> str:
        """The server's version, e.g. "PostgreSQL 16.2"."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cleanup()
            self.handle = None
            return
        for name in list(self.created):  # an existing server: leave it as we found it
            self.drop_database(with_database(self.url, name))


def dump_database(url: str) -> bytes:
    """Every row of every table of the database as text: what a scan for leaked secrets reads."""
    out: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(sql.SQL("SELECT t::text FROM {}.{} AS t").format(sql.Identifier(schema), sql.Identifier(table))).fetchall()
            out.extend(r[0] for r in rows)
    return "\n".join(out).encode("utf-8")


def start_pg(folder: Path, url: str | None = None) -> PgServer:
    """Use the server at `url`, or start a private one with its data in `folder`."""
    if url:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
        return PgServer(url)
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder at import; without XDG_RUNTIME_DIR
        # (CI, root shells) platformdirs warns and falls back to /tmp, which is fine.
        warnings.simplefilter("ignore")
        import pgserver  # heavy and test-only: imported when a private server is wanted

        handle = pgserver.get_server(folder, cleanup_mode="stop")
    return PgServer(handle.get_uri(), handle)


def main(argv: list[str] | None = None) -> int:
    """`python -m testkit.pg start|stop [--dir DIR]`: a local PostgreSQL for trying several
    instances by hand (README: "Running several instances"). `start` prints the server's URL and
    leaves it running; `stop` stops it."""
    parser = argparse.ArgumentParser(prog="python -m testkit.pg", description=main.__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", default=".pgdata", help="data folder (default: ./.pgdata)")
    args = parser.parse_args(argv)
    folder = Path(args.dir).resolve()
    if args.action == "stop" and not (folder / "PG_VERSION").exists():
        print(f"no PostgreSQL data folder at {folder}", file=sys.stderr)
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see start_pg
        import pgserver  # test-only dependency, as in start_pg

        handle = pgserver.get_server(folder, cleanup_mode=None if args.action == "start" else "stop")
    if args.action == "start":
        print(handle.get_uri())
    else:
        handle.cleanup()
        print(f"stopped the PostgreSQL server of {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
