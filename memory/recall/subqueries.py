"""A question that names several people or things, asked once per name.

"What type of volunteering have John and Maria both done?" needs a turn about John's volunteering
and one about Maria's. Ranked as one query, the turns that match it best are often all about one of
them (the rarer name, or the one whose turn shares more words), and the other's evidence falls
below the budget. Asked once per name ("What type of volunteering have John done?", "... Maria
..."), each sub-query ranks its own name's turns first; `memory.recall.retrieval.rank_chunks` fuses
the rankings (each turn keeps its best standing in any of them).

Deliberately lexical: a run of two or more capitalised names joined by "and", "&" or commas (a
possessive "'s" kept with its name, and given to every name when only the last has it: "Kate and
Elise's hair" asks of Kate's hair too). Names that are one
place ("Turks and Caicos") are split too; the fused ranking still holds the full question's hits.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import numpy as np

from memory.recall.retrieval import Hits, RankOptions, fts_query

__all__ = ["entity_queries", "sub_query_lists", "MAX_SUBQUERIES"]

MAX_SUBQUERIES = 4
_NAME = r"[A-Z][\w\-]*[a-z][\w\-]*(?:['’]s)?"
# "X and Y", "X, Y and Z", "X's and Y's", "both, X and Y".
_RUN = re.compile(rf"\b({_NAME}(?:\s*,\s*{_NAME})*,?\s+(?:and|&)\s+{_NAME})")
_POSSESSIVE = re.compile(r"['’]s$")
_SPLIT = re.compile(r"\s*,\s*(?:and\s+|&\s+)?|\s+(?:and|&)\s+")


def entity_queries(question: str) -> tuple[str, ...]:
    """One query per name of the first run of names joined by "and" in `question` (see the module
    docstring), the run replaced by that name; () when there is no such run."""
    match = _RUN.search(question)
    if match is None:
        return ()
    names = [n for n in _SPLIT.split(match.group(1)) if n]
    if len(names) < 2:
        return ()
    if _POSSESSIVE.search(names[-1]):
        names = [n if _POSSESSIVE.search(n) else f"{n}'s" for n in names]
    start, end = match.span(1)
    out = [f"{question[:start]}{name}{question[end:]}" for name in dict.fromkeys(names)]
    return tuple(out[:MAX_SUBQUERIES])


async def sub_query_lists(question: str, options: RankOptions, bm25: Callable[[str], Awaitable[Hits]],
                          embed: Callable[[str], Awaitable[np.ndarray | None]]) -> list[tuple[Hits, np.ndarray | None]]:
    """The lexical hits (`bm25` of an FTS5 query) and the vector (`embed`) of each of `question`'s
    sub-queries, for `rank_chunks(parts=...)`; none when `options.split_entities` is off or the
    question names fewer than two people."""
    if not options.split_entities:
        return []
    return [(await bm25(fts_query(sub)), await embed(sub)) for sub in entity_queries(question)]
