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
- trimming: a question whose words together match more than `rare_words.MAX_POSTINGS` rows keeps
  its rarest ones, as on SQLite; the rows per lexeme come from `fts_terms`, counted at ingest;
- postings: each lexeme's rows in a session, with its occurrences and the row's length
  (`fts_postings`, kept at ingest), read from their index alone; what FTS5's index holds and a
  tsvector gives only at ~2 us a row (unpacked to find one lexeme's positions);
- ranking: Okapi BM25 with FTS5's constants and formula, computed in SQL: a question's words
  joined by OR (what the runtime asks) from the postings of its one-lexeme phrases, and, for a
  longer phrase (`user_id` is "user id") or an AND / NOT, from the positions of the query's
  lexemes in each matching row's tsvector (`ts_filter` keeps just those). Statistics are per
  session: rows and average length kept as counters on the session row, a lexeme's rows in
  `fts_terms`; FTS5 counts every session of the file, so the two stores agree exactly on a file
  holding one session.

`parse_match` reads the FTS5 query syntax the runtime emits (`memory.recall.retrieval.fts_query`): quoted
phrases, barewords, AND / OR / NOT, parentheses, implicit AND. Anything else (NEAR, column filters,
prefix queries) is refused with a clear error rather than half-supported. PostgreSQL's tsquery
operators bind in FTS5's order (NOT, then AND, then OR), so `to_tsquery` writes the query token by
token, each phrase as its lexemes in sequence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from memory.errors import StorageError
from memory.store.rare_words import MAX_POSTINGS, rarest_within
from memory.store.rows import session_key

__all__ = ["TS_CONFIG", "fts_text", "token_count", "session_lexeme", "parse_match", "is_pure_or", "to_tsquery", "stem", "idf", "rarest", "rank"]

TS_CONFIG = "memory_fts"
_SEPARATORS = re.compile(r"[\W_]+")
# (kind, value): ("phrase", its folded text), ("op", "AND" | "OR" | "NOT") or ("paren", "(" | ")").
Token = tuple[str, str]
# FTS5 barewords: ASCII letters, digits and '_', and every non-ASCII character.
_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|(\()|(\))|([A-Za-z0-9_\u0080-\U0010ffff]+)|(\S))')
_OPERATORS = {"AND": "&", "OR": "|", "NOT": "& !"}  # FTS5's `a NOT b` is `a AND NOT b`
# A lexeme in no row ('#' never survives `fts_text`; a session's lexeme is longer): what a phrase
# without lexemes (nothing but punctuation) becomes, so that it matches nothing, as in FTS5.
_NOTHING = "'#'"


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


def parse_match(match: str) -> list[Token]:
    """The tokens of an FTS5 query string, phrases folded by `fts_text` ([] for an empty query)."""
    tokens: list[Token] = []
    for m in _TOKEN.finditer(match):
        quoted, opening, closing, word, other = m.groups()
        if quoted is not None:
            tokens.append(("phrase", fts_text(quoted.replace('""', '"'))))  # "" is a literal quote inside a string
        elif opening or closing:
            tokens.append(("paren", opening or closing))
        elif word in _OPERATORS:
            tokens.append(("op", word))
        elif word is not None:
            if word.startswith("NEAR") and match.startswith("(", m.end()):
                raise StorageError("full-text query: NEAR is not supported by the PostgreSQL store")
            tokens.append(("phrase", fts_text(word)))
        elif other == '"':
            raise StorageError(f"full-text query has an unterminated string: {match[:80]!r}")
        else:
            raise StorageError(f"full-text query: {other!r} is not supported (prefix, column filter and initial-token syntax are not)")
    return tokens


def is_pure_or(tokens: Sequence[Token]) -> bool:
    """True when the query is phrases joined by OR (juxtaposition and NOT are ANDs too): then
    every row holding a phrase is a match, and document frequencies can be counted from the
    matches alone."""
    return "&" not in to_tsquery(tokens, {}).split()


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _phrase(lexemes: Sequence[str]) -> str:
    return "(" + " <-> ".join(_quote(x) for x in lexemes) + ")" if lexemes else _NOTHING


def to_tsquery(tokens: Sequence[Token], stems: Mapping[str, Sequence[str]]) -> str:
    """tsquery text for the query's tokens, given each phrase's lexemes in order; refuses what
    FTS5 refuses (an operator or a parenthesis without its operands)."""
    out: list[str] = []
    depth, operand = 0, False  # operand: the last token ended an operand
    for kind, value in tokens:
        if kind == "op":
            if not operand:
                raise StorageError(f"full-text query: unexpected {value!r}")
            out.append(_OPERATORS[value])
            operand = False
        elif value == ")":
            if not operand or depth == 0:
                raise StorageError("full-text query: unexpected ')'")
            out.append(")")
            depth -= 1
        else:  # a phrase or "(" starts an operand; right after another one, it is ANDed
            if operand:
                out.append("&")
            if kind == "phrase":
                out.append(_phrase(stems.get(value, ())))
                operand = True
            else:
                out.append("(")
                depth, operand = depth + 1, False
    if not operand:
        raise StorageError("full-text query ends too early")
    if depth:
        raise StorageError("full-text query: missing ')'")
    return " ".join(out)


