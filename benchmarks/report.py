"""Render RESULTS.md from the section results. Pure: data in, markdown out."""

from __future__ import annotations

from dataclasses import dataclass, field

from .machine import Machine
from .overhead import OverheadResult
from .recall import RecallResult
from .report_recall import headline_b, section_b
from .scale import ScaleResult
from .stress import StressResult
from .section_a import SectionA

__all__ = ["RunInfo", "render"]

EARLIER = ((800, "9,589", "573", "641", "94.0%"), (2000, "9,589", "1,759", "2,000", "81.7%"), (8000, "9,589", "6,044", "7,653", "37.0%"))
SCALE_TARGETS = {10_000: 30.0, 100_000: 100.0}
HISTORY_TARGET_S = 3.0
RSS_TARGET_MB = 500.0


@dataclass(frozen=True)
class RunInfo:
    command: str
    date: str
    quick: bool
    machine: Machine
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _ok(flag: bool) -> str:
    return "pass" if flag else "**FAIL**"


def _found(flag: bool) -> str:
    return "found" if flag else "**missed**"


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _header(info: RunInfo) -> list[str]:
    m = info.machine
    pkgs = ", ".join(f"{k} {v}" for k, v in m.packages.items())
    lines = [
        "# memory-runtime benchmark results",
        "",
        "Written by `benchmarks/run_all.py`; do not edit by hand." + (" **Quick mode: smoke sizes, not the published figures.**" if info.quick else ""),
        "",
        f"- Command: `{info.command}` (what `python3 scripts/dev.py bench` runs)",
        f"- Date: {info.date}",
        f"- Commit: {m.commit}",
        f"- Machine: {m.cpu}, {m.cores} cores, {m.memory_gb:.1f} GiB RAM, {m.os}",
        f"- Python {m.python}, SQLite {m.sqlite}; {pkgs}",
        f"- Load average (1/5/15 min) at start {info.load_start[0]:.2f}/{info.load_start[1]:.2f}/{info.load_start[2]:.2f}, "
        f"at end {info.load_end[0]:.2f}/{info.load_end[1]:.2f}/{info.load_end[2]:.2f} (other work on the machine shows up here)",
        "- Tokens: tiktoken `o200k_base` (gpt-4o-mini) with OpenAI's chat formula, counted independently of the library.",
        "- Embeddings: all-MiniLM-L6-v2 (int8 ONNX via fastembed), the library's default; nothing mocked.",
        "- Wall time per section: " + ", ".join(f"{k} {v:,.0f} s" for k, v in info.seconds.items()),
    ]
    lines += [f"- Note: {n}" for n in info.notes]
    return lines + [""]


