"""Section H of RESULTS.md (agents through the proxy) and what results.json keeps of it. Pure:
step records in, summaries and markdown out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .agent_replay import AgentsRun, StepRecord
from .agent_traces import HELD_OUT, TUNING
from .common import percentiles

__all__ = ["summarize", "summaries", "section_h", "tuning_section", "RATIOS", "TARGETS", "TARGET_BUDGET", "HEADING"]

RATIOS = (0.1, 0.25, 0.5)
HEADING = "## H. Agents: real tool loops through the proxy"
TUNING_HEADING = "### The tuning split"
# Issue 18's targets, on the held-out trajectories at budget 8,000.
TARGET_BUDGET = 8000
TARGETS = {"raw_vs_resend": 0.45, "0.1": 0.80, "0.25": 0.60, "recall": 0.90, "rejected": 0, "added_p50_ms": 30.0}
SPLITS = (("held_out", "held out (" + ", ".join(HELD_OUT) + ")"), ("tuning", "tuning (" + ", ".join(TUNING) + ")"), ("all", "all"))


def _cost(tokens: int, cached: int, sent: int, sent_cached: int, r: float) -> float:
    base = (sent - sent_cached) + r * sent_cached
    return ((tokens - cached) + r * cached) / base if base else float("nan")


def summarize(steps: Sequence[StepRecord]) -> dict[str, Any]:
    """The figures of one group of steps (a split at a budget)."""
    sent = sum(s.sent for s in steps)
    sent_cached = sum(s.sent_cached for s in steps)
    forwarded = sum(s.forwarded for s in steps)
    cached = sum(s.cached for s in steps)
    window = sum(s.window for s in steps)
    window_cached = sum(s.window_cached for s in steps)
    needed = sum(s.needed for s in steps)

    def share(part: float, whole: float) -> float:
        return part / whole if whole else float("nan")

    return {
        "trajectories": len({s.trajectory for s in steps}), "steps": len(steps), "sent": sent, "forwarded": forwarded,
        "max_forwarded": max((s.forwarded for s in steps), default=0),
        "raw_vs_resend": share(forwarded, sent), "cached_share": share(cached, forwarded), "resend_cached_share": share(sent_cached, sent),
        "cost": {str(r): _cost(forwarded, cached, sent, sent_cached, r) for r in RATIOS},
        "rejected": sum(1 for s in steps if s.status == 400), "failed": sum(1 for s in steps if s.status not in (200, 400)),
        "over_budget": sum(1 for s in steps if s.mode == "over_budget"), "modes": dict(sorted(Counter(s.mode for s in steps).items())),
        "needed": needed, "recall": share(sum(s.carried for s in steps), needed),
        # Needed identifiers the prompt held somewhere (with or without their line), where recorded.
        "named": share(sum(s.named for s in steps if s.named >= 0), sum(s.needed for s in steps if s.named >= 0)),
        "window": {"raw_vs_resend": share(window, sent), "cached_share": share(window_cached, window),
                   "cost": {str(r): _cost(window, window_cached, sent, sent_cached, r) for r in RATIOS},
                   "recall": share(sum(s.window_carried for s in steps), needed), "over_budget": sum(1 for s in steps if s.window_over)},
        "added_ms": asdict(percentiles(s.proxy_ms - s.direct_ms for s in steps)),
        "direct_ms": asdict(percentiles(s.direct_ms for s in steps)), "proxy_ms": asdict(percentiles(s.proxy_ms for s in steps)),
    }


_PER_TRAJECTORY = ("steps", "raw_vs_resend", "cached_share", "cost", "rejected", "over_budget", "needed", "recall", "window")


def _group(run: AgentsRun, split: str, budget: int) -> list[StepRecord]:
    return [s for s in run.steps if s.budget == budget and (split == "all" or s.split == split)]


def summaries(run: AgentsRun, meta: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """What results.json keeps of section H: how the run was made and every split at every budget
    (no per-step series). `before`: the same of an earlier run, shown next to this one."""
    if meta.get("parallel") and not meta.get("workers"):  # saved before `workers` existed: one process per budget
        meta = {**meta, "workers": len(run.budgets)}
    one_split = len({s.split for s in run.steps}) < 2  # then "all" would repeat that split's row
    rows = [{"split": split, "budget": budget, **summarize(_group(run, split, budget))}
            for budget in run.budgets for split, _ in SPLITS if _group(run, split, budget) and not (one_split and split == "all")]
    per_trajectory = [{"name": name, "split": split, **{k: v for k, v in summarize(picked).items() if k in _PER_TRAJECTORY}}
                      for name, split, _ in run.trajectories
                      if (picked := [s for s in run.steps if s.trajectory == name and s.budget == TARGET_BUDGET])]
    return {"meta": meta, "embedding_model": run.embedding_model, "seconds": run.seconds, "budgets": list(run.budgets),
            "trajectories": [{"name": n, "split": s, "steps": k} for n, s, k in run.trajectories], "ratios": list(RATIOS),
            "targets": TARGETS, "target_budget": TARGET_BUDGET, "rows": rows, "per_trajectory": per_trajectory, "before": before}


def _costs(cost: dict[str, float]) -> str:
    return " / ".join(f"{cost[str(x)]:.2f}×" for x in RATIOS)


def _table(h: dict[str, Any]) -> list[str]:
    labels = dict(SPLITS)
    ratios = " / ".join(map(str, RATIOS))
    out = [f"| split | budget | trajectories / steps | forwarded vs resend | cached share (resend) | cost at r={ratios} | rejected "
           "| `over_budget` | identifier recall (needed) | added ms p50 / p99 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in h["rows"]:
        out.append(f"| {labels[r['split']]} | {r['budget']:,} | {r['trajectories']} / {r['steps']:,} | {r['raw_vs_resend']:.2f}× "
                   f"| {r['cached_share']:.2f} ({r['resend_cached_share']:.2f}) | {_costs(r['cost'])} | {r['rejected']} "
                   f"| {r['over_budget']:,} | {r['recall']:.3f} ({r['needed']:,}) | {r['added_ms']['p50']:+.1f} / {r['added_ms']['p99']:+.1f} |")
    out += ["", "The clearing window on the same steps:", "",
            f"| split | budget | forwarded vs resend | cached share | cost at r={ratios} | identifier recall | steps over budget |",
            "|---|---|---|---|---|---|---|"]
    for r in h["rows"]:
        w = r["window"]
        out.append(f"| {labels[r['split']]} | {r['budget']:,} | {w['raw_vs_resend']:.2f}× | {w['cached_share']:.2f} | {_costs(w['cost'])} "
                   f"| {w['recall']:.3f} | {w['over_budget']:,} |")
    return out


def _per_trajectory(h: dict[str, Any]) -> list[str]:
    rows = h.get("per_trajectory") or []
    if not rows:
        return []
    out = [f"Each trajectory at budget {TARGET_BUDGET:,}:", "",
           "| trajectory | split | steps | forwarded vs resend | cached share | cost at r=0.25 | rejected | `over_budget` "
           "| identifier recall (needed) | clearing window: forwarded / recall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['split'].replace('_', ' ')} | {r['steps']} | {r['raw_vs_resend']:.2f}× | {r['cached_share']:.2f} "
                   f"| {r['cost']['0.25']:.2f}× | {r['rejected']} | {r['over_budget']} | {r['recall']:.3f} ({r['needed']}) "
                   f"| {r['window']['raw_vs_resend']:.2f}× / {r['window']['recall']:.3f} |")
    return out + [""]


def _targets(h: dict[str, Any]) -> list[str]:
    row = next((r for r in h["rows"] if r["split"] == "held_out" and r["budget"] == TARGET_BUDGET), None)
    if row is None:
        return [f"Targets: not measured (the run has no held-out trajectories at budget {TARGET_BUDGET:,})."]

    def met(flag: bool) -> str:
        return "met" if flag else "**not met**"

    t = TARGETS
    return [f"Targets (held out, budget {TARGET_BUDGET:,}):", "",
            f"- forwarded {row['raw_vs_resend']:.2f}× of resending everything (target ≤ {t['raw_vs_resend']:.2f}×): "
            + met(row["raw_vs_resend"] <= t["raw_vs_resend"]),
            f"- cost at r=0.1 {row['cost']['0.1']:.2f}× (target ≤ {t['0.1']:.2f}×): " + met(row["cost"]["0.1"] <= t["0.1"]),
            f"- cost at r=0.25 {row['cost']['0.25']:.2f}× (target ≤ {t['0.25']:.2f}×): " + met(row["cost"]["0.25"] <= t["0.25"]),
            f"- identifier recall {row['recall']:.3f} (target ≥ {t['recall']:.2f}; clearing window {row['window']['recall']:.3f}"
            + (f"; {row['named']:.3f} of the needed identifiers were somewhere in the forwarded prompt, with or without their line"
               if row.get("named") == row.get("named") and row.get("named") is not None else "") + "): "
            + met(row["recall"] >= t["recall"]),
            f"- {row['rejected']} requests rejected by the strict fake (target {t['rejected']}): " + met(row["rejected"] <= t["rejected"]),
            f"- largest forwarded prompt {row.get('max_forwarded', 0):,} tokens as the provider counts it (tool definition and "
            f"message framing included), {row['over_budget']} replies `over_budget`",
            f"- added latency p50 {row['added_ms']['p50']:+.1f} ms per step (target ≤ {t['added_p50_ms']:.0f} ms): "
            + met(row["added_ms"]["p50"] <= t["added_p50_ms"])]


def _run_line(meta: dict[str, Any], seconds: float) -> str:
    load0, load1 = meta.get("load_start") or (0, 0, 0), meta.get("load_end") or (0, 0, 0)
    at = meta["label"] if meta.get("label") else f"commit {meta.get('commit', '?')}"
    return (f"Run: `{meta.get('command', '?')}` on {at}, {meta.get('date', '?')}, {seconds:,.0f} s; "
            f"load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at start, "
            f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at end"
            + (f"; {_workers(meta)} replays at once, each through its own proxy process (the latency pairs include that contention)."
               if _workers(meta) > 1 else "; one replay at a time.")
            + (" Rendered from the run's journal: the trajectory-budget pairs it had finished (load at end not recorded)."
               if meta.get("journal") else ""))


def _workers(meta: dict[str, Any]) -> int:
    return int(meta.get("workers") or 1)


def section_h(h: dict[str, Any] | None, skipped: str | None = None) -> list[str]:
    """The section's markdown from its results.json entry (or why it did not run)."""
    if h is None:
        return [HEADING, "", f"Not run: {skipped or 'not selected'}", ""]
    out = [
        HEADING, "",
        "Real coding-agent trajectories (mini-swe-agent with deepseek-chat on SWE-bench dev tasks, `../shared/data/agent-traces/"
        "mini-swe-agent-dev/`, read in place) replayed through a running `memory-runtime serve` (default configuration, embedding "
        f"model `{h['embedding_model']}`) in front of the strict fake upstream, which rejects what OpenAI rejects and caches prompt "
        "prefixes by OpenAI's rule. Each trajectory is one user turn; before step i the agent sends its whole message list "
        "`messages[:i]` with the `bash` tool declared (agents resend everything), `X-Memory-Session` (one per trajectory and budget) "
        "and `X-Memory-Budget` set to the budget of the row; the fake answers with the agent's recorded step i. The budget is sent "
        "as is and counts the whole forwarded prompt (OpenAI's formula, tool definitions aside): these trajectories' system message "
        "is 20 tokens, so a rule that puts an app's large fixed part on top of the budget changes nothing here.", "",
        "*Resend everything* is the same request sent straight to the fake under its own key, right before or after the proxy's "
        "(the order alternates): its usage prices the baseline by the same cache rule, and the pair gives the proxy's added latency "
        "per step (non-streaming; one warm-up exchange before the replay is not counted). Cost = uncached + r × cached input tokens, relative to resending everything. *Rejected*: requests the fake "
        "refused (status 400) after the proxy forwarded them; *`over_budget`*: replies whose `X-Memory-Mode` said so.", "",
        "*Identifier recall*: identifiers (`[A-Za-z_][A-Za-z0-9_]{5,}`) in the agent's recorded next step (text and command) that "
        "an earlier tool output contained and that neither the system message, the task nor the latest tool output contains; the "
        "share of them the forwarded prompt carries with their context: a whole line (12+ characters, trailing whitespace aside), "
        "verbatim, of an earlier output that held the identifier or of one of the agent's own earlier steps (a bare list of names "
        "does not count). *Clearing window*: the baseline computed on the same steps: every assistant step kept, tool outputs newest "
        "first verbatim while the whole prompt fits the budget, older ones replaced by a one-line placeholder (the latest output is "
        "always kept; *steps over budget*: those where the assistant steps and the latest output alone exceed it), priced by the same cache "
        "rule.", "",
        _run_line(h["meta"], h["seconds"]), "",
        *_table(h), "", *_targets(h), "", *_per_trajectory(h),
    ]
    before = h.get("before")
    if before:
        what = before["meta"].get("label") or f"commit {before['meta'].get('commit', '?')}"
        out += ["### Before and after", "", f"Before: the same protocol on {what}. " + _run_line(before["meta"], before["seconds"]), "",
                *_compare(before, h), "", "The whole before run:", "", *_table(before), ""]
    if h.get("tuning"):
        out += tuning_section(h["tuning"])
    return out


