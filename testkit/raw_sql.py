"""Statements run on a test's database directly, past the store: a schema as an older version left
it, a row damaged on purpose, what a table holds. `kind` is "sqlite" (`where` a file path) or
"postgres" (`where` a URL; the store's schema on the search path)."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg


def run_sql(kind: str, where: str, statements: list[str]) -> list[list[Any]]:
    """Each statement's rows (empty for one that returns none), committed."""
    if kind == "sqlite":
        con = sqlite3.connect(where)
        try:
            found = [con.execute(s).fetchall() for s in statements]
            con.commit()
            return found
        finally:
            con.close()
    with psycopg.connect(where, autocommit=True) as conn:
        conn.execute("SET search_path TO memory_runtime")
        found = []
        for s in statements:
            cur = conn.execute(s)
            found.append(cur.fetchall() if cur.description else [])
        return found
