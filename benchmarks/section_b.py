"""Section B on its own: LoCoMo evidence recall, spliced into RESULTS.md, results.json and the
README's headline without rerunning the other sections (`run_all` rewrites the whole file).

    python -m benchmarks.section_b --locomo ../shared/data/locomo/locomo10.json [--write]

Without `--write` it prints strict recall per split; with it, section B of benchmarks/RESULTS.md is
replaced (with a line naming this run: command, commit, date, load), results.json's "B" too, and
the headline is regenerated from results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memory.recall.embeddings import load_embedder

from .common import splice_section
from .corpus import REPO_ROOT
from .headline import main as write_headline
from .locomo import load_locomo
from .machine import describe_machine, load_average
from .plots import plot_recall
from .recall import OURS, RecallResult, quick_selection, run_recall
from .report_recall import section_b

__all__ = ["main"]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.section_b", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locomo", default="../shared/data/locomo/locomo10.json", help="locomo10.json (relative: the repo root)")
    parser.add_argument("--write", action="store_true", help="splice section B into benchmarks/RESULTS.md and results.json")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke size (the first 150 turns of one conversation)")
    args = parser.parse_args(argv)
    path = Path(args.locomo).expanduser()
    path = path if path.is_absolute() else REPO_ROOT / path
    machine, load_start, started = describe_machine(), load_average(), datetime.now(timezone.utc)
    conversations = load_locomo(path)
    selected = quick_selection(conversations) if args.quick else conversations
    result: RecallResult = asyncio.run(run_recall(selected, load_embedder(None), show_progress=not args.no_progress))
    budgets = sorted({s.budget for s in result.scores})
    for info in result.splits:
        print(f"{info.name}: " + " / ".join(f"{result.score(OURS, b, info.name).strict:.3f}" for b in budgets))
    if not args.write:
        return 0
    command = "python -m benchmarks.section_b " + shlex.join(argv if argv is not None else sys.argv[1:])
    load_end = load_average()
    run = (f"Run: `{command.strip()}` on commit {machine.commit}, {started.strftime('%Y-%m-%d %H:%M UTC')}, load average "
           f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end (section B alone; the header above names the last full run).")
    section = section_b(result)
    section[1:1] = ["", run]
    out = REPO_ROOT / "benchmarks"
    plot_recall(result, out / "recall_vs_budget.png")
    markdown = (out / "RESULTS.md").read_text(encoding="utf-8")
    (out / "RESULTS.md").write_text(splice_section(markdown, "B", section), encoding="utf-8")
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    payload["B"] = _jsonable(result)
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    write_headline([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
