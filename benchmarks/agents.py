"""Section H on its own: real coding-agent tool loops through the running proxy (issue 18).

    python -m benchmarks.agents --write          # all 23 trajectories at 8,000 / 16,000 / 32,000, then section H
                                                 # spliced into benchmarks/RESULTS.md, results.json["H"] and the README headline
    python -m benchmarks.agents --save run.json  # keep the step records of the run (to render it again)
    python -m benchmarks.agents --workers 3 ...  # three processes at once, each with its own fake and proxy
    python -m benchmarks.agents --from run.json --before main.json --write   # render a saved run, with an earlier one as "before"
    python -m benchmarks.agents --budgets 8000 --only pyvista --steps 30     # a quick look: prints the figures, writes nothing
    python -m benchmarks.agents --only marshmallow,pvlib,pydicom,astroid --write-tuning   # the tuning split as section H's
                                                 # sub-section; the held-out tables stay as they are

`python -m benchmarks.run_all` runs the same replay as its section H (and a small form with
`--quick`). The trajectories are read from `--agent-traces` (default
`../shared/data/agent-traces/mini-swe-agent-dev`, relative to the repository); without them the
section is skipped with a message. How the replay works: `benchmarks/agent_replay.py`; the
metrics: `benchmarks/agent_metrics.py`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from multiprocessing import get_context
from typing import Any

from .agent_replay import BUDGETS, AgentsRun, load_journal, load_run, run_jobs, save_run
from .agent_traces import DEFAULT_TRACES, Trajectory, load_trajectories
from .common import splice_section
from .corpus import REPO_ROOT
from .headline import main as write_headline
from .machine import describe_machine, load_average
from .report_agents import section_h, summaries

__all__ = ["main", "measure", "write_section", "quick_trajectories", "traces_or_reason", "load_runs"]

QUICK_BUDGET = 2000
QUICK_STEPS = 10


def _path(raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def traces_or_reason(raw: str) -> tuple[list[Trajectory], str | None]:
    """The trajectories under `raw`, or none and why (the section is then skipped, not failed)."""
    folder = _path(raw)
    found = load_trajectories(folder) if folder.is_dir() else []
    if not found:
        return [], f"agent trajectories not found at {folder} (pass --agent-traces PATH)"
    return found, None


def quick_trajectories(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The smoke run's share: the first trajectory of each split."""
    return [next(t for t in trajectories if t.split == split) for split in ("tuning", "held_out")
            if any(t.split == split for t in trajectories)]


