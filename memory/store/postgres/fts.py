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
- ranking: Okapi BM25 with FTS5's constants and formula, computed in SQL from the positions of the
  query's lexemes in each matching row (`ts_filter` keeps just those). Statistics (rows, average
  length, document frequency) are per session, kept as counters on the session row; FTS5 counts
  every session of the file, so the two stores agree exactly on a file holding one session.

`parse_match` reads the FTS5 query syntax the runtime emits (`memory.recall.retrieval.fts_query`): quoted
phrases, barewords, AND / OR / NOT, parentheses, implicit AND. Anything else (NEAR, column filters,
prefix queries) is refused with a clear error rather than half-supported.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import psycopg

from memory.errors import StorageError
from memory.store.rare_words import MAX_POSTINGS, rarest_within
from memory.store.rows import session_key

__all__ = [
    "TS_CONFIG",
    "Phrase",
    "Node",
    "fts_text",
    "token_count",
    "session_lexeme",
    "parse_match",
    "phrases_of",
    "is_pure_or",
    "to_tsquery",
    "BM25_OR_SQL",
    "BM25_BOOLEAN_SQL",
    "rarest",
    "rank",
]

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


@dataclass(frozen=True)
class Phrase:
    """A quoted phrase or bareword, as folded text (its lexemes come from PostgreSQL)."""

    text: str


@dataclass(frozen=True)
class Node:
    """A boolean operator over sub-expressions: "OR", "AND", or "NOT" (left AND NOT right)."""

    op: str
    items: tuple[Phrase | Node, ...]


Expr = Phrase | Node
# FTS5 barewords: ASCII letters, digits and '_', and every non-ASCII character.
_TOKEN = re.compile(r'\s*(?:(")|(\()|(\))|([A-Za-z0-9_\u0080-\U0010ffff]+)|(\S))')


