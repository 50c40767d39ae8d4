"""`memory-runtime stats`: what memory cost, from the storage file.

    memory-runtime stats                      totals over every session, then per-session cost
    memory-runtime stats --session ID         one session's totals, then its cost per turn
    memory-runtime stats --owner P            totals and per-session cost of one principal's sessions
    memory-runtime stats --json               the same as JSON (`GET /memory/usage` has this shape)

Tokens *sent* are what the clients' requests held, *forwarded* what the proxy sent on (both counted
by the proxy with the model's tokenizer); *prompt*, *cached* and *completion* are what the provider
reported. *Saved* is sent minus forwarded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from memory import Runtime, inspection

__all__ = ["add_parser", "report", "render", "dumps"]

_COLUMNS = (("turns", "turns"), ("sent_tokens", "sent"), ("forwarded_tokens", "forwarded"), ("prompt_tokens", "prompt"),
            ("cached_tokens", "cached"), ("completion_tokens", "completion"), ("saved_tokens", "saved"))
_TURN_COLUMNS = (("n", "turn"), ("mode", "mode"), ("sent_tokens", "sent"), ("forwarded_tokens", "forwarded"),
                 ("prompt_tokens", "prompt"), ("cached_tokens", "cached"), ("completion_tokens", "completion"))


def add_parser(sub: Any) -> argparse.ArgumentParser:
    stats: argparse.ArgumentParser = sub.add_parser("stats", help="tokens sent, forwarded and cached: totals and per-session cost")
    stats.add_argument("--session", help="one session (its storage id <owner>/<id>): its totals and its cost per turn")
    stats.add_argument("--owner", help="only the sessions of this principal (k_..., t_name or local)")
    stats.add_argument("--limit", type=int, default=20, help="sessions listed, the most tokens forwarded first (default 20)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.add_argument("--config", help="YAML config file (for storage_path / storage_url)")
    stats.add_argument("--storage", help="SQLite file or postgresql:// URL (overrides the config's storage)")
    return stats


async def report(runtime: Runtime, session_id: str | None, limit: int, prefix: str = "") -> dict[str, Any] | None:
    """The usage report for every session (whose id starts with `prefix`), or for one (None when it
    does not exist)."""
    if session_id is None:
        return await inspection.usage_report(runtime, prefix, limit=limit)
    session = runtime.session(session_id)
    if not await session.exists():
        return None
    return {"session_id": session_id, "totals": await session.usage(), "turns": await inspection.turns(session)}


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...], first: tuple[str, str] | None = None) -> list[str]:
    cols = ((first,) if first else ()) + columns
    cells = [[h for _, h in cols]] + [["-" if r.get(k) is None else f"{r[k]:,}" if isinstance(r.get(k), int) else str(r[k])
                                        for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    out = []
    for row in cells:
        parts = [row[0].ljust(widths[0]) if first else row[0].rjust(widths[0])]
        parts += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join(parts).rstrip())
    return out


def render(found: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    totals = found["totals"]
    lines = [] if "session_id" in found else [f"sessions stored        {found['sessions']:,}"]
    lines += [
        f"turns forwarded        {totals['turns']:,}",
        f"tokens sent by clients {totals['sent_tokens']:,}",
        f"tokens forwarded       {totals['forwarded_tokens']:,} ({_share(totals['forwarded_tokens'], totals['sent_tokens'])} of sent)",
        f"prompt tokens billed   {totals['prompt_tokens']:,}",
        f"served from cache      {totals['cached_tokens']:,} ({_share(totals['cached_tokens'], totals['prompt_tokens'])} of prompt)",
        f"completion tokens      {totals['completion_tokens']:,}",
        "",
    ]
    if "session_id" in found:
        lines += [f"cost per turn of {found['session_id']}:"] + (_table(found["turns"], _TURN_COLUMNS) if found["turns"] else ["(none)"])
    else:
        lines += ["per session, the most tokens forwarded first:"]
        lines += _table(found["by_session"], _COLUMNS, ("session_id", "session")) if found["by_session"] else ["(none)"]
    return "\n".join(lines)


def dumps(found: dict[str, Any], as_json: bool) -> str:
    return json.dumps(found, indent=2, ensure_ascii=False) if as_json else render(found)
