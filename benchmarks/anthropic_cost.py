"""What a Claude-Code-shaped session costs through the proxy, priced by Anthropic's cache rule.

The session: a Claude-Code-like system prompt (two text blocks, both breakpoints, as Claude Code
sends them) and tools, then turns of "look at this part of the code": the user asks, the
assistant calls `Read`, the tool result is a 50-line window of this project's source, the
assistant answers. Every request resends the whole history with a third breakpoint on the last
block of the last message (Claude Code moves it along each call). Replayed through the running
proxy (lexical memory, `X-Memory-Session`, `X-Memory-Budget`) against the fake Anthropic upstream,
which bills every prompt by the breakpoint rule (prefixes of 1,024 tokens or more; a read looks
back up to 20 blocks; `testkit.anthropic_rules`).

The baseline, *resend everything*, is the client's own requests billed by the same rule with a
ledger of their own. Cost of a request = input + 1.25 x cache writes + 0.1 x cache reads (5-minute
writes, relative to the base input price). Reported: the cost through the proxy relative to the
baseline before the client's prompt outgrows the budget (target: never above 1.0x) and after
(target: at most 0.8x), per request and in total, and where each side's cost goes past the budget
(uncached input, cache writes, cache reads).

    python -m benchmarks.anthropic_cost [--turns 30,60] [--budget 6000,12000] [--real-turns 30,60] [--write]

The same session is also replayed at Claude Code's own size (`--real-turns`): a system prompt of
about 16,000 tokens and fifteen tools, which the proxy counts toward the budget as the app's fixed
part.

`benchmarks.run_all` runs it as section I at these sizes (not in `--quick`: the smallest useful
session takes ~10 s, the proxy's start included). `--write` splices the figures into
benchmarks/RESULTS.md as section I and into results.json as "I", then regenerates the README's
headline block from results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from memory import get_counter
from memory.turn.turns import effective_budget, tools_tokens
from testkit.anthropic_rules import Billed, CacheLedger
from testkit.fake_anthropic import anthropic_requests
from testkit.harness import config_for, serve_upstream, start_proxy
from testkit.script import Reply, ToolCall

from .corpus import REPO_ROOT, assistant_turn, code_windows, user_turn
from .headline import main as write_headline

__all__ = ["RequestCost", "run", "run_section", "price", "summary", "section_i", "results_i", "splice", "WRITE", "READ", "HEADING",
           "TARGET_PAST", "TARGET_BEFORE", "TURNS", "BUDGETS", "REAL_TURNS", "SIZES", "fixed_tokens"]

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-bench-cost"
WRITE, READ = 1.25, 0.1
TARGET_PAST, TARGET_BEFORE = 0.8, 1.0
TURNS, BUDGETS = (30, 60), (6000, 12000)
HEADING = "## I. Claude Code under Anthropic's cache rule"
SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "\n".join(f"- Rule {i}: read the code before changing it; keep diffs small; run the tests you touched; "
                                       f"say plainly what you could not do (guideline {i} of the house)." for i in range(60)),
     "cache_control": {"type": "ephemeral"}},
]
TOOLS = [{"name": name, "description": f"The {name} tool: " + "use it as documented. " * 12,
          "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
         for name in ("Read", "Edit", "Write", "Bash", "Grep", "Glob")]


# Claude Code's own size: a system prompt of about 16,000 tokens in its two blocks, fifteen tools.
REAL_SYSTEM = [SYSTEM[0], {**SYSTEM[1], "text": "\n".join(
    f"- Rule {i}: read the code before changing it; keep diffs small; run the tests you touched; say plainly what you could not "
    f"do; prefer the project's own helpers; never guess an API (guideline {i} of the house)." for i in range(320))}]
REAL_TOOLS = [{"name": name, "description": f"The {name} tool: " + "use it as documented, with the arguments it names. " * 36,
               "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
              for name in ("Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write", "NotebookEdit",
                           "WebFetch", "TodoWrite", "WebSearch", "BashOutput")]
SIZES = {"shaped": (SYSTEM, TOOLS), "claude-code": (REAL_SYSTEM, REAL_TOOLS)}
REAL_TURNS = (30, 60)


def fixed_tokens(size: str) -> int:
    """The system prompt's and the tools' tokens of a session size, as the proxy counts them."""
    system, tools = SIZES[size]
    counter = get_counter(MODEL)
    return counter.count("\n".join(str(b["text"]) for b in system)) + tools_tokens(tools, counter)


def price(usage: dict[str, Any] | Billed) -> float:
    if isinstance(usage, Billed):
        return usage.input_tokens + WRITE * usage.cache_creation_input_tokens + READ * usage.cache_read_input_tokens
    return float(usage["input_tokens"] + WRITE * usage.get("cache_creation_input_tokens", 0)
                 + READ * usage.get("cache_read_input_tokens", 0))


@dataclass(frozen=True)
class RequestCost:
    turn: int
    client_tokens: int  # the client's prompt as the proxy counts it against the budget: messages and tools
    mode: str
    resend: float
    proxy: float
    # Where each side's cost went: (uncached input, cache writes, cache reads) in tokens.
    resend_split: tuple[int, int, int] = (0, 0, 0)
    proxy_split: tuple[int, int, int] = (0, 0, 0)


def _split(usage: dict[str, Any] | Billed) -> tuple[int, int, int]:
    if isinstance(usage, Billed):
        return usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens
    return int(usage["input_tokens"]), int(usage.get("cache_creation_input_tokens", 0)), int(usage.get("cache_read_input_tokens", 0))


def _with_moving_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as Claude Code sends them: a breakpoint on the last block of the last one."""
    out: list[dict[str, Any]] = json.loads(json.dumps(messages))
    last = out[-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return out


def run(turns: int, budget: int, folder: Path, system_breakpoints: bool = True, size: str = "shaped") -> list[RequestCost]:
    """Replay the session; `system_breakpoints=False`: a client that marks only its last message;
    `size`: "shaped" (a short system prompt, six tools) or "claude-code" (Claude Code's own size)."""
    full_system, declared = SIZES[size]
    system = full_system if system_breakpoints else [{k: v for k, v in b.items() if k != "cache_control"} for b in full_system]
    upstream = serve_upstream()
    proxy = start_proxy(config_for(upstream, folder, "upstreams: {retries: 0}\n"))
    resend = CacheLedger()
    tools = tools_tokens(declared, get_counter(MODEL))
    costs: list[RequestCost] = []
    history: list[dict[str, Any]] = []
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
               "X-Memory-Session": f"bench-anthropic-{budget}", "X-Memory-Budget": str(budget)}
    try:
        with httpx.Client(base_url=proxy.url, timeout=300) as http:
            def call(turn: int) -> dict[str, Any]:
                body = {"model": MODEL, "max_tokens": 1024, "system": system, "tools": declared, "messages": _with_moving_breakpoint(history)}
                response = http.post("/v1/messages", json=body, headers=headers)
                response.raise_for_status()
                usage = anthropic_requests(upstream.fake)[-1].reported
                assert usage is not None
                billed = resend.bill(KEY, body)
                client = int(response.headers["x-memory-original-tokens"]) + tools
                costs.append(RequestCost(turn, client, response.headers["x-memory-mode"],
                                         price(billed), price(usage), _split(billed), _split(usage)))
                return dict(response.json())

            for turn, window in enumerate(code_windows(turns), start=1):
                history.append({"role": "user", "content": user_turn(window)})
                call_id = f"toolu_{turn:05d}"
                upstream.fake.enqueue(Reply(tool_calls=(ToolCall("Read", {"file_path": window.path}, id=call_id),)))
                history.append({"role": "assistant", "content": call(turn)["content"]})
                history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                                             "content": f"{window.source}\n{window.text}"}]})
                upstream.fake.enqueue(Reply(text=assistant_turn(window)))
                history.append({"role": "assistant", "content": call(turn)["content"]})
    finally:
        proxy.served.stop()
        upstream.served.stop()
    return costs


