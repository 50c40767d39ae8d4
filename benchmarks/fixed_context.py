"""A changed fixed-context message: whole where the client put it, or anchored with a diff.

An aider-shaped edit loop run through the library (`Session.prepare_turn` / `commit_turn`, the
same code the proxy runs): aider's system prompt, its few-shot exchange, the restored history
(whitespace changed, as aider restores it), its files message after the history and the question.
Every turn the model "edits" one function of the file, so the files message the next call carries
has changed. Each forwarded prompt goes through the prompt cache simulated by OpenAI's rule
(`testkit.prompt_cache`: prefixes of 1,024 tokens or more, 128-token blocks). Both placements
(`memory.turn.fixed`: `whole`, `diff`) run the same loop; the table gives tokens forwarded, tokens
cached, the cached share and the input cost at cached-token price ratios r = 0.1 / 0.25 / 0.5
(uncached + r x cached). Every `diff` prompt is checked to convey the current file: its anchor with
the diff applied (`testkit.diffs.apply_diff`) equals the file the client sent.

    python -m benchmarks.fixed_context [--turns 20] [--lines 240] [--budget 32000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from memory import create_runtime
from memory.turn.fixed import DIFF_HEADER, FixedPolicy
from memory.turn.usage import Usage
from testkit.diffs import apply_diff
from testkit.prompt_cache import PromptCache

SYSTEM = {"role": "system", "content": "Act as an expert software developer. Always use best practices when coding. "
          "Respect and use existing conventions, libraries, etc that are already present in the code base. " * 12}
FEW_SHOT = [{"role": "user", "content": "Change get_factorial() to use math.factorial"},
            {"role": "assistant", "content": "To make this change we need to modify `mathweb/flask/app.py`:\n\n"
             "mathweb/flask/app.py\n```python\n<<<<<<< SEARCH\nfrom flask import Flask\n=======\nimport math\n"
             "from flask import Flask\n>>>>>>> REPLACE\n```\n"},
            {"role": "user", "content": "I switched to a new code base. Please don't consider the above files any longer."},
            {"role": "assistant", "content": "Ok."}]
RATIOS = (0.1, 0.25, 0.5)


def _source(lines: int, edits: dict[int, int]) -> str:
    functions = lines // 4
    return "".join(f"def handler_{i}(request):\n    return respond(request, code={edits.get(i, 200 + i)})  # route {i}\n\n\n"
                   for i in range(functions))


def _files(body: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"I have *added these files to the chat* so you can go ahead and edit them.\n\n"
             f"app/routes.py\n```\n{body}```"},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."}]


async def run(mode: str, turns: int, lines: int, budget: int) -> dict[str, Any]:
    cache = PromptCache()
    forwarded = cached = 0
    edits: dict[int, int] = {}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        rt.fixed_policy = FixedPolicy(mode)
        session = rt.session(f"edit-loop-{mode}")
        history: list[dict[str, Any]] = []
        for turn in range(turns):
            body = _source(lines, edits)
            question = {"role": "user", "content": f"Make handler_{turn * 7 % (lines // 4)} return code {400 + turn}."}
            restored = [{**m, "content": m["content"] + "\n"} for m in history]
            messages = [SYSTEM, *FEW_SHOT, *restored, *_files(body), question]
            plan = await session.prepare_turn(messages, budget, named=False)
            prompt = plan.messages
            if mode == "diff":
                _check_conveys(prompt, _files(body)[0]["content"])
            hit = cache.lookup("aider", cache.render(prompt))
            forwarded += hit.prompt_tokens
            cached += hit.cached_tokens
            reply = {"role": "assistant", "content": f"Done: handler_{turn * 7 % (lines // 4)} now returns {400 + turn}."}
            await session.commit_turn(plan, reply, Usage(hit.prompt_tokens, 40, hit.cached_tokens))
            history += [question, reply]
            edits[turn * 7 % (lines // 4)] = 400 + turn  # the edit lands in the file the next call carries
    return {"mode": mode, "turns": turns, "forwarded": forwarded, "cached": cached,
            "cached_share": round(cached / forwarded, 4),
            "cost": {str(r): round(forwarded - cached + r * cached) for r in RATIOS}}


def _check_conveys(prompt: list[dict[str, Any]], current: str) -> None:
    """The prompt's files message, with the diff before the question applied, is the current file."""
    files = next(m["content"] for m in prompt if isinstance(m.get("content"), str) and m["content"].startswith("I have *added"))
    diffs = [m["content"] for m in prompt if isinstance(m.get("content"), str) and m["content"].startswith(DIFF_HEADER)]
    conveyed = apply_diff(files, diffs[-1]) if diffs else files
    if conveyed != current:
        raise RuntimeError("the prompt does not convey the current file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--lines", type=int, default=240)
    parser.add_argument("--budget", type=int, default=32000)
    args = parser.parse_args()
    rows = [asyncio.run(run(mode, args.turns, args.lines, args.budget)) for mode in ("whole", "diff")]
    print(json.dumps(rows, indent=1))
    base = rows[0]
    print(f"\n| placement | forwarded | cached | cached share | cost r=0.1 | r=0.25 | r=0.5 |  (budget {args.budget}, "
          f"{args.turns} turns, {args.lines}-line file)")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        costs = " | ".join(f"{row['cost'][str(r)]:,} ({row['cost'][str(r)] / base['cost'][str(r)]:.2f}×)" for r in RATIOS)
        print(f"| {row['mode']} | {row['forwarded']:,} | {row['cached']:,} | {row['cached_share']:.1%} | {costs} |")


if __name__ == "__main__":
    main()
