"""What differs between the SQL the two stores speak, and nothing else.

Every statement shared by the stores is written once, with `?` placeholders, against the names
here; a store runs it through its dialect (what cannot be shared: `memory.store.protocol`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Dialect", "SQLITE", "POSTGRES"]


@dataclass(frozen=True)
class Dialect:
    name: str
    # A session created now gets a generation no earlier session of its id had; detaching messages
    # moves it on (in-process views reload when it changes).
    new_generation: str
    next_generation: str
    greatest: str  # the larger of two values
    position: str  # 1-based position of a substring, 0 when absent
    # Lower case of ASCII letters only, as SQLite's lower() folds them.
    ascii_lower: str
    # Several values bound to one parameter: a JSON array SQLite reads with json_each, or a
    # PostgreSQL array. No batching, whatever the number of values.
    json_lists: bool
    # (table, column) of every table in the schema, in column order.
    columns: str
    lock_rows: str = ""  # what makes a SELECT lock the rows it reads until commit

    def sql(self, query: str) -> str:
        """`query` (written with `?` placeholders) as this backend's driver takes it."""
        return query if self.name == "sqlite" else query.replace("%", "%%").replace("?", "%s")

    def any(self, column: str) -> str:
        """A condition: `column` is one of the values bound by `many`."""
        return f"{column} IN (SELECT value FROM json_each(?))" if self.json_lists else f"{column} = ANY(?)"

    def many(self, values: Iterable[Any]) -> Any:
        return json.dumps(list(values)) if self.json_lists else list(values)


SQLITE = Dialect("sqlite", new_generation="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
                 next_generation="generation + 1", greatest="max", position="instr", ascii_lower="lower({})", json_lists=True,
                 # FTS5's own tables (chunks_fts and its shadow tables) are the index, not the schema.
                 columns="SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' "
                         "AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE 'chunks_fts%' ORDER BY m.name, p.cid")
POSTGRES = Dialect("postgres", new_generation="nextval('session_generation')", next_generation="nextval('session_generation')",
                   greatest="greatest", position="strpos", ascii_lower='lower({} COLLATE "C")', json_lists=False, lock_rows=" FOR UPDATE",
                   columns="SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                           "ORDER BY table_name, ordinal_position")