def _where(part: Sequence[RequestCost]) -> dict[str, dict[str, float]]:
    """Each side's cost split into uncached input, cache writes and cache reads (priced), as shares
    of resending everything's total over `part`."""
    base = sum(c.resend for c in part) or 1.0
    out: dict[str, dict[str, float]] = {}
    for side in ("resend", "proxy"):
        splits = [c.resend_split if side == "resend" else c.proxy_split for c in part]
        out[side] = {"input": round(sum(s[0] for s in splits) / base, 4), "write": round(WRITE * sum(s[1] for s in splits) / base, 4),
                     "read": round(READ * sum(s[2] for s in splits) / base, 4)}
    return out


def summary(costs: Sequence[RequestCost], budget: int, fixed: int = 0) -> dict[str, Any]:
    """The session's figures; it is past the budget from the first request whose prompt exceeds
    the budget the proxy lays it out in (the app's `fixed` part beyond half the budget goes on top)."""
    past = next((i for i, c in enumerate(costs) if c.client_tokens > effective_budget(budget, fixed)), len(costs))
    before, after = costs[:past], costs[past:]

    def ratio(part: Sequence[RequestCost]) -> float | None:
        base = sum(c.resend for c in part)
        return round(sum(c.proxy for c in part) / base, 4) if base else None

    return {
        "budget": budget, "requests": len(costs), "requests_before_budget": len(before), "requests_past_budget": len(after),
        "cost_before_budget": ratio(before), "worst_request_before_budget": round(max((c.proxy / c.resend for c in before), default=0), 4),
        "cost_past_budget": ratio(after), "cost_all": ratio(costs),
        "cost_last_20_requests": ratio(costs[-20:]),
        "where_past_budget": _where(after),
        "modes": {m: sum(1 for c in costs if c.mode == m) for m in sorted({c.mode for c in costs})},
        "resend_units": round(sum(c.resend for c in costs)), "proxy_units": round(sum(c.proxy for c in costs)),
        "client_tokens_last": costs[-1].client_tokens if costs else 0,
    }


