"""Where should dense search run when memory lives on PostgreSQL? A measurement, not a guess.

    python -m benchmarks.pg_vectors [--chunks 10000,100000] [--sessions 10] [--queries 30] [--pg-url URL]

The runtime keeps each session's chunk vectors in process (the view) and ranks them with one
matrix product. The alternative is pgvector: an HNSW index over every session's vectors, queried
with the session as a filter. Both are timed here on the same vectors: real all-MiniLM-L6-v2
embeddings of the scale workload's texts (beyond the distinct texts, copies with a little noise,
as a big session repeats itself), spread over `--sessions` sessions with the measured one holding
`chunks` of them, and questions embedded by the same model. Reported per size: top-k time per query
in process and with pgvector (HNSW at ef_search 40, 200 and 1000, and exact), HNSW recall of the
exact top k, the index build time and the insert cost per vector with the index in place.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg

from memory.recall.embeddings import load_embedder
from testkit.pg import start_pg

from .common import progress
from .workload import queries, session_events

__all__ = ["VectorRow", "run_vectors", "main"]

TOP_K = 450  # the runtime's dense candidate pool: 3 x CANDIDATES
EF_SEARCH = (40, 200, 1000)  # pgvector's default, a middle value, its maximum


@dataclass(frozen=True)
class VectorRow:
    chunks: int  # vectors of the measured session
    total: int  # vectors in the table (all sessions)
    in_process_ms: float  # p50 per query: matrix product + top-k over the session's vectors
    exact_ms: float  # p50 per query, pgvector without the index (session rows scanned)
    hnsw: tuple[tuple[int, float, float], ...]  # (ef_search, p50 ms, share of the exact top k returned), session filter
    build_s: float  # building the HNSW index over the whole table
    insert_ms_per_1k: float  # inserting 1,000 more vectors with the index in place


def _vectors(n: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    reps = -(-n // len(base))
    out = np.vstack([base] * reps)[:n].copy()
    out[len(base):] += rng.normal(0, 0.02, size=out[len(base):].shape).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def _literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def _p50(samples: list[float]) -> float:
    return float(np.percentile(samples, 50))


def _measure(url: str, chunks: int, sessions: int, base: np.ndarray, qvecs: np.ndarray, show: bool) -> VectorRow:
    rng = np.random.default_rng(7)
    mine = _vectors(chunks, base, rng)
    others = _vectors(chunks * (sessions - 1) // 4, base[::-1], rng) if sessions > 1 else np.zeros((0, base.shape[1]), np.float32)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS bench_vectors")
        conn.execute("CREATE TABLE bench_vectors (id bigserial PRIMARY KEY, session_id text NOT NULL, embedding vector(384) NOT NULL)")
        conn.execute("CREATE INDEX ON bench_vectors(session_id)")
        rows = [("mine", _literal(v)) for v in mine] + [(f"other-{i % max(sessions - 1, 1)}", _literal(v)) for i, v in enumerate(others)]
        with conn.cursor() as cur, cur.copy("COPY bench_vectors(session_id, embedding) FROM STDIN") as copy:
            for row in progress(rows, f"load {len(rows):,} vectors", enabled=show):
                copy.write_row(row)
        conn.execute("ANALYZE bench_vectors")
        top_k = min(TOP_K, chunks)
        exact_q = "SELECT id FROM bench_vectors WHERE session_id = 'mine' ORDER BY embedding <=> %s::vector LIMIT %s"
        exact: list[float] = []
        truth: list[set[int]] = []
        for q in qvecs:
            t0 = time.perf_counter()
            truth.append({r[0] for r in conn.execute(exact_q, (_literal(q), top_k)).fetchall()})
            exact.append((time.perf_counter() - t0) * 1000)
        in_proc: list[float] = []
        for q in [*qvecs[:3], *qvecs]:  # three warm-up queries, not counted below
            t0 = time.perf_counter()
            sims = mine @ q
            top = np.argpartition(-sims, top_k - 1)[:top_k]
            sorted(top.tolist(), key=lambda p: -float(sims[p]))
            in_proc.append((time.perf_counter() - t0) * 1000)
        in_proc = in_proc[3:]
        t0 = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("CREATE INDEX bench_hnsw ON bench_vectors USING hnsw (embedding vector_cosine_ops)")
        build_s = time.perf_counter() - t0
        # Measure HNSW itself: without these the planner may answer from the session index or a
        # scan (exact results), which says nothing about the index.
        conn.execute("DROP INDEX bench_vectors_session_id_idx")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + exact_q, (_literal(qvecs[0]), top_k)).fetchall())
        if "bench_hnsw" not in plan:
            raise RuntimeError(f"the HNSW index is not used:\n{plan}")
        hnsw: list[tuple[int, float, float]] = []
        for ef in EF_SEARCH:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            spent: list[float] = []
            recall: list[float] = []
            for q, want in zip(qvecs, truth, strict=True):
                t0 = time.perf_counter()
                got = {r[0] for r in conn.execute(exact_q, (_literal(q), top_k)).fetchall()}
                spent.append((time.perf_counter() - t0) * 1000)
                recall.append(len(got & want) / max(len(want), 1))
            hnsw.append((ef, _p50(spent), float(np.mean(recall))))
        extra = _vectors(1000, base, rng)
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_vectors(session_id, embedding) VALUES ('mine', %s::vector)", [(_literal(v),) for v in extra])
        insert_ms = (time.perf_counter() - t0) * 1000
        conn.execute("DROP TABLE bench_vectors")
    return VectorRow(chunks, len(rows), _p50(in_proc), _p50(exact), tuple(hnsw), build_s, insert_ms)


def run_vectors(sizes: list[int], sessions: int, n_queries: int, pg_url: str | None, show: bool = True) -> list[VectorRow]:
    embedder = load_embedder(None)
    if embedder is None:
        raise RuntimeError("the vector benchmark needs the embedding model")
    texts = list(dict.fromkeys(e["payload"]["content"][:1000] for e in session_events(min(max(sizes), 10_000), unique=10_000)))
    base = np.vstack([embedder.embed(texts[i : i + 64]) for i in progress(range(0, len(texts), 64), "embed texts", enabled=show)])
    qvecs = embedder.embed(queries(n_queries)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="bench-pgvec-") as tmp:
        server = start_pg(Path(tmp) / "pg", pg_url)
        try:
            url = server.create_database("vec")
            return [_measure(url, n, sessions, base.astype(np.float32), qvecs, show) for n in sizes]
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pg_vectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", default="10000,100000")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--pg-url", default=None, help="an existing server (default: a private pgserver)")
    args = parser.parse_args(argv)
    rows = run_vectors([int(x) for x in args.chunks.split(",")], args.sessions, args.queries, args.pg_url)
    for row in rows:
        print(asdict(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
