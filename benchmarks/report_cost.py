"""Section F of RESULTS.md (cost under prompt caching) and its plot. Pure: results in, markdown out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from .cache_cost import CODING, RATIOS, CostResult  # noqa: E402

__all__ = ["section_f", "plot_cost_per_turn", "summaries", "DEV", "HELD_OUT", "COST_TARGETS"]

# LoCoMo's conversations in file order: 1-5 tuned on, 6-10 held out.
DEV = ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43")
HELD_OUT = ("conv-44", "conv-47", "conv-48", "conv-49", "conv-50")
# Issue 8's targets, on the LoCoMo replay at budget 4,000: cached share, cost at each ratio.
COST_TARGETS = {"cached_share": 0.80, "0.1": 0.95, "0.25": 0.60, "0.5": 0.42}
# Issue 19's, same replay with the questions asked in sequence: cost of the whole chat at each
# ratio, and recall of the questions in sequence within this much of the fresh compile's.
SEQUENTIAL_COST_TARGETS = {"0.1": 0.80, "0.25": 0.55, "0.5": 0.45}
SEQUENTIAL_RECALL_GAP = 0.05
TARGET_BUDGET = 4000


def _row(label: str, s: dict[str, Any]) -> str:
    cost = " | ".join(f"{s['cost'][str(r)]:.2f}×" for r in RATIOS)
    recall = f"{s['recall_proxy']:.3f} / {s['recall_sequential']:.3f} / {s['recall_fresh']:.3f}" if s["questions"] else "–"
    return (f"| {label} | {s['budget']:,} | {s['turns']:,} | {s['raw_vs_resend']:.2f}× | {s['cached_share']:.2f} "
            f"(resend {s['resend_cached_share']:.2f}) | {cost} | {s['rebases']} | {recall} |")


def section_f(result: CostResult) -> list[str]:
    budgets = sorted({c.budget for c in result.conversations if c.policy == "cache"})
    names = {c.name for c in result.conversations}
    locomo = [n for n in names if n != CODING]
    out = [
        "## F. Cost under prompt caching", "",
        "Conversations replayed through the running proxy as chats (the client resends its whole history every call, with "
        "`X-Memory-Session` and `X-Memory-Budget`); the fake upstream caches prompt prefixes by OpenAI's rule (1,024 tokens or more, "
        "in 128-token blocks) and reports `cached_tokens`. *Resend everything* is priced by the same rule on the prompts the client "
        "built. Cost = uncached + r × cached input tokens, relative to resending everything, at cache price ratios r = "
        + " / ".join(str(r) for r in RATIOS) + " (gpt-5 family / gpt-4.1, Gemini 2.5 / gpt-4o). Every scorable LoCoMo question is "
        "then asked through the proxy two ways, in file order: *alone*, as the next turn after the conversation (the upstream "
        "answers with an error, so nothing of it is stored), and *in sequence*, one after another in the same chat (the upstream "
        "answers each with a short fixed reply, which the client keeps in the history it resends). The questions in sequence are "
        "chat turns like the others: they are in the turns and the cost. Recall: strict evidence recall of what the upstream "
        "received for the questions alone / in sequence, and of the library's fresh compile of each question at the same budget "
        "right after the conversation. Layout policy `cache` (the default) unless named.", "",
        "| replay | budget | turns | raw tokens vs resend | cached share | cost at " + " | ".join(f"r={r}" for r in RATIOS)
        + " | rebases | recall alone / in sequence / fresh |",
        "|---|---|---|---|---|" + "---|" * len(RATIOS) + "---|---|",
    ]
    groups = [("LoCoMo held out (6-10)", [n for n in HELD_OUT if n in names]), ("LoCoMo dev (1-5)", [n for n in DEV if n in names]),
              ("LoCoMo all", locomo)]
    if not any(names_ for _, names_ in groups[:2]):
        groups = [("LoCoMo (selection)", locomo)]
    for budget in budgets:
        for label, group in groups:
            if group:
                out.append(_row(label, result.summary(budget, group)))
        if CODING in names:
            out.append(_row("50-turn coding session", result.summary(budget, [CODING])))
    others = sorted({(c.policy, c.budget) for c in result.conversations if c.policy != "cache"})
    for policy, budget in others:
        for label, group in groups:
            if group:
                out.append(_row(f"{label}, policy `{policy}`", result.summary(budget, group, policy)))
    out += ["", *_targets(result, groups[0][1] or locomo), "", "![cost per turn](cost_per_turn.png)", ""]
    return out


def _targets(result: CostResult, group: list[str]) -> list[str]:
    if TARGET_BUDGET not in {c.budget for c in result.conversations}:
        return []
    s = result.summary(TARGET_BUDGET, group)
    lines = [f"Targets at budget {TARGET_BUDGET:,} on {len(group)} LoCoMo conversations (held out where run):", ""]
    lines.append(f"- cached share {s['cached_share']:.2f} (target ≥ {COST_TARGETS['cached_share']:.2f}): "
                 + ("met" if s["cached_share"] >= COST_TARGETS["cached_share"] else "**not met**"))
    for r in RATIOS:
        value, target = s["cost_conversation"][str(r)], COST_TARGETS[str(r)]
        lines.append(f"- cost of the conversation at r={r}: {value:.2f}× (target ≤ {target:.2f}×): " + ("met" if value <= target else "**not met**"))
    if s["questions"]:
        gap = s["recall_fresh"] - s["recall_proxy"]
        lines.append(f"- recall through the proxy, questions alone, {s['recall_proxy']:.3f} vs fresh compile {s['recall_fresh']:.3f} "
                     f"(gap {gap:+.3f}, target within 0.02): " + ("met" if abs(gap) <= 0.02 else "**not met**"))
        gap = s["recall_fresh"] - s["recall_sequential"]
        lines.append(f"- recall through the proxy, questions in sequence, {s['recall_sequential']:.3f} vs fresh compile "
                     f"{s['recall_fresh']:.3f} (gap {gap:+.3f}, target within {SEQUENTIAL_RECALL_GAP}): "
                     + ("met" if gap <= SEQUENTIAL_RECALL_GAP else "**not met**"))
        for r in RATIOS:
            value, target = s["cost"][str(r)], SEQUENTIAL_COST_TARGETS[str(r)]
            lines.append(f"- cost of the whole chat, questions in sequence included, at r={r}: {value:.2f}× (target ≤ {target:.2f}×): "
                         + ("met" if value <= target else "**not met**"))
    worst = max((result.summary(b, [n])["cost"]["0.25"], b, n) for b in {c.budget for c in result.conversations if c.policy == "cache"}
                for n in {c.name for c in result.conversations})
    lines.append(f"- cost at r=0.25 never above 1.0× at any budget: worst {worst[0]:.2f}× ({worst[2]} at {worst[1]:,}): "
                 + ("met" if worst[0] <= 1.0 else "**not met**"))
    return lines


def plot_cost_per_turn(result: CostResult, path: Path, name: str = DEV[0], ratio: float = 0.25) -> None:
    """Effective input cost of each turn of one conversation (uncached + r × cached tokens)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    runs = [c for c in result.conversations if c.name == name and c.policy == "cache"]
    if runs:
        turns = range(1, len(runs[0].turns) + 1)
        ax.plot(turns, [(t.sent - t.sent_cached) + ratio * t.sent_cached for t in runs[0].turns], color="black", linewidth=2,
                label="resend everything")
        for run in sorted(runs, key=lambda c: c.budget):
            ax.plot(turns, [(t.forwarded - t.cached) + ratio * t.cached for t in run.turns], label=f"through the proxy, budget {run.budget:,}")
    ax.set_xlabel("turn")
    ax.set_ylabel(f"input cost per turn (tokens at full price, cached at {ratio})")
    ax.set_title(f"{name}: cost per turn under prompt caching")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summaries(result: CostResult) -> dict[str, Any]:
    """What results.json keeps of section F: the summary of every group at every budget and
    policy (the per-turn series are in the plot, not in the file)."""
    names = {c.name for c in result.conversations}
    groups = {"held_out": [n for n in HELD_OUT if n in names], "dev": [n for n in DEV if n in names],
              "locomo": [n for n in names if n != CODING], "coding": [CODING] if CODING in names else []}
    runs = sorted({(c.policy, c.budget) for c in result.conversations})
    return {"ratios": list(result.ratios), "targets": COST_TARGETS, "target_budget": TARGET_BUDGET,
            "rows": [{"group": g, **result.summary(budget, members, policy)} for policy, budget in runs
                     for g, members in groups.items() if members]}
