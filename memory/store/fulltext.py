"""What both stores' full-text search shares: the token that stands for a session in every row of
its index, the query's shape, and which words of a question the query keeps.

The query is what `retrieval.fts_query` writes, every content word of a question quoted and joined
by OR (`split_or_query` reads it back, `or_query` writes the words kept). The index reads and
scores every row that matches any of them, so at 100k events one common word ("py" in 64% of the
rows) made an SQLite query cost ~75 ms while adding nothing to the ranking (BM25 weighs such a word
near zero). Each store looks up how many rows hold each word's index terms (SQLite: the fts5vocab
table of its index; PostgreSQL: the `fts_terms` counts kept at ingest) and keeps the rarest words
while the rows they match stay under `MAX_POSTINGS`; below that size (every store of a few
thousand turns) the query is unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

__all__ = ["MAX_POSTINGS", "MIN_WORDS", "session_key", "rarest_within", "split_or_query", "or_query"]

# Rows a question's words may match together before the most common ones are left out; and the
# rarest words always kept whatever they cost.
MAX_POSTINGS = 20_000
MIN_WORDS = 3
# A quoted word (FTS5 string, `""` a quote inside) or a bareword (ASCII letters, digits and '_', and non-ASCII).
_WORD = re.compile(r'"((?:[^"]|"")*)"|([A-Za-z0-9_\u0080-\U0010ffff]+)')


def session_key(session_id: str) -> str:
    """The one full-text token that stands for a session in every row of it ('k' + 24 hex digits
    of the id's sha256), so a search intersects the session's posting list inside the index."""
    return "k" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]


def split_or_query(match: str) -> list[str] | None:
    """The words of an OR-list of words, quoted or bare ([] for ""), or None for any other FTS5 expression."""
    if not match:
        return []
    words = [m[2] or m[1].replace('""', '"') for part in match.split(" OR ") if (m := _WORD.fullmatch(part))]
    return words if len(words) == match.count(" OR ") + 1 else None


def or_query(words: Sequence[str]) -> str:
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def rarest_within(words: Sequence[str], terms: Mapping[str, Sequence[str]], rows: Mapping[str, int],
                  max_postings: int = MAX_POSTINGS, min_words: int = MIN_WORDS) -> list[str]:
    """`words` (in their order) less the most common ones: rarest first, a word is kept while the
    rows all kept words match stay within `max_postings` (the `min_words` rarest always are). A
    word's rows are those of its most common index term (a quoted word may be a phrase)."""
    cost = {w: max((rows.get(t, 0) for t in terms.get(w, ())), default=0) for w in words}
    if sum(cost.values()) <= max_postings:
        return list(words)
    kept: set[str] = set()
    spent = 0
    for word in sorted(words, key=lambda w: (cost[w], words.index(w))):
        if len(kept) >= min_words and spent + cost[word] > max_postings:
            break
        kept.add(word)
        spent += cost[word]
    return [w for w in words if w in kept]