def run_section(turns: Sequence[int] = TURNS, budgets: Sequence[int] = BUDGETS,
                system_breakpoints: bool = True, size: str = "shaped") -> list[tuple[int, dict[str, Any]]]:
    """(turns, summary) for every session length and budget, each on a fresh proxy and memory."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for n in turns:
        for budget in budgets:
            with tempfile.TemporaryDirectory(prefix="bench-anthropic-") as tmp:
                fixed = fixed_tokens(size)
                row = {**summary(run(n, budget, Path(tmp), system_breakpoints, size), budget, fixed), "size": size, "fixed_tokens": fixed}
            print(json.dumps({"turns": n, **row}), flush=True)
            rows.append((n, row))
    return rows


def results_i(rows: Sequence[tuple[int, dict[str, Any]]], command: str, commit: str,
              real: Sequence[tuple[int, dict[str, Any]]] = ()) -> dict[str, Any]:
    """Section I as results.json keeps it (what `benchmarks.headline` reads): `rows` of the shaped
    session, `real` (under "claude_code_size") at Claude Code's own size."""
    return {"command": command, "commit": commit, "targets": {"past_budget": TARGET_PAST, "before_budget": TARGET_BEFORE},
            "rows": [{"turns": n, **row} for n, row in rows], "claude_code_size": [{"turns": n, **row} for n, row in real]}


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _row_line(turns: int, row: dict[str, Any]) -> str:
    return (f"| {turns} ({row['requests']}) | {row['budget']:,} | {row['client_tokens_last']:,} | {row['requests_before_budget']} / "
            f"{row['requests_past_budget']} | {_x(row['cost_before_budget'])} ({_x(row['worst_request_before_budget'])}) | "
            f"{_x(row['cost_past_budget'])} | {_x(row['cost_last_20_requests'])} | {row['modes'].get('rebased', 0)} |")


