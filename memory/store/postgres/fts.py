"""Full-text search on PostgreSQL that ranks like the SQLite store's FTS5 index.

The SQLite store indexes chunks with FTS5 (`porter unicode61 remove_diacritics 2`) and ranks with
FTS5's `bm25()`. Retrieval quality is tuned against that ranking, so the PostgreSQL store reproduces
it with PostgreSQL's own machinery instead of inventing another one:

- tokens: `fts_text` folds text the way unicode61 does (case, diacritics, every character that is
  not a letter or a digit separates tokens) before PostgreSQL's parser sees it, so both stores see
  the same token stream (PostgreSQL's parser alone would keep `auth.py` or `a@b.c` whole);
- stemming: a text search configuration over Snowball's `porter` dictionary, the original Porter
  algorithm FTS5's porter tokenizer implements, with no stop words (FTS5 has none);
- matching: a `tsvector` column under a GIN index; the session is one extra lexeme in every row's
  vector (as `session_key` is in FTS5), so a query intersects the session's posting list inside the
  index instead of matching every session and filtering afterwards;
- postings: each lexeme's rows in a session, with its occurrences and the row's length
  (`fts_postings`, kept at ingest), read from their index alone; what FTS5's index holds and a
  tsvector gives only at ~2 us a row (unpacked to find one lexeme's positions);
- ranking: Okapi BM25 with FTS5's constants and formula, computed in SQL (`BM25_SQL` says how).
  Statistics are per session: rows and average length kept as counters on the session row, a
  lexeme's rows in `fts_terms`; FTS5 counts every session of the file, so the two stores agree
  exactly on a file holding one session.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import psycopg

from memory.store.fulltext import MAX_POSTINGS, rarest_within, session_key

__all__ = ["TS_CONFIG", "fts_text", "token_count", "session_lexeme", "stem", "rank"]

TS_CONFIG = "memory_fts"
_SEPARATORS = re.compile(r"[\W_]+")


def fts_text(text: str) -> str:
    """Text as unicode61 tokenizes it: lower case, diacritics removed, tokens joined by one space."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_SEPARATORS.sub(" ", text.lower()).split())


def token_count(folded: str) -> int:
    """Tokens in a text already folded by `fts_text` (the document length BM25 uses)."""
    return folded.count(" ") + 1 if folded else 0


def session_lexeme(session_id: str) -> str:
    """The lexeme that stands for a session in every one of its rows: its `session_key`, behind a
    '#' that never survives `fts_text`, so no word of any text can collide with it."""
    return "#" + session_key(session_id)


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _phrase(lexemes: Sequence[str]) -> str:
    return "(" + " <-> ".join(_quote(x) for x in lexemes) + ")"


# FTS5's BM25 of phrases joined by OR (a question's words, `SqlStore.bm25`), a longer one (`user_id`
# is "user id") among them. A phrase's document frequency: for one lexeme, its rows in `fts_terms`
# (%(df)s); for a longer phrase, the session's rows holding it, counted here. Constants and formula
# are FTS5's (k1 = 1.2, b = 0.75, an IDF of at most 0 raised to 1e-6, the score negated so that
# lower is better, each phrase's term added in phrase order); FTS5's document length and average
# count its one session_key token too, hence the `+ 1`s. A one-lexeme phrase's occurrences and row
# lengths come from the postings. A longer phrase occurs once per start position at which every
# offset finds its lexeme, in the rows matching %(query)s, whose positions of the phrases' lexemes
# (%(lexemes)s) come from their tsvectors (`ts_filter` keeps just those); the LATERAL join keeps the
# planner from rescanning the matches once per query term.
BM25_SQL = """
WITH st AS (
    SELECT fts_docs::float8 AS docs, (fts_tokens + fts_docs)::float8 / greatest(fts_docs, 1) AS avgdl FROM sessions WHERE id = %(session_id)s
),
w AS (
    SELECT array_agg(CASE WHEN ln((st.docs - d.n + 0.5) / (d.n + 0.5)) <= 0 THEN 1e-6 ELSE ln((st.docs - d.n + 0.5) / (d.n + 0.5)) END
                     ORDER BY d.pid) AS w
    FROM st, (SELECT pid, coalesce(df, (SELECT count(*) FROM chunks c WHERE c.tsv @@ (%(session_query)s::tsquery && q)
                                        AND c.session_id = %(session_id)s))::float8 AS n
              FROM unnest(%(df)s::int[], %(phrase_queries)s::tsquery[]) WITH ORDINALITY AS x(df, q, pid) OFFSET 0) AS d  -- each count once
),
m AS (
    SELECT c.id, c.doc_len, o.lexeme, o.positions
    FROM chunks c, unnest(ts_filter(setweight(c.tsv, 'A', %(lexemes)s::text[]), '{a}')) AS o
    WHERE c.tsv @@ %(query)s::tsquery AND c.session_id = %(session_id)s
),
tf AS (
    SELECT f.chunk_id AS id, f.doc_len, q.pid, f.tf::float8 AS tf
    FROM unnest(%(one_pid)s::int[], %(one_lex)s::text[]) AS q(pid, lexeme)
    JOIN fts_postings f ON f.session_id = %(session_id)s AND f.lexeme = q.lexeme
    UNION ALL
    SELECT id, doc_len, pid, count(*)::float8 FROM (
        SELECT m.id, m.doc_len, t.pid
        FROM m, LATERAL (SELECT * FROM unnest(%(pid)s::int[], %(off)s::int[], %(lex)s::text[], %(len)s::int[]) AS t(pid, off, lexeme, n)
                         WHERE t.lexeme = m.lexeme) AS t, unnest(m.positions) AS p
        GROUP BY m.id, m.doc_len, t.pid, p - t.off, t.n HAVING count(*) = t.n
    ) AS starts GROUP BY id, doc_len, pid
)
SELECT tf.id, -sum(w.w[tf.pid] * tf.tf * 2.2 / (tf.tf + 1.2 * (0.25 + 0.75 * (tf.doc_len + 1)::float8 / st.avgdl)) ORDER BY tf.pid) AS score
FROM tf CROSS JOIN w CROSS JOIN st
GROUP BY tf.id
ORDER BY score, tf.id
LIMIT %(limit)s
"""
# Phrases of one lexeme each (the common question), from the postings alone: the same arithmetic.
ONE_LEXEME_SQL = """
SELECT f.chunk_id, -sum(q.w * f.tf::float8 * 2.2 / (f.tf::float8 + 1.2 * (0.25 + 0.75 * (f.doc_len + 1)::float8 / st.avgdl)) ORDER BY q.pid) AS score
FROM (SELECT fts_docs::float8 AS docs, (fts_tokens + fts_docs)::float8 / greatest(fts_docs, 1) AS avgdl FROM sessions WHERE id = %(session_id)s) AS st,
     LATERAL (SELECT pid, lexeme, CASE WHEN ln((st.docs - n + 0.5) / (n + 0.5)) <= 0 THEN 1e-6 ELSE ln((st.docs - n + 0.5) / (n + 0.5)) END AS w
              FROM unnest(%(one_pid)s::int[], %(one_lex)s::text[], %(df)s::float8[]) AS u(pid, lexeme, n)) AS q
JOIN fts_postings f ON f.session_id = %(session_id)s AND f.lexeme = q.lexeme
GROUP BY f.chunk_id
ORDER BY score, f.chunk_id
LIMIT %(limit)s
"""


