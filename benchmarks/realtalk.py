"""A second development set for retrieval, outside LoCoMo: REALTALK (Lee et al. 2025, "REALTALK: A
21-Day Real-World Dataset for Long-Term Conversation", github.com/danny911kr/REALTALK): ten real
messaging-app conversations between people over 21 days, with memory-probing questions whose
evidence names the turns (`D<session>:<turn>`), in LoCoMo's layout.

Evaluation only: the data is read from a folder outside this repository (`--realtalk`, the
repository's `data/Chat_*.json`), never copied in. The repository states no license; it is used
here for measurement only and nothing of it is redistributed. Chats 1-5 (by the number in their file
name) are the development split retrieval changes are decided on; 6-10 are held out.

    python -m benchmarks.realtalk --realtalk /path/to/REALTALK/data [--chats 1-5] [--budgets 800,2000,8000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.recall.embeddings import load_embedder

from .locomo import Conversation, _conversation
from .recall import METHODS, run_recall

__all__ = ["load_realtalk", "DEV_CHATS", "HELD_OUT_CHATS"]

DEV_CHATS = (1, 2, 3, 4, 5)
HELD_OUT_CHATS = (6, 7, 8, 9, 10)
_NUMBER = re.compile(r"^Chat_(\d+)_")
_SESSION = re.compile(r"^session_(\d+)$")


def _as_locomo(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """One REALTALK chat in LoCoMo's shape: its first speaker plays the user."""
    sessions = {k: v for k, v in raw.items() if _SESSION.match(k) and isinstance(v, list)}
    first = min(sessions, key=lambda k: int(k.split("_")[1]))
    conversation: dict[str, Any] = {"speaker_a": sessions[first][0]["speaker"]}
    for key, turns in sessions.items():
        conversation[key] = [{"speaker": t["speaker"], "dia_id": t["dia_id"], "text": t.get("clean_text") or t.get("text") or ""}
                             for t in turns]
        conversation[f"{key}_date_time"] = raw.get(f"{key}_date_time", "")
    return {"sample_id": name, "conversation": conversation, "qa": raw.get("qa", [])}


def load_realtalk(folder: Path, chats: Sequence[int]) -> list[Conversation]:
    """The chats numbered `chats` from a folder of REALTALK's `Chat_<n>_<names>.json` files, as
    conversations with their scorable questions (evidence named, categories 1-3)."""
    found: list[Conversation] = []
    for path in sorted(folder.glob("Chat_*.json"), key=lambda p: int(_NUMBER.match(p.name).group(1))):  # type: ignore[union-attr]
        number = int(_NUMBER.match(path.name).group(1))  # type: ignore[union-attr]
        if number in chats:
            raw = json.loads(path.read_text(encoding="utf-8"))
            found.append(_conversation(_as_locomo(raw, path.stem), number - 1))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realtalk", required=True, help="folder holding REALTALK's Chat_*.json (outside this repository)")
    parser.add_argument("--chats", default="1-5")
    parser.add_argument("--budgets", default="800,2000,8000")
    args = parser.parse_args(argv)
    first, _, last = args.chats.partition("-")
    convs = load_realtalk(Path(args.realtalk), range(int(first), int(last or first) + 1))
    budgets = [int(b) for b in args.budgets.split(",")]
    result = asyncio.run(run_recall(convs, load_embedder(None), budgets))
    for method in METHODS:
        scores = [result.score(method, b) for b in budgets]  # the one split these chats fall in
        print(f"{method:28s} " + " / ".join(f"{s.strict:.3f}" for s in scores) + f"  (n={scores[0].n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
