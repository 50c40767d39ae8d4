"""How many rows hold each word of a question on SQLite (for the rare-word rule of
`memory.store.fulltext`), counted in the fts5vocab table of its index. The index stems words
(porter tokenizer), so a word is looked up by its index terms: `Tokenizer` asks SQLite itself,
through an in-memory FTS5 table with the index's tokenizer, and remembers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["TermRows", "Tokenizer"]

_CACHE = 4_096


class Tokenizer:
    """A word's index terms, as the index's tokenizer makes them (bounded memo)."""

    def __init__(self, tokenize: str) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        quoted = tokenize.replace("'", "''")
        self._db.execute(f"CREATE VIRTUAL TABLE words USING fts5(text, tokenize='{quoted}')")
        self._db.execute("CREATE VIRTUAL TABLE word_terms USING fts5vocab(words, instance)")
        self._memo: dict[str, tuple[str, ...]] = {}

    def terms(self, words: Sequence[str], cache_size: int = _CACHE) -> dict[str, tuple[str, ...]]:
        # The answer is built before the memo is trimmed: trimming may drop any entry, including
        # one this call found there or just added.
        found_here = {w: self._memo[w] for w in dict.fromkeys(words) if w in self._memo}
        todo = [w for w in dict.fromkeys(words) if w not in found_here]
        if todo:
            db = self._db
            with db:
                db.execute("DELETE FROM words")
                db.executemany("INSERT INTO words(rowid, text) VALUES (?, ?)", list(enumerate(todo, 1)))
                found: dict[int, list[tuple[int, str]]] = {}
                for term, doc, offset in db.execute("SELECT term, doc, offset FROM word_terms"):
                    found.setdefault(int(doc), []).append((int(offset), str(term)))
            for i, word in enumerate(todo, 1):
                found_here[word] = tuple(t for _, t in sorted(found.get(i, [])))
                while self._memo and len(self._memo) >= cache_size:
                    del self._memo[next(iter(self._memo))]
                self._memo[word] = found_here[word]
        return {w: found_here[w] for w in words}


class TermRows:
    """Rows per index term, remembered while `stamp` (this connection's total changes, SQLite's
    data version) holds: counting a common term reads its whole posting list (~28 ms a compile at 100k)."""

    def __init__(self) -> None:
        self._stamp: tuple[int, ...] = ()
        self._rows: dict[str, int] = {}

    def known(self, stamp: tuple[int, ...], terms: Sequence[str]) -> tuple[dict[str, int], list[str]]:
        """The remembered counts of `terms` under `stamp`, and the terms still to count."""
        if stamp != self._stamp:
            self._stamp, self._rows = stamp, {}
        return {t: self._rows[t] for t in terms if t in self._rows}, [t for t in terms if t not in self._rows]

    def add(self, stamp: tuple[int, ...], counted: dict[str, int]) -> None:
        if stamp and stamp == self._stamp and len(self._rows) + len(counted) <= _CACHE:  # (): in a transaction
            self._rows.update(counted)