def _shares(jobs: list[tuple[Trajectory, int]], workers: int, max_steps: int | None) -> list[list[tuple[Trajectory, int]]]:
    """`jobs` dealt to `workers` by their number of steps, largest first, each to the lightest share."""
    shares: list[list[tuple[Trajectory, int]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for job in sorted(jobs, key=lambda j: -len(list(j[0].steps())[:max_steps])):
        k = load.index(min(load))
        shares[k].append(job)
        load[k] += len(list(job[0].steps())[:max_steps])
    return [share for share in shares if share]


def _replay(trajectories: list[Trajectory], folder: Path, budgets: tuple[int, ...], max_steps: int | None,
            embedding_model: str | None, show_progress: bool, workers: int, journal: Path | None) -> AgentsRun:
    jobs = [(t, b) for b in budgets for t in trajectories]
    if workers < 2 or len(jobs) < 2:
        return run_jobs([(t, b) for t in trajectories for b in budgets], folder, max_steps, embedding_model, show_progress,
                        journal / "w0.jsonl" if journal else None)
    # Each worker runs its own fake and its own `serve`: the sessions share nothing but the machine
    # (the latency pairs then include that contention; the section says so).
    started = time.perf_counter()
    shares = _shares(jobs, workers, max_steps)
    for k in range(len(shares)):
        (folder / f"w{k}").mkdir()
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=get_context("spawn")) as pool:
        parts = [job.result() for job in [pool.submit(run_jobs, share, folder / f"w{k}", max_steps, embedding_model, False,
                                                      journal / f"w{k}.jsonl" if journal else None)
                                          for k, share in enumerate(shares)]]
    order = {(t.name, b): n for n, (t, b) in enumerate(jobs)}
    steps = sorted((s for part in parts for s in part.steps), key=lambda s: (order[(s.trajectory, s.budget)], s.step))
    replayed = {name: (name, split, n) for part in parts for name, split, n in part.trajectories}
    return AgentsRun(budgets, tuple(replayed[t.name] for t in trajectories), tuple(steps), parts[0].embedding_model,
                     time.perf_counter() - started)


def measure(trajectories: list[Trajectory], command: str, budgets: tuple[int, ...] = BUDGETS, max_steps: int | None = None,
            embedding_model: str | None = None, show_progress: bool = True, label: str = "",
            workers: int = 1, journal: Path | None = None) -> tuple[AgentsRun, dict[str, Any]]:
    """Run the replay (`workers` > 1: that many processes, each with its own fake and `serve`,
    replaying a share of the (trajectory, budget) pairs) and describe how it was made (command,
    commit, date, load average)."""
    machine = describe_machine()
    load_start = load_average()
    started = datetime.now(timezone.utc)
    meta = {"command": command, "commit": machine.commit, "date": started.strftime("%Y-%m-%d %H:%M UTC"), "cores": machine.cores,
            "load_start": list(load_start), "load_end": list(load_start), "label": label, "workers": workers,
            "embedding_model": embedding_model or "sentence-transformers/all-MiniLM-L6-v2", "started": time.time()}
    if journal is not None:
        journal.mkdir(parents=True, exist_ok=False)
        (journal / "meta.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        run = _replay(trajectories, Path(tmp), budgets, max_steps, embedding_model, show_progress, workers, journal)
    meta["load_end"] = list(load_average())
    return run, meta


def _same_measured_code(commits: list[str]) -> bool:
    """Whether clean commits differ only outside what a replay measures and runs."""
    if any(" " in c or c == "unknown" for c in commits):
        return False
    paths = ["memory", "proxy", "testkit", "benchmarks/agent_replay.py", "benchmarks/agent_metrics.py", "benchmarks/agent_traces.py"]
    return all(subprocess.run(["git", "diff", "--quiet", commits[0], c, "--", *paths], cwd=REPO_ROOT, check=False).returncode == 0
               for c in commits[1:])


def load_runs(raw: str) -> tuple[AgentsRun, dict[str, Any]]:
    """The step records saved in one file, or in several (comma-separated) from runs of the same
    commit made at the same time (say, every trajectory at one budget and some at others), as one run."""
    loaded = [load_journal(_path(p)) if _path(p).is_dir() else load_run(_path(p)) for p in raw.split(",") if p]
    if len(loaded) == 1:
        return loaded[0]
    commits = sorted({meta["commit"] for _, meta in loaded})
    if len(commits) != 1 and not _same_measured_code(commits):
        raise SystemExit(f"the saved runs measured different code ({', '.join(commits)}); render them apart")
    runs = [run for run, _ in loaded]
    metas = [meta for _, meta in loaded]
    trajectories = {name: (name, split, n) for run in runs for name, split, n in run.trajectories}
    budgets = tuple(sorted({b for run in runs for b in run.budgets}))
    steps = tuple(sorted((s for run in runs for s in run.steps), key=lambda s: (s.budget, s.trajectory, s.step)))
    if len({(s.trajectory, s.budget, s.step) for s in steps}) != len(steps):
        raise SystemExit("the saved runs replayed the same step at the same budget twice; render them apart")
    run = AgentsRun(budgets, tuple(sorted(trajectories.values())), steps, runs[0].embedding_model, max(r.seconds for r in runs))
    meta = {**metas[0], "command": "; ".join(m["command"] for m in metas) + " (at the same time)",
            "commit": " / ".join(commits) + (" (the same memory/, proxy/, testkit/ and replay code)" if len(commits) > 1 else ""),
            "load_end": max((m["load_end"] for m in metas), key=lambda x: x[0]),
            "workers": sum(int(m.get("workers") or 1) for m in metas), "journal": any(m.get("journal") for m in metas)}
    return run, meta


def write_section(out: Path, h: dict[str, Any], tuning: bool = False) -> None:
    """Section H from `h`; with `tuning`, `h` is a run of the tuning split, kept as the section's
    tuning sub-section (the held-out tables stay as they are). Either keeps the other."""
    results_path, markdown_path = out / "results.json", out / "RESULTS.md"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    earlier = results.get("H") or {}
    if tuning:
        if not earlier:
            raise SystemExit("--write-tuning: results.json has no section H to add the tuning split to")
        if any(row["split"] != "tuning" for row in h["rows"]):
            raise SystemExit("--write-tuning: the run has trajectories outside the tuning split")
        h = {**earlier, "tuning": h}
    elif earlier.get("tuning"):
        h = {**h, "tuning": earlier["tuning"]}
    results["H"] = h
    results.get("skipped", {}).pop("H", None)
    results_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    markdown = markdown_path.read_text(encoding="utf-8") if markdown_path.exists() else "# memory-runtime benchmark results\n"
    markdown_path.write_text(splice_section(markdown, "H", section_h(h)), encoding="utf-8")
    if out.resolve() == (REPO_ROOT / "benchmarks").resolve():
        write_headline([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent-traces", default=DEFAULT_TRACES, help="folder of *.traj.json (relative paths: from the repo root)")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--only", default="", help="comma-separated parts of trajectory names to replay (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="replay only the first N steps of each trajectory")
    parser.add_argument("--embedding-model", default=None, help="the proxy's embedding model (default: its default)")
    parser.add_argument("--workers", type=int, default=1, help="replay in this many processes, each with its own fake and proxy")
    parser.add_argument("--save", default=None, help="write the run's step records here (JSON)")
    parser.add_argument("--journal", default=None, help="a new folder that gets each trajectory's records as soon as it is done "
                        "(--from FOLDER renders what a run cut short finished)")
    parser.add_argument("--from", dest="from_", default=None, help="no replay: render the step records saved in this file "
                        "(or in these comma-separated files of one commit)")
    parser.add_argument("--before", default=None, help="step records of an earlier run (file or files), shown as 'before'")
    parser.add_argument("--write", action="store_true", help="splice section H into RESULTS.md and results.json under --out")
    parser.add_argument("--write-tuning", action="store_true", help="a run of the tuning split only: write it as section H's "
                        "tuning sub-section (the held-out tables stay)")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--label", default="", help="what the measured code is, when its commit does not say (shown in the section)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.from_:
        run, meta = load_runs(args.from_)
    else:
        trajectories, reason = traces_or_reason(args.agent_traces)
        if reason:
            print(f"section H skipped: {reason}")
            return 0
        wanted = [w for w in args.only.split(",") if w]
        trajectories = [t for t in trajectories if not wanted or any(w in t.name for w in wanted)]
        command = "python -m benchmarks.agents " + shlex.join(argv if argv is not None else sys.argv[1:])
        run, meta = measure(trajectories, command.strip(), tuple(int(b) for b in args.budgets.split(",")), args.steps,
                            args.embedding_model, not args.no_progress, args.label, workers=args.workers,
                            journal=_path(args.journal) if args.journal else None)
        if args.save:
            save_run(run, meta, _path(args.save))
    before = None
    if args.before:
        earlier, earlier_meta = load_runs(args.before)
        before = summaries(earlier, earlier_meta)
    h = summaries(run, meta, before)
    for row in h["rows"]:
        print(json.dumps({k: row[k] for k in ("split", "budget", "steps", "raw_vs_resend", "cached_share", "cost", "rejected",
                                              "over_budget", "recall", "needed")} | {"window": row["window"], "added_p50": row["added_ms"]["p50"]}))
    if args.write or args.write_tuning:
        write_section(_path(args.out), h, tuning=args.write_tuning)
        print(f"wrote section H into {_path(args.out) / 'RESULTS.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
