"""Deterministic extraction of session state from message text.

Recognised lines (case-insensitive, optional leading bullet):
    Decision: <text>                   Decision (<subject>): <text>     Decision: <subject> - <text>
    Constraint: <text>
    Open: <question>                   Open question: <question>
    Glossary: <term> - <definition>    (also "term: definition" or "term = definition")
    Resolved: Q2 / Closed: Q2 / Answered: Q2   closes an open question
A decision marked "(supersedes D2)" supersedes D2; a later decision on the same subject supersedes
the earlier one. A glossary entry for a known term replaces its definition. Identical text merges
into the existing item and records the new source event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memory.records import StateItem

__all__ = ["StateOp", "extract_lines", "plan_state_ops", "render_state_block", "state_as_dict", "KIND_PREFIX"]

KIND_PREFIX = {"decision": "D", "constraint": "C", "open": "Q", "glossary": "G"}
_LINE = re.compile(
    r"^\s*(?:[-*•]\s+|\d+[.)]\s+)?(?:\*\*)?(decision|constraint|open question|open|glossary|resolved|closed|answered)"
    r"(?:\s*\(([^)]*)\))?(?:\*\*)?\s*:(?:\*\*)?\s*(.+?)\s*$",
    re.I,
)
_SUPERSEDES = re.compile(r"\(\s*supersedes\s+(D\d+)\s*\)", re.I)
_LABEL = re.compile(r"\b([DCQG]\d+)\b")
_SUBJECT_SPLIT = re.compile(r"\s+[-–—]\s+|\s*:\s+|\s*=\s*")


@dataclass(frozen=True)
class StateOp:
    """One extracted line: kind, subject (or None), text, and explicit references."""

    kind: str  # decision | constraint | open | glossary | close
    subject: str | None
    text: str
    supersedes: str | None = None
    closes: tuple[str, ...] = ()


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def extract_lines(text: str) -> list[StateOp]:
    """All state lines in a message, in order."""
    ops: list[StateOp] = []
    in_code = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        match = _LINE.match(line)
        if not match:
            continue
        word, paren, body = match.group(1).lower(), match.group(2), match.group(3).strip().rstrip("*").strip()
        if not body:
            continue
        if word in ("resolved", "closed", "answered"):
            labels = tuple(lbl.upper() for lbl in _LABEL.findall(body) if lbl.upper().startswith("Q"))
            if labels:
                ops.append(StateOp("close", None, body, closes=labels))
            continue
        kind = "open" if word.startswith("open") else word
        supersedes = None
        sup = _SUPERSEDES.search(body) or (_SUPERSEDES.search(f"({paren})") if paren else None)
        if sup:
            supersedes = sup.group(1).upper()
            body = _SUPERSEDES.sub("", body).strip()
        subject: str | None = None
        if paren and not _SUPERSEDES.fullmatch(f"({paren})"):
            subject = _norm(paren)
        if kind == "glossary" or (kind == "decision" and subject is None):
            parts = _SUBJECT_SPLIT.split(body, maxsplit=1)
            if len(parts) == 2 and parts[0].strip() and len(parts[0].split()) <= 5:
                subject = _norm(parts[0])
        if kind == "glossary" and subject is None:
            continue  # a glossary line must name its term
        ops.append(StateOp(kind, subject, body, supersedes=supersedes))
    return ops


@dataclass(frozen=True)
class PlannedChange:
    """What to do with one op against the current items: add, merge into, and/or retire others."""

    op: StateOp
    merge_into: int | None
    retire: tuple[tuple[int, str], ...]  # (item id, new status)


def plan_state_ops(items: list[StateItem], ops: list[StateOp]) -> list[PlannedChange]:
    """Decide, against the current active items, how each op changes state. Pure; the runtime
    applies the plan in the same transaction as the event it came from."""
    active = [i for i in items if i.status == "active"]
    plan: list[PlannedChange] = []
    for op in ops:
        if op.kind == "close":
            retire = tuple((i.id, "closed") for i in active if i.kind == "open" and i.label in op.closes)
            plan.append(PlannedChange(op, None, retire))
            continue
        same = next((i for i in active if i.kind == op.kind and _norm(i.text) == _norm(op.text)), None)
        if same is not None:
            plan.append(PlannedChange(op, same.id, ()))
            continue
        retire_ids: list[tuple[int, str]] = []
        if op.kind in ("decision", "glossary"):
            for item in active:
                if item.kind != op.kind:
                    continue
                if (op.supersedes and item.label == op.supersedes) or (op.subject and item.subject == op.subject):
                    retire_ids.append((item.id, "superseded"))
        plan.append(PlannedChange(op, None, tuple(retire_ids)))
    return plan


_HEADINGS = (("decision", "Decisions"), ("constraint", "Constraints"), ("open", "Open questions"), ("glossary", "Glossary"))


def render_state_block(items: list[StateItem]) -> str:
    """The compact state block: headed bullet lists, labels kept so later turns can refer to them."""
    lines: list[str] = ["Session state (extracted from this conversation):"]
    for kind, heading in _HEADINGS:
        chosen = [i for i in items if i.kind == kind and i.status == "active"]
        if not chosen:
            continue
        lines.append(f"{heading}:")
        lines.extend(f"- {i.label}: {i.text}" for i in chosen)
    return "\n".join(lines) if len(lines) > 1 else ""


def state_as_dict(items: list[StateItem], include_inactive: bool = False) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {"decisions": [], "constraints": [], "open_questions": [], "glossary": []}
    key = {"decision": "decisions", "constraint": "constraints", "open": "open_questions", "glossary": "glossary"}
    for item in items:
        if item.status == "active" or include_inactive:
            out[key[item.kind]].append(item.as_dict())
    return out
