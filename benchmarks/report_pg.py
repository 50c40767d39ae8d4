"""RESULTS.md section G: PostgreSQL (several instances sharing one memory), from `benchmarks.postgres`."""

from __future__ import annotations

from .pg_vectors import VectorRow
from .postgres import PostgresResult
from .scale import ScaleRow

__all__ = ["render_postgres", "RECALL_TOLERANCE", "COMPILE_RATIO"]

RECALL_TOLERANCE = 0.01  # issue 11: strict recall on PostgreSQL within 0.01 of SQLite at every budget
COMPILE_RATIO = 1.5  # issue 11: compile p50 at 10k events within 1.5x of SQLite's


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def _recall(pg: PostgresResult) -> list[str]:
    if not pg.recall:
        return ["LoCoMo recall on PostgreSQL: not run (section B not selected or LoCoMo missing).", ""]
    out = ["### LoCoMo strict recall: the same runtime on both stores", "",
           "memory-runtime fed the same turns into a SQLite file and a PostgreSQL database, the same questions compiled on both "
           "(section B's setup). PostgreSQL ranks with its own full-text machinery (see `memory/store/postgres/fts.py`).", "",
           "| Budget | SQLite | PostgreSQL | Difference |", "|---:|---:|---:|---:|"]
    out += [f"| {p.budget:,} | {p.sqlite:.3f} | {p.postgres:.3f} | {p.difference:+.3f} |" for p in pg.recall]
    worst = max(abs(p.difference) for p in pg.recall)
    return out + ["", f"Target: within {RECALL_TOLERANCE} at every budget: largest difference {worst:.3f}, {_met(worst <= RECALL_TOLERANCE)}.", ""]


def _scale_rows(rows: list[ScaleRow], store: str) -> list[str]:
    return [f"| {store} | {r.events:,} | {r.store_only_events_per_s:,.0f} | {r.ingest_s:,.1f} + {r.flush_s:,.1f} | "
            f"{r.compile.p50:,.1f} / {r.compile.p95:,.1f} | {r.compile_excl_embed.p50:,.1f} / {r.compile_excl_embed.p95:,.1f} | "
            f"{r.cold_compile_ms:,.0f} | {r.rss_mb:,.0f} (peak {r.peak_rss_mb:,.0f}) | {r.db_mb:,.1f} |" for r in rows]