def _lex(match: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(match):
        m = _TOKEN.match(match, pos)
        if m is None:  # only trailing whitespace is left
            break
        if m.group(1):
            end = m.end()
            text = ""
            while True:
                close = match.find('"', end)
                if close < 0:
                    raise StorageError(f"full-text query has an unterminated string: {match[:80]!r}")
                text += match[end:close]
                if match.startswith('""', close):  # "" is a literal quote inside a string
                    text += '"'
                    end = close + 2
                    continue
                pos = close + 1
                break
            tokens.append(("phrase", text))
            continue
        pos = m.end()
        if m.group(2) or m.group(3):
            tokens.append(("paren", m.group(2) or m.group(3)))
        elif m.group(4):
            word = m.group(4)
            if word in ("AND", "OR", "NOT"):
                tokens.append(("op", word))
            elif word.startswith("NEAR") and match.startswith("(", pos):
                raise StorageError("full-text query: NEAR is not supported by the PostgreSQL store")
            else:
                tokens.append(("phrase", word))
        else:
            raise StorageError(f"full-text query: {m.group(5)!r} is not supported (prefix, column filter and initial-token syntax are not)")
    return tokens


class _Parser:
    """Recursive descent over FTS5's precedence: NOT binds tightest, then AND (or juxtaposition), then OR."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Expr:
        expr = self.or_()
        if self.peek() is not None:
            raise StorageError(f"full-text query: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.peek() == ("op", "OR"):
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Node("OR", tuple(items))

    def and_(self) -> Expr:
        items = [self.not_()]
        while True:
            token = self.peek()
            if token == ("op", "AND"):
                self.take()
            elif token is None or token[0] == "op" or token == ("paren", ")"):
                break
            items.append(self.not_())
        return items[0] if len(items) == 1 else Node("AND", tuple(items))

    def not_(self) -> Expr:
        expr = self.primary()
        while self.peek() == ("op", "NOT"):
            self.take()
            expr = Node("NOT", (expr, self.primary()))
        return expr

    def primary(self) -> Expr:
        if self.peek() is None:
            raise StorageError("full-text query ends too early")
        kind, value = self.take()
        if kind == "phrase":
            return Phrase(fts_text(value))
        if value == "(":
            expr = self.or_()
            if self.peek() != ("paren", ")"):
                raise StorageError("full-text query: missing ')'")
            self.take()
            return expr
        raise StorageError(f"full-text query: unexpected {value!r}")


def parse_match(match: str) -> Expr | None:
    """The expression tree of an FTS5 query string (None for an empty query)."""
    tokens = _lex(match)
    return _Parser(tokens).parse() if tokens else None


def phrases_of(expr: Expr) -> list[str]:
    """Every phrase of the expression, in query order, repeats kept (FTS5 scores each occurrence)."""
    if isinstance(expr, Phrase):
        return [expr.text]
    return [p for item in expr.items for p in phrases_of(item)]


def is_pure_or(expr: Expr) -> bool:
    """True when the query is phrases joined by OR: then every row holding a phrase is a match,
    and document frequencies can be counted from the matches alone."""
    return isinstance(expr, Phrase) or (expr.op == "OR" and all(is_pure_or(i) for i in expr.items))


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _phrase_query(lexemes: list[str]) -> str | None:
    return " <-> ".join(_quote(x) for x in lexemes) if lexemes else None


def to_tsquery(expr: Expr, lexemes: dict[str, list[str]]) -> str | None:
    """tsquery text for the expression, given each phrase's lexemes in order. A phrase with no
    lexeme (nothing but punctuation) matches nothing, as in FTS5; None means nothing matches."""
    if isinstance(expr, Phrase):
        return _phrase_query(lexemes.get(expr.text, []))
    parts = [to_tsquery(item, lexemes) for item in expr.items]
    if expr.op == "OR":
        kept = [p for p in parts if p is not None]
        return "(" + " | ".join(kept) + ")" if kept else None
    if expr.op == "AND":
        return None if any(p is None for p in parts) else "(" + " & ".join(p for p in parts if p) + ")"
    left, right = parts
    if left is None:
        return None
    return left if right is None else f"({left} & !({right}))"


# The query's terms: one row per (phrase, offset, lexeme), `n` the phrase's length, and `query`:
# the tsquery to match and the lexemes to keep. For a query of phrases joined by OR (the runtime's),
# PostgreSQL stems the phrases and builds the tsquery itself, so the whole ranking is one round
# trip; other queries come stemmed and built by `to_tsquery` (one round trip more).
_TERMS_FROM_PHRASES = f"""
WITH stems AS (
    SELECT x.i::int AS pid, u.lexeme, p - 1 AS off
    FROM unnest(%(phrases)s::text[]) WITH ORDINALITY AS x(t, i),
         unnest(to_tsvector('{TS_CONFIG}'::regconfig, x.t)) AS u, unnest(u.positions) AS p
),
terms AS (SELECT pid, off, lexeme, (count(*) OVER (PARTITION BY pid))::int AS n FROM stems),
phrase_queries AS (
    SELECT pid, '(' || string_agg(quote_literal(lexeme), ' <-> ' ORDER BY off) || ')' AS q FROM terms GROUP BY pid
),
query AS (
    SELECT (%(session_query)s || ' & (' || string_agg(q, ' | ') || ')')::tsquery AS q,
           (SELECT array_agg(DISTINCT lexeme) FROM terms) AS lexemes
    FROM phrase_queries
),"""
_TERMS_FROM_ARRAYS = """
WITH terms AS (
    SELECT * FROM unnest(%(pid)s::int[], %(off)s::int[], %(lex)s::text[], %(len)s::int[]) AS t(pid, off, lexeme, n)
),
query AS (SELECT %(query)s::tsquery AS q, %(lexemes)s::text[] AS lexemes),"""
# A one-lexeme phrase occurs as often as its lexeme; a longer one once per start position at which
# every offset finds its lexeme. Constants and formula are FTS5's (k1 = 1.2, b = 0.75, an IDF of
# at most 0 raised to 1e-6, the score negated so that lower is better); FTS5's document length and
# average count its one session_key token too, hence the `+ 1`s.
_MATCHES = """
m AS (
    SELECT c.id, c.doc_len, ts_filter(setweight(c.tsv, 'A', (SELECT lexemes FROM query)), '{a}') AS hits
    FROM chunks c
    WHERE c.tsv @@ (SELECT q FROM query) AND c.session_id = %(session_id)s
),
occ AS (
    SELECT m.id, m.doc_len, o.lexeme, o.positions FROM m, unnest(m.hits) AS o
),
tf AS (
    SELECT occ.id, occ.doc_len, t.pid, cardinality(occ.positions)::float8 AS tf
    FROM occ JOIN terms t ON t.lexeme = occ.lexeme AND t.n = 1
    UNION ALL
    SELECT id, doc_len, pid, count(*)::float8 FROM (
        SELECT occ.id, occ.doc_len, t.pid
        FROM occ JOIN terms t ON t.lexeme = occ.lexeme AND t.n > 1, unnest(occ.positions) AS p
        GROUP BY occ.id, occ.doc_len, t.pid, p - t.off, t.n
        HAVING count(*) = t.n
    ) AS starts GROUP BY id, doc_len, pid
),
"""
_BM25_TAIL = """
st AS (
    SELECT fts_docs::float8 AS docs, (fts_tokens + fts_docs)::float8 / greatest(fts_docs, 1) AS avgdl
    FROM sessions WHERE id = %(session_id)s
),
idf AS (
    SELECT df.pid, CASE WHEN ln((st.docs - df.n + 0.5) / (df.n + 0.5)) <= 0 THEN 1e-6
                        ELSE ln((st.docs - df.n + 0.5) / (df.n + 0.5)) END AS w
    FROM df CROSS JOIN st
)
SELECT tf.id, -sum(idf.w * tf.tf * 2.2 / (tf.tf + 1.2 * (0.25 + 0.75 * (tf.doc_len + 1)::float8 / st.avgdl))) AS score
FROM tf JOIN idf USING (pid) CROSS JOIN st
GROUP BY tf.id
ORDER BY score, tf.id
LIMIT %(limit)s
"""
# With OR only, every row holding a phrase is a match: document frequencies come from the matches.
BM25_OR_SQL = _TERMS_FROM_PHRASES + _MATCHES + "df AS (SELECT pid, count(*)::float8 AS n FROM tf GROUP BY pid)," + _BM25_TAIL
# With AND / NOT a row holding a phrase need not match, so each phrase's rows are counted apart.
BM25_BOOLEAN_SQL = _TERMS_FROM_ARRAYS + _MATCHES + """
df AS (
    SELECT x.pid::int AS pid, (SELECT count(*) FROM chunks c
                               WHERE c.tsv @@ (%(session_query)s::tsquery && x.q) AND c.session_id = %(session_id)s)::float8 AS n
    FROM unnest(%(phrase_queries)s::tsquery[]) WITH ORDINALITY AS x(q, pid)
),""" + _BM25_TAIL


# Each phrase's lexemes and the session's rows holding each (0 for a lexeme it never had).
_TERM_ROWS_SQL = f"""
SELECT x.i, u.lexeme, coalesce(t.docs, 0)
FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i)
CROSS JOIN LATERAL unnest(to_tsvector('{TS_CONFIG}'::regconfig, x.t)) AS u
LEFT JOIN fts_terms t ON t.session_id = %s AND t.lexeme = u.lexeme
"""


async def rarest(conn: psycopg.AsyncConnection[Any], expr: Expr, session_id: str, max_postings: int = MAX_POSTINGS) -> Expr:
    """A query of phrases joined by OR less its most common phrases when together they match more
    than `max_postings` rows (`memory.store.rare_words`); any other query as it is."""
    if isinstance(expr, Phrase) or not is_pure_or(expr):
        return expr
    phrases = phrases_of(expr)
    distinct = list(dict.fromkeys(phrases))
    if len(distinct) <= 1:
        return expr
    terms: dict[str, list[str]] = {p: [] for p in distinct}
    rows: dict[str, int] = {}
    for i, lexeme, docs in await (await conn.execute(_TERM_ROWS_SQL, (distinct, session_id))).fetchall():
        terms[distinct[i - 1]].append(lexeme)
        rows[lexeme] = int(docs)
    kept = set(rarest_within(distinct, terms, rows, max_postings))
    if len(kept) == len(distinct):
        return expr
    return Node("OR", tuple(Phrase(p) for p in phrases if p in kept))


async def rank(conn: psycopg.AsyncConnection[Any], expr: Expr, session_id: str, limit: int,
               max_postings: int = MAX_POSTINGS) -> list[tuple[int, float]]:
    """The session's chunks matching `expr` (its rarest words when they are too common, see
    `rarest`), best first, with FTS5's bm25 score (lower is better)."""
    expr = await rarest(conn, expr, session_id, max_postings)
    session_query = "'" + session_lexeme(session_id) + "'"
    phrases = phrases_of(expr)
    if is_pure_or(expr):
        params: dict[str, Any] = {"session_id": session_id, "session_query": session_query, "limit": limit, "phrases": phrases}
        rows = await (await conn.execute(BM25_OR_SQL, params)).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]
    distinct = list(dict.fromkeys(phrases))
    stemmed: dict[str, list[str]] = {p: [] for p in distinct}
    for i, lexeme, _ in await (await conn.execute(
        "SELECT x.i, u.lexeme, p FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, i), "
        f"unnest(to_tsvector('{TS_CONFIG}'::regconfig, x.t)) AS u, unnest(u.positions) AS p ORDER BY x.i, p",
        (distinct,),
    )).fetchall():
        stemmed[distinct[i - 1]].append(lexeme)
    query = to_tsquery(expr, stemmed)
    if query is None:
        return []
    kept = [stemmed[p] for p in phrases if stemmed[p]]
    terms = [(pid, off, lexeme, len(lexemes)) for pid, lexemes in enumerate(kept, 1) for off, lexeme in enumerate(lexemes)]
    params = {
        "session_id": session_id, "query": f"{session_query} & {query}", "limit": limit, "session_query": session_query,
        "lexemes": sorted({t[2] for t in terms}), "pid": [t[0] for t in terms], "off": [t[1] for t in terms],
        "lex": [t[2] for t in terms], "len": [t[3] for t in terms],
        "phrase_queries": [" <-> ".join(_quote(x) for x in lexemes) for lexemes in kept],
    }
    rows = await (await conn.execute(BM25_BOOLEAN_SQL, params)).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]