# A phrase's document frequency: for one lexeme, its rows in `fts_terms` (a parameter); for a
# longer phrase, the session's rows holding it, counted here. Constants and formula are FTS5's
# (k1 = 1.2, b = 0.75, an IDF of at most 0 raised to 1e-6, the score negated so that lower is
# better, each phrase's term added in phrase order); FTS5's document length and average count its
# one session_key token too, hence the `+ 1`s. A one-lexeme phrase occurs as often as its lexeme; a
# longer one once per start position at which every offset finds its lexeme. Each matching row's
# positions of the query's lexemes come from its tsvector (`ts_filter` keeps just those); the
# LATERAL joins keep the planner from rescanning the matches once per query term.
_STATS_SQL = """
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
"""
# The rows matching %(query)s with the positions of the query's lexemes (%(lexemes)s) in each.
_MATCHES_SQL = """
m AS (
    SELECT c.id, c.doc_len, o.lexeme, o.positions
    FROM chunks c, unnest(ts_filter(setweight(c.tsv, 'A', %(lexemes)s::text[]), '{a}')) AS o
    WHERE c.tsv @@ %(query)s::tsquery AND c.session_id = %(session_id)s
),
"""
# Occurrences of each longer phrase in each matching row: start positions at which every offset finds its lexeme.
_PHRASE_TF_SQL = """
    SELECT id, doc_len, pid, count(*)::float8 FROM (
        SELECT m.id, m.doc_len, t.pid
        FROM m, LATERAL (SELECT * FROM unnest(%(pid)s::int[], %(off)s::int[], %(lex)s::text[], %(len)s::int[]) AS t(pid, off, lexeme, n)
                         WHERE t.lexeme = m.lexeme AND t.n > 1) AS t, unnest(m.positions) AS p
        GROUP BY m.id, m.doc_len, t.pid, p - t.off, t.n HAVING count(*) = t.n
    ) AS starts GROUP BY id, doc_len, pid
"""
_SCORE_SQL = """
SELECT tf.id, -sum(w.w[tf.pid] * tf.tf * 2.2 / (tf.tf + 1.2 * (0.25 + 0.75 * (tf.doc_len + 1)::float8 / st.avgdl)) ORDER BY tf.pid) AS score
FROM tf CROSS JOIN w CROSS JOIN st
GROUP BY tf.id
ORDER BY score, tf.id
LIMIT %(limit)s
"""
BM25_SQL = _STATS_SQL + _MATCHES_SQL + """
tf AS (
    SELECT m.id, m.doc_len, t.pid, cardinality(m.positions)::float8 AS tf
    FROM m, LATERAL (SELECT * FROM unnest(%(pid)s::int[], %(lex)s::text[], %(len)s::int[]) AS t(pid, lexeme, n)
                     WHERE t.lexeme = m.lexeme AND t.n = 1) AS t
    UNION ALL""" + _PHRASE_TF_SQL + ")" + _SCORE_SQL
# A query of phrases joined by OR with a longer phrase among them: the rows holding a one-lexeme
# phrase of %(one_lex)s from the postings, each with its occurrences and length, and the rows
# matching a longer phrase (%(query)s) with its occurrences counted from their tsvectors.
PHRASES_SQL = _STATS_SQL + _MATCHES_SQL + """
tf AS (
    SELECT f.chunk_id AS id, f.doc_len, q.pid, f.tf::float8 AS tf
    FROM unnest(%(one_pid)s::int[], %(one_lex)s::text[]) AS q(pid, lexeme)
    JOIN fts_postings f ON f.session_id = %(session_id)s AND f.lexeme = q.lexeme
    UNION ALL""" + _PHRASE_TF_SQL + ")" + _SCORE_SQL
# A query of one-lexeme phrases joined by OR, from the postings alone: each phrase's IDF comes from
# `idf` (the same arithmetic as `_STATS_SQL`'s), the average length from the session's counters.
ONE_LEXEME_SQL = """
SELECT f.chunk_id, -sum(q.w * f.tf::float8 * 2.2 / (f.tf::float8 + 1.2 * (0.25 + 0.75 * (f.doc_len + 1)::float8 / (
           SELECT (fts_tokens + fts_docs)::float8 / greatest(fts_docs, 1) FROM sessions WHERE id = %(session_id)s))) ORDER BY q.pid) AS score
FROM unnest(%(one_pid)s::int[], %(one_lex)s::text[], %(one_w)s::float8[]) AS q(pid, lexeme, w)
JOIN fts_postings f ON f.session_id = %(session_id)s AND f.lexeme = q.lexeme
GROUP BY f.chunk_id
ORDER BY score, f.chunk_id
LIMIT %(limit)s
"""