def section_i(rows: Sequence[tuple[int, dict[str, Any]]], command: str, commit: str,
              real: Sequence[tuple[int, dict[str, Any]]] = ()) -> list[str]:
    """The markdown of section I for (turns, summary) rows, and `real` ones at Claude Code's size."""
    lines = [HEADING, "",
             "A Claude-Code-shaped session (two cached system blocks, six tools; each turn: a question, a `Read` tool call, a 50-line "
             "window of this project's source as its result, an answer) replayed through the running proxy (lexical memory, "
             "`X-Memory-Budget`) against the fake Anthropic upstream, which bills each prompt by the breakpoint rule (prefixes of "
             "1,024 tokens or more, 20-block lookback). *Resend everything* is the client's own requests, its breakpoints on both "
             "system blocks and on the last block of the last message, billed by the same rule. Cost = input + 1.25 × cache writes "
             "+ 0.1 × cache reads, through the proxy relative to resending everything; tokens are o200k_base estimates (no Claude "
             "tokenizer offline).", "",
             f"- Command: `{command}`", f"- Commit: {commit}", "",
             "| turns (requests) | budget | last prompt (tokens) | requests before / past budget | cost before budget (worst request) "
             "| cost past budget | last 20 requests | rebases |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [_row_line(turns, row) for turns, row in rows]
    if real:
        lines += ["", f"At Claude Code's own size (a system prompt and fifteen tools of {real[0][1]['fixed_tokens']:,} tokens in all, "
                  "counted toward the budget as the app's fixed part: beyond half the budget it goes on top, and the conversation keeps "
                  "half the budget), the same session:", "",
                  "| turns (requests) | budget | last prompt (tokens) | requests before / past budget | cost before budget (worst request) "
                  "| cost past budget | last 20 requests | rebases |", "|---|---|---|---|---|---|---|---|"]
        lines += [_row_line(turns, row) for turns, row in real]
    split = [(turns, row) for turns, row in list(rows) + list(real) if row.get("where_past_budget")]
    if split:
        lines += ["", "Where the cost goes past the budget, as shares of resending everything's cost there (uncached input at 1×, "
                  "cache writes at 1.25×, cache reads at 0.1×):", "",
                  "| turns | budget | resend: writes / reads | proxy: uncached / writes / reads |", "|---|---|---|---|"]
        for turns, row in split:
            r, q = row["where_past_budget"]["resend"], row["where_past_budget"]["proxy"]
            where = f"{turns}{' (Claude Code size)' if row.get('size') == 'claude-code' else ''}"
            lines.append(f"| {where} | {row['budget']:,} | {r['write']:.2f} / {r['read']:.2f} | {q['input']:.2f} / {q['write']:.2f} / {q['read']:.2f} |")
    lines += ["", f"Targets: never above {TARGET_BEFORE:.1f}× before the budget is passed, at most {TARGET_PAST:.1f}× past it:"]
    for turns, row in list(rows) + list(real):
        before = row["worst_request_before_budget"] <= TARGET_BEFORE
        past = row["cost_past_budget"] is not None and row["cost_past_budget"] <= TARGET_PAST
        lines.append(f"- {turns} turns at {row['budget']:,}{' (Claude Code size)' if row.get('size') == 'claude-code' else ''}: "
                     f"before {'met' if before else '**not met**'}, past {'met' if past else '**not met**'} ({_x(row['cost_past_budget'])})")
    return lines + [""]


def splice(markdown: str, section: Sequence[str]) -> str:
    """`markdown` with section I replaced by `section` (appended when it has none)."""
    text = "\n".join(section)
    start = markdown.find(HEADING)
    if start < 0:
        return markdown.rstrip("\n") + "\n\n" + text
    end = markdown.find("\n## ", start + len(HEADING))
    return markdown[:start] + text + (markdown[end + 1:] if end >= 0 else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", default="30,60", help="comma-separated session lengths")
    parser.add_argument("--budget", default="6000,12000", help="comma-separated budgets")
    parser.add_argument("--write", action="store_true", help="splice section I into benchmarks/RESULTS.md")
    parser.add_argument("--no-system-breakpoints", action="store_true",
                        help="a client that marks only its last message (not written to RESULTS.md)")
    parser.add_argument("--real-turns", default=",".join(map(str, REAL_TURNS)),
                        help="comma-separated session lengths at Claude Code's own size (empty: none)")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budget.split(",")]
    rows = run_section([int(t) for t in args.turns.split(",")], budgets, not args.no_system_breakpoints)
    real = run_section([int(t) for t in args.real_turns.split(",") if t], budgets, not args.no_system_breakpoints, "claude-code")
    if args.write and not args.no_system_breakpoints:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT).stdout.strip()
        command = ("python -m benchmarks.anthropic_cost " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
        results = REPO_ROOT / "benchmarks" / "RESULTS.md"
        results.write_text(splice(results.read_text(encoding="utf-8"), section_i(rows, command, commit, real)), encoding="utf-8")
        figures = REPO_ROOT / "benchmarks" / "results.json"
        payload = json.loads(figures.read_text(encoding="utf-8"))
        payload["I"] = results_i(rows, command, commit, real)
        figures.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        write_headline([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
