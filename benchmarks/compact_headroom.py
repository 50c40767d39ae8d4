"""How often a tool loop with large steps is compacted, and what its prompts cost with a prefix cache.

A unit-level replay of `memory.turn.compact.compact_tail`, no proxy: a synthetic loop (a task,
then steps whose outputs are file reads of `--min`-`--max` tokens, drawn from a seeded generator)
grows one step per request; each request's tail is compacted to `--room` tokens as the proxy does
it (one memo across the loop, so each request resumes its predecessor's replay). The provider
caches the longest message prefix a request shares with the one before it; a cached token costs
`r` of an uncached one. Reported: compactions per request, the mean gap between compactions in
steps, tokens sent, cached share, and cost at r = 0.1 relative to the same loop without caching.

    python -m benchmarks.compact_headroom --room 8000 --steps 42
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from memory.recall.tokens import get_counter
from memory.turn.compact import CompactMemo, CompactPolicy, compact_tail

COUNTER = get_counter("gpt-4o-mini")
TASK = {"role": "user", "content": "Find why the exporter drops the last row of every page, fix it and run the tests."}


def _read(k: int, tokens: int) -> str:
    lines, out = max(4, tokens // 22), []
    for n in range(lines):
        out.append(f"src/export/page_{k}.py:{n}: rows_{k}_{n} = fetch_rows(cursor_{k}, offset={n} * size, limit=size)")
    return "\n".join(out)


def loop(steps: int, low: int, high: int, seed: int = 7) -> list[dict[str, Any]]:
    """A task, then `steps` steps (a short reasoning text and a call, then its output of `low`-`high` tokens)."""
    draw = random.Random(seed)
    tail: list[dict[str, Any]] = [TASK]
    for k in range(steps):
        path = f"src/export/page_{k}.py"
        tail.append({"role": "assistant", "content": f"Step {k}: the rows come from {path}; I read it next.",
                     "tool_calls": [{"id": f"call_{k}", "type": "function",
                                     "function": {"name": "read_file", "arguments": json.dumps({"path": path})}}]})
        tail.append({"role": "tool", "tool_call_id": f"call_{k}", "content": _read(k, draw.randint(low, high))})
    return tail


def _common(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def replay(tail: list[dict[str, Any]], room: int, policy: CompactPolicy, r: float = 0.1) -> dict[str, float]:
    memo, previous = CompactMemo(), None
    sent = cached = requests = 0
    points: list[int] = []
    last = 0
    for n in range(3, len(tail) + 1, 2):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens, policy, memo=memo)
        if result.tokens > room:
            raise RuntimeError(f"request {requests}: {result.tokens} tokens over the room {room}")
        if result.compactions > last:
            points.append(requests)
            last = result.compactions
        tokens = [COUNTER.message_tokens(m) for m in result.messages]
        hit = sum(tokens[: _common(previous, result.messages)]) if previous is not None else 0
        sent, cached, requests = sent + sum(tokens), cached + hit, requests + 1
        previous = result.messages
    gaps = [b - a for a, b in zip(points, points[1:], strict=False)]
    return {"requests": requests, "compactions": len(points), "per_request": round(len(points) / requests, 3),
            "mean_gap": round(sum(gaps) / len(gaps), 2) if gaps else 0.0, "sent": sent, "cached_share": round(cached / sent, 3),
            "cost_r": round((sent - cached + r * cached) / sent, 3), "cost": round(sent - cached + r * cached)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--room", type=int, default=8_000)
    parser.add_argument("--steps", type=int, default=42)
    parser.add_argument("--min", type=int, default=1_500)
    parser.add_argument("--max", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--headroom-steps", type=float, default=None, help="CompactPolicy.headroom_steps (default: the policy's)")
    args = parser.parse_args()
    tail = loop(args.steps, args.min, args.max, args.seed)
    policy = CompactPolicy() if args.headroom_steps is None else CompactPolicy(headroom_steps=args.headroom_steps)
    print(json.dumps({"room": args.room, "steps": args.steps, "outputs": [args.min, args.max], "headroom_steps": getattr(policy, "headroom_steps", None),  # None: code from before the rule
                      **replay(tail, args.room, policy)}))


if __name__ == "__main__":
    main()