# Each phrase's lexemes in order, the session's rows holding each (0 for a lexeme it never had), and
# the session's rows. Each count is looked up by its key: a join would let a planner without
# statistics yet (a table just filled) hash every count of the session instead.
_STEMS_SQL = f"""
SELECT x.i, u.lexeme, coalesce((SELECT t.docs FROM fts_terms t WHERE t.session_id = %s AND t.lexeme = u.lexeme), 0),
       (SELECT fts_docs FROM sessions WHERE id = %s)
FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i)
CROSS JOIN LATERAL unnest(to_tsvector('{TS_CONFIG}'::regconfig, x.t)) AS u CROSS JOIN LATERAL unnest(u.positions) AS p
ORDER BY x.i, p
"""


async def stem(conn: psycopg.AsyncConnection[Any], phrases: Sequence[str], session_id: str) -> tuple[dict[str, list[str]], dict[str, int], int]:
    """Each phrase's lexemes in order, the session's rows holding each lexeme, and the session's
    rows (one round trip)."""
    distinct = list(dict.fromkeys(phrases))
    stems: dict[str, list[str]] = {p: [] for p in distinct}
    docs: dict[str, int] = {}
    rows = 0
    for i, lexeme, n, rows in await (await conn.execute(_STEMS_SQL, (session_id, session_id, distinct))).fetchall():
        stems[distinct[i - 1]].append(lexeme)
        docs[lexeme] = int(n)
    return stems, docs, int(rows or 0)


def idf(rows: int, df: int) -> float:
    """FTS5's IDF of a phrase in `df` of `rows` rows (what BM25_SQL computes)."""
    w = math.log((rows - df + 0.5) / (df + 0.5))
    return w if w > 0 else 1e-6


def rarest(tokens: list[Token], stems: Mapping[str, Sequence[str]], docs: Mapping[str, int], max_postings: int = MAX_POSTINGS) -> list[Token]:
    """A query of phrases joined by OR less its most common phrases when together they match more
    than `max_postings` rows (`memory.store.rare_words`); any other query as it is."""
    phrases = [v for k, v in tokens if k == "phrase"]
    if not is_pure_or(tokens):
        return tokens
    kept = set(rarest_within(list(dict.fromkeys(phrases)), stems, docs, max_postings))
    if len(kept) == len(set(phrases)):
        return tokens
    return [t for p in phrases if p in kept for t in (("op", "OR"), ("phrase", p))][1:]  # the kept phrases, ORed


async def rank(conn: psycopg.AsyncConnection[Any], tokens: list[Token], session_id: str, limit: int,
               max_postings: int = MAX_POSTINGS) -> list[tuple[int, float]]:
    """The session's chunks matching the query (its rarest words when they are too common, see
    `rarest`), best first, with FTS5's bm25 score (lower is better)."""
    stems, docs, rows = await stem(conn, [v for k, v in tokens if k == "phrase"], session_id)
    tokens = rarest(tokens, stems, docs, max_postings)
    query = to_tsquery(tokens, stems)
    # FTS5 scores each occurrence of a phrase; a phrase without lexemes matches nothing.
    kept = [stems[v] for k, v in tokens if k == "phrase" and stems[v]]
    if not kept:
        return []
    terms = [(pid, off, lexeme, len(lexemes)) for pid, lexemes in enumerate(kept, 1) for off, lexeme in enumerate(lexemes)]
    session_query = _quote(session_lexeme(session_id))
    params = {
        "session_id": session_id, "query": f"{session_query} & ({query})", "limit": limit, "session_query": session_query,
        "lexemes": sorted({t[2] for t in terms}), "pid": [t[0] for t in terms], "off": [t[1] for t in terms],
        "lex": [t[2] for t in terms], "len": [t[3] for t in terms], "phrase_queries": [_phrase(lexemes) for lexemes in kept],
        "df": [docs[lexemes[0]] if len(lexemes) == 1 else None for lexemes in kept],
    }
    if not is_pure_or(tokens):  # AND / NOT: the rows the whole expression matches, by tsvector
        return _scored(await (await conn.execute(BM25_SQL, params)).fetchall())
    # Phrases joined by OR (what the runtime asks): one-lexeme phrases from the postings, longer
    # ones by tsvector. `rarest` has already bounded the postings read.
    singles = [(pid, lexemes[0]) for pid, lexemes in enumerate(kept, 1) if len(lexemes) == 1]
    one = {"one_pid": [pid for pid, _ in singles], "one_lex": [lexeme for _, lexeme in singles]}
    if len(singles) == len(kept):
        weights = [idf(rows, docs[lexeme]) for _, lexeme in singles]
        return _scored(await (await conn.execute(ONE_LEXEME_SQL, {"session_id": session_id, "limit": limit, **one, "one_w": weights})).fetchall())
    longer = [lexemes for lexemes in kept if len(lexemes) > 1]
    params |= {"query": f"{session_query} & (" + " | ".join(_phrase(lexemes) for lexemes in longer) + ")",
               "lexemes": sorted({lexeme for lexemes in longer for lexeme in lexemes})}
    return _scored(await (await conn.execute(PHRASES_SQL, {**params, **one})).fetchall())


def _scored(found: Sequence[Sequence[Any]]) -> list[tuple[int, float]]:
    return [(int(r[0]), float(r[1])) for r in found]
