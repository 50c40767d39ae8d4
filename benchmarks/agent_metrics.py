"""What an agent's next step needs from its earlier tool outputs, and whether a prompt still carries it.

**Identifier recall** (issue 18). Identifiers are `[A-Za-z_][A-Za-z0-9_]{5,}` words. For step i
(the agent read `messages[:i]` and answered `messages[i]`), the step *needs* the identifiers of its
text and tool-call arguments that an earlier tool output contained and that neither the system
message, the task, nor the latest tool output (always sent) contains. A prompt *carries* a needed
identifier with its context when one of its lines is, verbatim, a whole line (12 or more characters
once stripped) holding the identifier, taken from an earlier tool output that held it or from one of
the agent's own earlier steps (its text or its command). Lines compare with trailing whitespace
removed; a bare list of names carries nothing (its lines are not lines of any output).

**Clearing window**: the baseline the issue names. Every assistant step kept, tool outputs newest
first verbatim while the whole prompt fits the budget, older outputs replaced by a one-line
placeholder; the latest output is always kept (so the prompt may exceed the budget).

Pure functions over OpenAI chat messages; `tests/benchmarks/test_agent_metrics.py` checks them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from memory.recall.tokens import TiktokenCounter

__all__ = ["IDENTIFIER", "MIN_LINE", "identifiers", "message_texts", "prompt_lines", "StepNeeds", "needs_by_step", "carried",
           "placeholder", "clearing_window"]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{5,}")
MIN_LINE = 12


def identifiers(text: str) -> set[str]:
    return set(IDENTIFIER.findall(text))


def _argument_texts(arguments: str) -> list[str]:
    """A call's arguments as the agent wrote them: the string values of its JSON (the command),
    or the raw text when it is not JSON (a compacted or truncated argument)."""
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return [arguments]
    out: list[str] = []
    stack: list[Any] = [decoded]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return out


def message_texts(message: dict[str, Any]) -> list[str]:
    """Everything a model reads in one message: its text (string or text parts) and its tool
    calls' arguments (decoded, and raw when they are not JSON)."""
    texts: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        texts += [str(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            texts += _argument_texts(function["arguments"])
    return texts


def _lines(texts: Iterable[str]) -> list[str]:
    return [line.rstrip() for text in texts for line in text.split("\n")]


def prompt_lines(messages: Sequence[dict[str, Any]]) -> set[str]:
    """Every line of a prompt (trailing whitespace removed): what `carried` looks lines up in."""
    return {line for m in messages if isinstance(m, dict) for line in _lines(message_texts(m))}


@dataclass(frozen=True)
class StepNeeds:
    """The identifiers step `index` needs, each with the lines that would carry it."""

    index: int
    needed: dict[str, frozenset[str]]


def needs_by_step(messages: Sequence[dict[str, Any]]) -> dict[int, StepNeeds]:
    """`StepNeeds` of every assistant step at index >= 2 of one trajectory (system message at 0,
    task at 1). Built in one pass: the candidate lines of step i come from messages before i."""
    fixed = identifiers("\n".join(message_texts(messages[0]) + message_texts(messages[1]))) if len(messages) > 1 else set()
    from_outputs: set[str] = set()  # identifiers some earlier tool output held
    context: dict[str, set[str]] = {}  # identifier -> the lines that carry it with its context
    out: dict[int, StepNeeds] = {}
    for i in range(2, len(messages)):
        message = messages[i]
        if message.get("role") == "assistant":
            latest = messages[i - 1]
            latest_ids = identifiers("\n".join(message_texts(latest))) if latest.get("role") == "tool" else set()
            wanted = identifiers("\n".join(message_texts(message))) & from_outputs
            wanted -= fixed | latest_ids
            out[i] = StepNeeds(i, {x: frozenset(context.get(x, ())) for x in sorted(wanted)})
        if message.get("role") in ("tool", "assistant"):
            ids_here: set[str] = set()
            for line in _lines(message_texts(message)):
                if len(line.strip()) < MIN_LINE:
                    ids_here |= identifiers(line) if message.get("role") == "tool" else set()
                    continue
                found = identifiers(line)
                ids_here |= found
                for x in found:
                    context.setdefault(x, set()).add(line)
            if message.get("role") == "tool":
                from_outputs |= ids_here
    return out


def carried(needs: StepNeeds, lines: set[str]) -> int:
    """How many of the step's needed identifiers the prompt whose lines are `lines` carries."""
    return sum(1 for candidates in needs.needed.values() if not candidates.isdisjoint(lines))


def placeholder(message: dict[str, Any]) -> dict[str, Any]:
    """A tool output cleared by the window: one line saying what was there."""
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    note = f"[earlier tool output cleared to fit the context window: {text.count(chr(10)) + 1} lines, {len(text):,} characters]"
    return {"role": "tool", "tool_call_id": message.get("tool_call_id"), "content": note}


def clearing_window(messages: Sequence[dict[str, Any]], budget: int, counter: TiktokenCounter,
                    tokens: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The clearing-window prompt for `messages` at `budget` (whole prompt, OpenAI's formula).
    `tokens`: each message's `counter.message_tokens`, when the caller already has them."""
    sizes = list(tokens) if tokens is not None else [counter.message_tokens(m) for m in messages]
    tools = [j for j, m in enumerate(messages) if m.get("role") == "tool"]
    cleared = {j: placeholder(messages[j]) for j in tools}
    cleared_sizes = {j: counter.message_tokens(p) for j, p in cleared.items()}
    total = counter.messages_tokens([]) + sum(cleared_sizes.get(j, sizes[j]) for j in range(len(messages)))
    kept: set[int] = set()
    for n, j in enumerate(reversed(tools)):
        grown = total + sizes[j] - cleared_sizes[j]
        if n > 0 and grown > budget:
            break
        kept.add(j)
        total = grown
    return [dict(m) if j not in cleared or j in kept else cleared[j] for j, m in enumerate(messages)]