def _section_a(a: SectionA) -> list[str]:
    s = a.session
    out = [
        f"## A. The {s.turns}-turn session",
        "",
        f"Turn 1 shares a snippet holding a secret (`DEPLOY_TOKEN`); turns 2..N share a {s.window_lines}-line window of this project's own",
        f"source plus a user and an assistant message; the last turn asks for the secret in other words: “{s.question}” "
        f"(content words shared with the snippet and its turn: {list(s.keyword_overlap) or 'none'}). `observe` is never called, so the",
        "needle can only come from retrieval. Naive = every snippet so far plus the whole chat history plus the new message.",
        "Recent = the budget-only baseline: the same items as chat messages, the most recent ones that fit the budget with the new",
        "message. Any packer that respects the budget gets the recent window's reduction; what memory adds is what it keeps beyond it.",
        "",
        "| Budget | Avg naive | Avg recent | Recent: reduction / needle | Avg compiled | Max compiled | Compiled: reduction / needle "
        "(observe never called) | Max ≤ budget | `result.tokens` exact |",
        "|---:|---:|---:|---|---:|---:|---|---|---|",
    ]
    for r in s.rows:
        out.append(f"| {r.budget:,} | {_n(r.avg_naive)} | {_n(r.avg_recent)} | {r.recent_reduction:.1%} / {_found(r.recent_needle_found)} | "
                   f"{_n(r.avg_compiled)} | {r.max_compiled:,} | {r.reduction:.1%} / {_found(r.needle_found)} | "
                   f"{_ok(r.never_over)} | {_ok(r.reported_tokens_exact)} |")
    out += ["", "The earlier JavaScript version's table, for comparison (chars/4 tokens; its needle sat in always-included state):", "",
            "| Budget | Avg naive | Avg runtime | Max runtime | Reduction |", "|---:|---:|---:|---:|---:|"]
    out += [f"| {b:,} | {n} | {avg} | {mx} | {red} |" for b, n, avg, mx, red in EARLIER]
    out += ["", "![tokens per turn](tokens_per_turn.png)", "", "### Scenarios", "",
            "| Scenario | Result | Detail |", "|---|---|---|"]
    p = a.pinning
    out.append(f"| Pinning (needle, then {p.items_after_needle} items; question about something else; budget {p.budget:,}) | "
               f"{_ok(p.passed)} | pinned present: {p.pinned_present}; unpinned present: {p.unpinned_present} |")
    d = a.diffs
    # Judged where the budget does not bind; below that both modes fill the budget and differ by noise.
    top = max(d.compiled_snippets)
    diff_fewer = d.compiled_diffs[top] < d.compiled_snippets[top]
    visible = all(d.latest_change_visible["diffs"].values())
    shown = "; ".join(f"{mode} " + ", ".join(f"@{b:,} {'yes' if v else 'no'}" for b, v in sorted(by.items()))
                      for mode, by in d.latest_change_visible.items())
    detail = "; ".join(f"@{b:,}: snippets {d.compiled_snippets[b]:,} vs diffs {d.compiled_diffs[b]:,}" for b in sorted(d.compiled_snippets))
    out.append(f"| Diffs vs snippets ({d.versions} versions of one file; naive resend {d.naive_snippets:,} vs {d.naive_diffs:,} tokens) | "
               f"{_ok(diff_fewer and visible)} | compiled tokens {detail} (judged @{top:,}, where the budget does not bind); "
               f"latest change visible (judged for diff mode at every budget): {shown} |")
    det = a.determinism
    out.append(f"| Determinism (compile twice; again after reopening the store) | "
               f"{_ok(det.identical_twice and det.identical_after_reopen and det.manifest_identical)} | "
               f"messages identical: {det.identical_twice}; manifest identical: {det.manifest_identical}; "
               f"identical after reopen: {det.identical_after_reopen} |")
    ph = a.paraphrase
    out.append(f"| Paraphrase + interference (5 facts in {ph.turns} turns of code; budget {ph.budget:,}) | {_ok(ph.passed)} | "
               f"keyword overlap with the fact: {list(ph.keyword_overlap) or 'none'}; fact in prompt: {ph.target_in_prompt}; "
               f"rank of the right fact: {ph.target_rank}; ranks of the four distractors: {list(ph.distractor_ranks)} "
               f"(None = not among scored items); distractors in prompt: {ph.distractors_in_prompt} |")
    return out + [""]


