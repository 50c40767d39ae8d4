"""Run every benchmark and write RESULTS.md, results.json and the PNG plots (and, when writing to
benchmarks/, the README's headline figures through `benchmarks.headline`):

    python -m benchmarks.run_all                 # the full run (~20-25 min on 2 cores)
    python -m benchmarks.run_all --quick         # smoke sizes, well under a minute; used by the test suite
    python -m benchmarks.run_all --sections AB   # a subset (A session, B LoCoMo, C proxy, D scale, E stress,
                                                 # F cost under prompt caching, H agents through the proxy,
                                                 # I Claude Code under Anthropic's cache rule)
    python -m benchmarks.run_all --postgres      # also B, D, E on PostgreSQL (section G); --pg-url URL: an existing server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memory.recall.embeddings import load_embedder
from testkit.pg import PgServer

from .agent_traces import DEFAULT_TRACES
from .agents import QUICK_BUDGET, QUICK_STEPS, measure, quick_trajectories, traces_or_reason
from .anthropic_cost import HEADING as SECTION_I, REAL_TURNS, results_i, run_section, section_i
from .cache_cost import BUDGETS as COST_BUDGETS
from .cache_cost import CostResult, run_cache_cost
from .corpus import REPO_ROOT
from .headline import main as write_headline
from .litellm_peer import default_bin
from .locomo import load_locomo
from .machine import describe_machine, load_average
from .overhead import OverheadResult, run_overhead
from .pg_vectors import run_vectors
from .plots import plot_overhead, plot_recall, plot_scale, plot_tokens_per_turn
from .postgres import PostgresResult, RecallPair, describe, pg_server
from .recall import OURS, OURS_PG, RecallResult, quick_selection, run_recall
from .report import RunInfo, render
from .report_cost import DEV, plot_cost_per_turn, section_f, summaries
from .report_agents import section_h
from .report_agents import summaries as agents_summaries
from .report_pg import render_postgres
from .scale import ScaleResult, probe_row, run_scale
from .section_a import SectionA, run_section_a
from .stress import StressResult
from .stress import run as run_stress

__all__ = ["main", "build_parser"]

DEFAULT_LOCOMO = "../shared/data/locomo/locomo10.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (structure and invariants, not figures)")
    parser.add_argument("--locomo", default=DEFAULT_LOCOMO, help="path of locomo10.json (relative paths: from the repo root)")
    parser.add_argument("--out", default="benchmarks", help="folder for RESULTS.md, results.json and plots (relative: repo root)")
    parser.add_argument("--sections", default="ABCDEFHI", help="which sections to run, e.g. AB")
    parser.add_argument("--agent-traces", default=DEFAULT_TRACES, help="folder of agent trajectories for section H "
                        "(relative paths: from the repo root)")
    parser.add_argument("--litellm-bin", default=None, help="LiteLLM proxy executable for the peer in section C "
                        f"(default: {default_bin()} when present; see benchmarks/litellm_peer.py)")
    parser.add_argument("--scale-sizes", default=None, help="comma-separated session sizes for section D")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--postgres", action="store_true", help="also run B, D and E on the PostgreSQL store (section G)")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server for --postgres (default: a private pgserver for the run)")
    parser.add_argument("--pg-scale-sizes", default=None, help="session sizes for section D on PostgreSQL (default 10000,100000)")
    return parser


def _path(raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _litellm(raw: str | None, quick: bool) -> Path | None:
    if raw:
        return _path(raw)
    if quick:
        return None  # the smoke run never starts a second proxy server
    found = default_bin()
    return found if found.exists() else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with ExitStack() as stack:  # the PostgreSQL server of --postgres stops however the run ends
        server = stack.enter_context(pg_server(args.pg_url)) if args.postgres else None
        return _run(args, argv, server)


def _run(args: argparse.Namespace, argv: list[str] | None, server: PgServer | None) -> int:
    sections = set(args.sections.upper())
    show = not args.no_progress
    out = _path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    started = datetime.now(timezone.utc)
    machine = describe_machine()  # before the run rewrites its own tracked outputs (they would read as local changes)
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    embedder = load_embedder(None)
    a: SectionA | None = None
    b: RecallResult | None = None
    c: OverheadResult | None = None
    d: ScaleResult | None = None
    e: list[tuple[str, StressResult]] = []

    pg = PostgresResult(describe(server)) if server is not None else None

    if "A" in sections:
        t0 = time.perf_counter()
        a = asyncio.run(run_section_a(embedder, args.quick, show))
        seconds["A"] = time.perf_counter() - t0
        plot_tokens_per_turn(a.session, out / "tokens_per_turn.png")
    if "B" in sections:
        locomo = _path(args.locomo)
        if not locomo.exists():
            skipped["B"] = f"LoCoMo data not found at {locomo} (pass --locomo PATH)"
        else:
            t0 = time.perf_counter()
            conversations = load_locomo(locomo)
            selected = quick_selection(conversations) if args.quick else conversations
            pg_db = server.create_database("locomo") if server is not None else None
            b = asyncio.run(run_recall(selected, embedder=embedder, show_progress=show, postgres_url=pg_db))
            seconds["B"] = time.perf_counter() - t0
            if pg is not None:
                budgets = sorted({s.budget for s in b.scores})
                pg.recall = [RecallPair(x, b.score(OURS, x).strict, b.score(OURS_PG, x).strict) for x in budgets]
            plot_recall(b, out / "recall_vs_budget.png")
            if args.quick:
                notes.append("section B ran on the first 150 turns of the first conversation and up to 3 questions per category")
    if "C" in sections:
        t0 = time.perf_counter()
        sizes, iterations = ((10,), 5) if args.quick else ((10, 50, 300), 100)
        c = run_overhead(sizes, iterations, _litellm(args.litellm_bin, args.quick), show)
        seconds["C"] = time.perf_counter() - t0
        plot_overhead(c, out / "proxy_overhead.png")
    if "D" in sections:
        t0 = time.perf_counter()
        if args.scale_sizes:
            sizes = tuple(int(s) for s in args.scale_sizes.split(","))
        else:
            sizes = (50, 200) if args.quick else (1_000, 10_000, 100_000)
        queries, history_turns = (5, 60) if args.quick else (30, 300)
        d = asyncio.run(run_scale(sizes, queries, unique=10_000, embedder=embedder, history_turns=history_turns, show_progress=show))
        seconds["D"] = time.perf_counter() - t0
        if pg is not None and server is not None:
            t0 = time.perf_counter()
            raw = args.pg_scale_sizes or ("50" if args.quick else "10000,100000")
            pg.scale = [probe_row(int(n), queries, d.budget, d.unique, show, server.url) for n in raw.split(",")]
            pg.scale_sqlite = list(d.rows)
            pg.vectors = run_vectors([300] if args.quick else [10_000, 100_000], 5, 5 if args.quick else 30, server.url, show)
            seconds["D on PostgreSQL"] = time.perf_counter() - t0
        plot_scale(d, out / "latency_vs_size.png")

    if "E" in sections:
        t0 = time.perf_counter()
        # The load: 100 clients over 20 sessions for 60 s, with lexical memory and with the model.
        seconds_, clients, sessions_, cap, single = (3.0, 4, 2, 60, 20) if args.quick else (60.0, 100, 20, 200_000, 300)
        for model in ("none", "sentence-transformers/all-MiniLM-L6-v2"):
            # LiteLLM's proxy takes the same load right after ours, in each run (issue 23).
            e.append((model, run_stress(seconds_, clients, sessions_, cap, embedding_model=model, single_requests=single,
                                        litellm_bin=_litellm(args.litellm_bin, args.quick))))
            if args.quick:
                break
        seconds["E"] = time.perf_counter() - t0
        if pg is not None and server is not None:
            t0 = time.perf_counter()
            pg.stress = [e[0][1]] + [
                run_stress(seconds_, clients, sessions_, cap, embedding_model="none", single_requests=single,
                           storage_url=server.create_database("stress"), instances=n)
                for n in (1, 2, 3)
            ]
            seconds["E on PostgreSQL"] = time.perf_counter() - t0

    f: CostResult | None = None
    if "F" in sections:
        locomo = _path(args.locomo)
        if not locomo.exists():
            skipped["F"] = f"LoCoMo data not found at {locomo} (pass --locomo PATH)"
        else:
            t0 = time.perf_counter()
            conversations = load_locomo(locomo)
            with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
                if args.quick:
                    f = run_cache_cost(quick_selection(conversations), Path(tmp), (4000,), coding_turns=12, show_progress=show)
                else:
                    f = run_cache_cost(conversations, Path(tmp), COST_BUDGETS, policies=(("recall", (4000,)),), show_progress=show)
            seconds["F"] = time.perf_counter() - t0
            plot_cost_per_turn(f, out / "cost_per_turn.png", name=f.conversations[-1].name if args.quick else DEV[0])
            if args.quick:
                notes.append("section F replayed the first 150 turns of the first conversation and a 12-turn coding session at budget 4,000")

    i_rows: list[tuple[int, dict[str, Any]]] | None = None
    i_real: list[tuple[int, dict[str, Any]]] = []
    if "I" in sections and args.quick:
        skipped["I"] = "not in --quick (the smallest useful session takes ~10 s); run python -m benchmarks.anthropic_cost"
    elif "I" in sections:
        t0 = time.perf_counter()
        i_rows = run_section()
        i_real = run_section(REAL_TURNS, size="claude-code")
        seconds["I"] = time.perf_counter() - t0

    command = "python -m benchmarks.run_all" + ("" if not argv and len(sys.argv) <= 1 else " " + shlex.join(argv if argv is not None else sys.argv[1:]))
    h: dict[str, Any] | None = None
    if "H" in sections:
        trajectories, reason = traces_or_reason(args.agent_traces)
        if reason:
            skipped["H"] = reason
        else:
            t0 = time.perf_counter()
            if args.quick:  # lexical memory: the smoke run checks the wiring, and a model load would double its time
                run, meta = measure(quick_trajectories(trajectories), command, (QUICK_BUDGET,), QUICK_STEPS, "none", show)
                notes.append(f"section H replayed the first {QUICK_STEPS} steps of {len(run.trajectories)} trajectories at budget "
                             f"{QUICK_BUDGET:,}, lexical memory")
            else:
                # Three replays at once, one proxy process each: one after the other would take ~3x as long.
                run, meta = measure(trajectories, command, show_progress=show, workers=3)
            h = agents_summaries(run, meta)
            seconds["H"] = time.perf_counter() - t0
    info = RunInfo(command=command, date=started.strftime("%Y-%m-%d %H:%M UTC"), quick=args.quick, machine=machine,
                   load_start=load_start, load_end=load_average(), seconds=seconds, notes=notes)
    markdown = render(info, a, b, c, d, skipped, e)
    markdown += "\n".join(section_f(f) if f else ["## F. Cost under prompt caching", "", f"Not run: {skipped.get('F', 'not selected')}", ""]) + "\n"
    markdown += "\n".join(render_postgres(pg))
    markdown += "\n" + "\n".join(section_h(h, skipped.get("H")))
    markdown = markdown.rstrip("\n") + "\n\n" + "\n".join(section_i(i_rows, command, machine.commit, i_real) if i_rows else
                                                          [SECTION_I, "", f"Not run: {skipped.get('I', 'not selected')}", ""])
    (out / "RESULTS.md").write_text(markdown, encoding="utf-8")
    payload = {"run": info, "A": a, "B": b, "C": c, "D": d, "E": e, "F": summaries(f) if f else None, "G": pg, "H": h,
               "skipped": skipped, "I": results_i(i_rows, command, machine.commit, i_real) if i_rows else None}
    (out / "results.json").write_text(json.dumps(_jsonable(payload), indent=1) + "\n", encoding="utf-8")
    if out.resolve() == (REPO_ROOT / "benchmarks").resolve():
        write_headline([])  # the README's figures follow the results file they come from
    print(f"wrote {out / 'RESULTS.md'} ({', '.join(f'{k} {v:.0f}s' for k, v in seconds.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