# Each phrase's lexemes in order, and the session's rows holding each (0 for a lexeme it never had).
# Each count is looked up by its key: a join would let a planner without statistics yet (a table
# just filled) hash every count of the session instead.
_STEMS_SQL = f"""
SELECT x.i, u.lexeme, coalesce((SELECT t.docs FROM fts_terms t WHERE t.session_id = %s AND t.lexeme = u.lexeme), 0)
FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i)
CROSS JOIN LATERAL unnest(to_tsvector('{TS_CONFIG}'::regconfig, x.t)) AS u CROSS JOIN LATERAL unnest(u.positions) AS p
ORDER BY x.i, p
"""


async def stem(conn: psycopg.AsyncConnection[Any], phrases: Sequence[str], session_id: str) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each phrase's lexemes in order, and the session's rows holding each lexeme (one round trip)."""
    distinct = list(dict.fromkeys(phrases))
    stems: dict[str, list[str]] = {p: [] for p in distinct}
    docs: dict[str, int] = {}
    for i, lexeme, n in await (await conn.execute(_STEMS_SQL, (session_id, distinct))).fetchall():
        stems[distinct[i - 1]].append(lexeme)
        docs[lexeme] = int(n)
    return stems, docs


async def rank(conn: psycopg.AsyncConnection[Any], words: Sequence[str], session_id: str, limit: int,
               max_postings: int = MAX_POSTINGS) -> list[tuple[int, float]]:
    """The session's chunks holding any of `words` (their rarest when together they match more
    than `max_postings` rows, `memory.store.fulltext`), best first, with FTS5's bm25 score
    (lower is better)."""
    phrases = [fts_text(w) for w in words]
    stems, docs = await stem(conn, phrases, session_id)
    rare = set(rarest_within(list(stems), stems, docs, max_postings))
    # FTS5 scores each occurrence of a phrase; a phrase without lexemes matches nothing.
    kept = [stems[p] for p in phrases if p in rare and stems[p]]
    if not kept:
        return []
    one = {"session_id": session_id, "limit": limit, "one_pid": [pid for pid, x in enumerate(kept, 1) if len(x) == 1],
           "one_lex": [x[0] for x in kept if len(x) == 1], "df": [docs[x[0]] if len(x) == 1 else None for x in kept]}
    longer = [(pid, lexemes) for pid, lexemes in enumerate(kept, 1) if len(lexemes) > 1]
    if not longer:
        found = await conn.execute(ONE_LEXEME_SQL, one)
        return [(int(r[0]), float(r[1])) for r in await found.fetchall()]
    terms = [(pid, off, lexeme, len(lexemes)) for pid, lexemes in longer for off, lexeme in enumerate(lexemes)]
    session_query = _quote(session_lexeme(session_id))
    found = await conn.execute(BM25_SQL, {
        **one, "session_query": session_query, "phrase_queries": [_phrase(lexemes) for lexemes in kept],
        "query": f"{session_query} & (" + " | ".join(_phrase(lexemes) for _, lexemes in longer) + ")",
        "lexemes": sorted({t[2] for t in terms}), "pid": [t[0] for t in terms], "off": [t[1] for t in terms], "lex": [t[2] for t in terms],
        "len": [t[3] for t in terms]})
    return [(int(r[0]), float(r[1])) for r in await found.fetchall()]