def tuning_section(t: dict[str, Any]) -> list[str]:
    """The sub-section for a run of the tuning split (`summaries` of it): kept in results.json as
    `H["tuning"]`, so a held-out run written later keeps it, and the held-out tables never come
    from it."""
    out = [TUNING_HEADING, "",
           "The trajectories the compaction is tuned on (" + ", ".join(TUNING) + "), by the same protocol as the tables above. "
           + _run_line(t["meta"], t["seconds"]), "", *_table(t), "", *_per_trajectory(t)]
    before = t.get("before")
    if before:
        what = before["meta"].get("label") or f"commit {before['meta'].get('commit', '?')}"
        out += [f"Before: the same protocol on {what}. " + _run_line(before["meta"], before["seconds"]), "", *_compare(before, t), ""]
    return out


def _compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Before → after for every split and budget both runs measured on the same steps."""
    earlier = {(r["split"], r["budget"]): r for r in before["rows"]}
    labels = dict(SPLITS)
    out = ["| split | budget | forwarded vs resend | cost at r=0.1 | cost at r=0.25 | identifier recall | rejected | `over_budget` "
           "| added ms p50 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in after["rows"]:
        b = earlier.get((r["split"], r["budget"]))
        if b is None or (b["trajectories"], b["steps"]) != (r["trajectories"], r["steps"]):
            continue
        out.append(f"| {labels[r['split']]} | {r['budget']:,} | {b['raw_vs_resend']:.2f}× → {r['raw_vs_resend']:.2f}× "
                   f"| {b['cost']['0.1']:.2f}× → {r['cost']['0.1']:.2f}× | {b['cost']['0.25']:.2f}× → {r['cost']['0.25']:.2f}× "
                   f"| {b['recall']:.3f} → {r['recall']:.3f} | {b['rejected']} → {r['rejected']} | {b['over_budget']:,} → {r['over_budget']:,} "
                   f"| {b['added_ms']['p50']:+.1f} → {r['added_ms']['p50']:+.1f} |")
    return out