def _scale(pg: PostgresResult) -> list[str]:
    if not pg.scale:
        return ["Scale on PostgreSQL: not run (section D not selected).", ""]
    out = ["### Scale (section D's probe on a fresh PostgreSQL database per size)", "",
           "RSS is the probe process's (the runtime with the model); the database server's memory is not in it. DB size is "
           "`pg_database_size` (indexes and free space included).", "",
           "| Store | Events | Store only (events/s) | Ingest + flush (s) | Compile p50 / p95 (ms) | Excl. query embedding p50 / p95 | "
           "First compile after reopen (ms) | RSS after (MiB) | DB (MiB) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    sizes = {r.events for r in pg.scale}
    out += _scale_rows([r for r in pg.scale_sqlite if r.events in sizes], "SQLite") + _scale_rows(pg.scale, "PostgreSQL")
    lite = {r.events: r for r in pg.scale_sqlite}
    for row in pg.scale:
        base = lite.get(row.events)
        if base is not None and base.compile_excl_embed.p50 > 0:
            ratio = row.compile_excl_embed.p50 / base.compile_excl_embed.p50
            flag = f", target ≤ {COMPILE_RATIO}×: {_met(ratio <= COMPILE_RATIO)}" if row.events == 10_000 else ""
            out.append(f"- {row.events:,} events: compile p50 (query embedding excluded) {row.compile_excl_embed.p50:,.1f} ms on "
                       f"PostgreSQL vs {base.compile_excl_embed.p50:,.1f} ms on SQLite: {ratio:.2f}×{flag}")
    return out + [""]


def _stress(pg: PostgresResult) -> list[str]:
    if not pg.stress:
        return ["Stress on PostgreSQL: not run (section E not selected).", ""]
    out = ["### Stress: one instance on SQLite, one to three instances sharing one PostgreSQL database", "",
           "Section E's load (lexical memory) with client `i` on instance `i % instances`, so every session's requests reach "
           "every instance at once; lost and duplicated turns are checked against the export through the first instance. All "
           "processes (clients, fake upstream, proxies, PostgreSQL) share this machine's cores, so more instances cannot add "
           "throughput here; the rows show what sharing costs and that nothing is lost.", "",
           "| Store | Instances | Requests (completed) | Throughput (req/s) | Errors | Lost | Duplicated | p50 / p99 under load (ms) | "
           "Added p50 / p99, 1 client, paired (ms) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in pg.stress:
        out.append(f"| {'SQLite' if r.store == 'sqlite' else 'PostgreSQL'} | {r.instances} | {r.requests:,} ({r.completed:,}) | "
                   f"{r.throughput:,.1f} | {sum(r.errors.values())} | {r.lost} | {r.duplicated} | {r.proxy_ms[0]:,.1f} / {r.proxy_ms[1]:,.1f} | "
                   f"{r.added_single.p50:,.1f} / {r.added_single.p99:,.1f} |")
    multi = [r for r in pg.stress if r.instances == 3]
    if multi:
        r = multi[0]
        ok = r.lost == 0 and r.duplicated == 0 and not r.errors
        out += ["", f"Target: 0 lost and 0 duplicated turns with 3 instances × {r.clients} clients for {r.seconds:g} s: "
                f"{r.lost} lost, {r.duplicated} duplicated, {sum(r.errors.values())} errors, {_met(ok and r.clients >= 100 and r.seconds >= 60)}"
                + ("" if r.clients >= 100 and r.seconds >= 60 else " (a shorter run than the target's)") + "."]
    return out + [""]


def _vectors(rows: list[VectorRow]) -> list[str]:
    if not rows:
        return []
    efs = [ef for ef, _, _ in rows[0].hnsw]
    out = ["### Dense search: in process or pgvector?", "",
           "The same vectors (all-MiniLM-L6-v2 embeddings of the scale workload; one session holding the measured chunks among "
           "others) searched for the runtime's dense candidate pool (top 450) by the in-process matrix product the runtime uses, "
           "and by pgvector 0.6 (HNSW with the session as a filter, and exact). Recall: share of the exact top 450 returned.", "",
           "| Session chunks | Table vectors | In process p50 (ms) | Exact pgvector p50 (ms) | "
           + " | ".join(f"HNSW ef {ef} p50 (ms) / recall" for ef in efs) + " | HNSW build (s) | 1,000 inserts with HNSW (ms) |",
           "|---:|---:|---:|---:|" + "---:|" * len(efs) + "---:|---:|"]
    for r in rows:
        out.append(f"| {r.chunks:,} | {r.total:,} | {r.in_process_ms:,.2f} | {r.exact_ms:,.1f} | "
                   + " | ".join(f"{ms:,.1f} / {rec:.2f}" for _, ms, rec in r.hnsw) + f" | {r.build_s:,.1f} | {r.insert_ms_per_1k:,.0f} |")
    best = [max(r.hnsw, key=lambda h: h[2]) for r in rows]
    out += ["", "Reading: " + "; ".join(
        f"at {r.chunks:,} chunks the in-process search takes {r.in_process_ms:,.1f} ms for exact results, pgvector's exact "
        f"search {r.exact_ms:,.1f} ms, and its best HNSW setting returns {b[2]:.0%} of the true top 450 in {b[1]:,.1f} ms"
        for r, b in zip(rows, best, strict=True)) + f"; keeping an HNSW index costs {rows[0].insert_ms_per_1k / 1000:,.1f} ms per "
        "inserted vector.", ""]
    return out


def render_postgres(pg: PostgresResult | None) -> list[str]:
    if pg is None:
        return ["## G. PostgreSQL", "", "Not run: pass `--postgres` (and `--pg-url URL` for an existing server).", ""]
    return (["## G. PostgreSQL (several instances, one memory)", "", f"Server: {pg.server}.", ""]
            + _recall(pg) + _scale(pg) + _stress(pg) + _vectors(pg.vectors))