def _runs(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _section_c(o: OverheadResult | None, skipped: str | None) -> list[str]:
    out = ["## C. Proxy overhead", ""]
    if o is None:
        return out + [f"Not measured in this run: {skipped}", ""]
    out += [
        f"A fake OpenAI upstream (replies at once), the memory-runtime proxy (default embedding model, budget {o.budget:,}) and "
        "LiteLLM's proxy each in their own process on loopback. Every request resends the session's N-turn history plus a "
        f"fresh question; per iteration the direct call and each proxied call run back to back in rotating order "
        f"({o.iterations} iterations per row after 3 warm-up requests). Added = paired difference (proxy − direct).",
        "",
        f"LiteLLM proxy as a peer: {o.litellm_note}.",
        "",
        "| Path | Turns | Measure | Direct p50 | Via p50 | Added p50 | Added p95 | Added p99 | Compiled |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in o.rows:
        share = f"{r.compiled_share:.0%}" if r.compiled_share is not None else "–"
        out.append(f"| {r.target} | {r.turns} | {r.mode} | {r.direct.p50:,.1f} | {r.via.p50:,.1f} | {r.added.p50:,.1f} | "
                   f"{r.added.p95:,.1f} | {r.added.p99:,.1f} | {share} |")
    return out + ["", "Milliseconds. “Compiled”: share of memory-runtime responses whose prompt was compiled (the rest fit the "
                  "budget and were forwarded unchanged after storing the new turns).", "", "![proxy overhead](proxy_overhead.png)", ""]


def _section_d(sc: ScaleResult) -> list[str]:
    out = [
        "## D. Scale",
        "",
        "Each size runs in a fresh process (its RSS is the library's with the model loaded). Events come from a deterministic "
        "generator of coding-session traffic: user/assistant turns about this project's identifiers (unique numbers in each), a "
        "test-run tool output every 25th event, a 50-line source window every 50th. "
        f"Sessions larger than {sc.unique:,} events repeat their first {sc.unique:,} event texts: every event is still stored, "
        "chunked and indexed, but vectors are keyed by content hash, so only the distinct texts are embedded (embedding 100k "
        "distinct texts takes far longer than the rest of the run together on this machine). "
        f"Compile: budget {sc.budget:,}, {sc.queries} fresh questions after one warm-up compile.",
        "",
        "Ingest is measured twice per size on fresh files: with embeddings off (storing and indexing alone), and with the "
        "model, where the runtime embeds new chunks in the background while later batches arrive and `flush()` waits for "
        "the rest; “searchable” is events / (ingest + flush).",
        "",
        "| Events | Distinct texts | Store only (events/s) | Ingest + flush (s) | Of which embedding (s, texts) | Searchable (events/s) | "
        "Compile p50 / p95 (ms) | Excl. query embedding p50 / p95 | First compile after reopen (ms) | RSS model only → after (MiB) | "
        "Peak RSS | DB (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sc.rows:
        out.append(f"| {r.events:,} | {r.unique:,} | {r.store_only_events_per_s:,.0f} | {r.ingest_s:,.1f} + {r.flush_s:,.1f} | "
                   f"{r.embed_s:,.1f} ({r.texts_embedded:,}) | {r.searchable_events_per_s:,.0f} | "
                   f"{r.compile.p50:,.1f} / {r.compile.p95:,.1f} | {r.compile_excl_embed.p50:,.1f} / {r.compile_excl_embed.p95:,.1f} | "
                   f"{r.cold_compile_ms:,.0f} | {r.rss_model_mb:,.0f} → {r.rss_mb:,.0f} | {r.peak_rss_mb:,.0f} | {r.db_mb:,.1f} |")
    h = sc.history
    out += ["", f"Ingest of a {h.turns}-turn chat history until searchable (store + embed; fresh file per run, "
            f"{len(h.batch_s)} runs): one `ingest_many` then `flush`, median **{h.batch_median_s:.2f} s** (runs: {_runs(h.batch_s)}); "
            f"one `ingest` per turn then `flush`, median **{h.single_median_s:.2f} s** (runs: {_runs(h.single_s)}).", "",
            "Targets (issue 2):", ""]
    by_size = {r.events: r for r in sc.rows}
    for size, target in SCALE_TARGETS.items():
        row = by_size.get(size)
        if row is not None:
            out.append(f"- compile p50 ≤ {target:.0f} ms at {size:,} events (query embedding excluded): "
                       f"{row.compile_excl_embed.p50:,.1f} ms, {_met(row.compile_excl_embed.p50 <= target)}")
        else:
            out.append(f"- compile p50 ≤ {target:.0f} ms at {size:,} events: not measured in this run")
    if h.turns == 300:
        out.append(f"- ingest of a 300-turn history ≤ {HISTORY_TARGET_S:.0f} s (median, one `ingest_many`): {h.batch_median_s:.2f} s, "
                   f"{_met(h.batch_median_s <= HISTORY_TARGET_S)}")
    if sc.rows:
        worst = max(sc.rows, key=lambda r: r.rss_mb)
        out.append(f"- RSS with the model loaded ≤ {RSS_TARGET_MB:.0f} MB: {worst.rss_mb:,.0f} MiB after the {worst.events:,}-event run "
                   f"(peak {worst.peak_rss_mb:,.0f}), {_met(worst.peak_rss_mb <= RSS_TARGET_MB)}")
    return out + ["", "![latency vs session size](latency_vs_size.png)", ""]


def _summary(a: SectionA | None, b: RecallResult | None, c: OverheadResult | None, d: ScaleResult | None) -> list[str]:
    out = ["## Headline", ""]
    if a:
        rows = a.session.rows
        out.append(f"- {a.session.turns}-turn session, token reduction vs resending everything: " + ", ".join(
            f"{r.reduction:.1%} @{r.budget:,}" for r in rows) + " (budget-only recent window: " + ", ".join(
            f"{r.recent_reduction:.1%}" for r in rows) + "); never over budget: "
            f"{'yes' if all(r.never_over for r in rows) else '**no**'}; paraphrased needle found without `observe`: "
            + ", ".join(f"{_found(r.needle_found)} @{r.budget:,}" for r in rows)
            + " (recent window: " + ", ".join(_found(r.recent_needle_found) for r in rows) + ").")
    if b:
        out += headline_b(b)
    if c:
        big = max(c.sizes)
        for r in c.rows:
            if r.turns == big and r.mode == "non-stream":
                out.append(f"- Added latency at {big} turns, {r.target}: p50 {r.added.p50:,.1f} ms, p99 {r.added.p99:,.1f} ms (non-streaming).")
    if d:
        for r in d.rows:
            out.append(f"- {r.events:,} events: compile p50 {r.compile_excl_embed.p50:,.1f} ms excluding the query embedding "
                       f"({r.compile.p50:,.1f} ms including it); RSS {r.rss_mb:,.0f} MiB.")
    return out + [""]


def _section_e(results: list[tuple[str, StressResult]]) -> list[str]:
    out = ["## E. Stress", "",
           "`python -m benchmarks.stress`: the proxy as a real `memory-runtime serve` process against a fake upstream on loopback; "
           "each client alternates streaming and JSON requests, several clients share each session, every request carries a unique "
           "marker and a budget below its size (so each one syncs, compiles and observes). Lost and duplicated turns compare every "
           "completed exchange with the session export. Latency under load is mostly queueing on 2 cores shared with the clients; "
           "the 1-client row is what the proxy itself adds.", ""]
    for model, result in results:
        out += [f"Embedding model: `{model}`", "", result.markdown(), ""]
    return out


def render(info: RunInfo, a: SectionA | None, b: RecallResult | None, c: OverheadResult | None, d: ScaleResult | None,
           skipped: dict[str, str], e: list[tuple[str, StressResult]] | None = None) -> str:
    lines = _header(info) + _summary(a, b, c, d)
    lines += _section_a(a) if a else ["## A. The 50-turn session", "", f"Not run: {skipped.get('A', 'not selected')}", ""]
    lines += section_b(b) if b else ["## B. Evidence recall at budget on LoCoMo", "", f"Not run: {skipped.get('B', 'not selected')}", ""]
    lines += _section_c(c, skipped.get("C", "not selected"))
    lines += _section_d(d) if d else ["## D. Scale", "", f"Not run: {skipped.get('D', 'not selected')}", ""]
    lines += _section_e(e) if e else ["## E. Stress", "", "Not run: not selected", ""]
    return "\n".join(lines).rstrip() + "\n"
