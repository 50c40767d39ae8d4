"""Reading LoCoMo (evaluation only, CC BY-NC: the data is read from its path, never copied).

One exact turn format is used both to ingest a turn and to check that it reached the compiled
prompt: `"<speaker>: <text>"`, plus `" [shares <blip_caption>]"` when the turn shares an image.
Answers are never read; only questions, categories and evidence ids are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Turn", "Question", "Conversation", "load_locomo", "turn_content", "split_of", "CATEGORY_NAMES",
           "SCORED_CATEGORIES", "DEV_CONVERSATIONS", "DEV", "HELD_OUT", "ALL", "SPLITS"]

CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
SCORED_CATEGORIES = frozenset(CATEGORY_NAMES)
# Retrieval is tuned on the first five conversations of locomo10.json only; the other five are the
# held-out figure. A split is a fixed property of a conversation's position in the file.
DEV_CONVERSATIONS = 5
DEV = "dev (conversations 1-5)"
HELD_OUT = "held out (conversations 6-10)"
ALL = "all ten"
SPLITS = (HELD_OUT, DEV, ALL)
_SESSION_KEY = re.compile(r"^session_(\d+)$")
_ID_SPLIT = re.compile(r"[;\s]+")


@dataclass(frozen=True)
class Turn:
    dia_id: str
    role: str  # "user" for speaker A, "assistant" for speaker B
    content: str
    timestamp: str


@dataclass(frozen=True)
class Question:
    conversation: str
    text: str
    category: int
    evidence: tuple[str, ...]  # every id named by the data, split; unresolved ones included
    resolved: tuple[str, ...]  # the ids that name a turn of the conversation


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]
    position: int = 0  # 0-based position in locomo10.json (decides the split)

    @property
    def split(self) -> str:
        return split_of(self.position)

    def turn_index(self) -> dict[str, Turn]:
        return {t.dia_id: t for t in self.turns}


def split_of(position: int) -> str:
    """The split of the conversation at 0-based `position` in locomo10.json."""
    return DEV if position < DEV_CONVERSATIONS else HELD_OUT


def turn_content(turn: dict[str, Any]) -> str:
    """The ingested (and checked) text of one raw LoCoMo turn."""
    text = f"{turn['speaker']}: {turn['text']}"
    caption = turn.get("blip_caption")
    if caption:
        text += f" [shares {caption}]"
    return text


def _evidence_ids(raw: list[str]) -> tuple[str, ...]:
    ids: list[str] = []
    for entry in raw:
        ids.extend(part for part in _ID_SPLIT.split(str(entry)) if part)
    return tuple(dict.fromkeys(ids))


def _conversation(sample: dict[str, Any], position: int) -> Conversation:
    conv = sample["conversation"]
    speaker_a = conv["speaker_a"]
    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := _SESSION_KEY.match(key)) and isinstance(conv[key], list)
    )
    turns: list[Turn] = []
    for number, key in sessions:
        stamp = str(conv.get(f"session_{number}_date_time", ""))
        for raw in conv[key]:
            role = "user" if raw["speaker"] == speaker_a else "assistant"
            turns.append(Turn(dia_id=raw["dia_id"], role=role, content=turn_content(raw), timestamp=stamp))
    known = {t.dia_id for t in turns}
    sample_id = str(sample.get("sample_id", ""))
    questions: list[Question] = []
    for qa in sample["qa"]:
        category = int(qa["category"])
        evidence = _evidence_ids(qa.get("evidence") or [])
        if category not in SCORED_CATEGORIES or not evidence:
            continue
        resolved = tuple(e for e in evidence if e in known)
        questions.append(Question(sample_id, str(qa["question"]), category, evidence, resolved))
    return Conversation(sample_id, tuple(turns), tuple(questions), position)


def load_locomo(path: Path) -> list[Conversation]:
    """All conversations of locomo10.json with their scorable questions (categories 1-4 with evidence)."""
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    return [_conversation(sample, position) for position, sample in enumerate(data)]
