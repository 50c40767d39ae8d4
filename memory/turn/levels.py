"""One compaction of a tool loop: how far each older step goes to bring the tail to its target.

A step's level: 0 verbatim; 1 its outputs stubbed with their first and last lines, its long
arguments and text shortened; 2 its outputs reduced to their stub's header and its text to its
start; 3 dropped, listed in one note (`memory.turn.digest`). The note keeps the salient lines of
every output the compaction no longer shows whole, stubbed or dropped: a stub's first and last
lines rarely hold what a later step takes from the middle of an output.
Whatever the levels, an output identical to a later verbatim one becomes a pointer to it, and a
re-run whose output changed goes up as a diff against the earlier output while that one is verbatim
(they lose nothing). The newest steps within `verbatim_share` of the target stay whole; older ones
go further first, level by level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from memory.turn.digest import as_message, mentions, note_text, salient_lines
from memory.turn.stubs import call_label, diff_text, pointer_text, same_output, shorten_arguments, shorten_text, stub_text
from memory.turn.tail import TOOL_ROLES, CompactPolicy, Decided, Rendering, Tail

__all__ = ["compact", "headroom", "protected"]


_NOTE_LINE = 24  # tokens a dropped step's line in the note takes, about
_CHARS_PER_TOKEN = 4


def _steps(t: Tail, keep_from: int) -> list[tuple[int, int]]:
    """(start, end) of the assistant steps before `keep_from`: a call and the outputs answering it."""
    out: list[tuple[int, int]] = []
    for a in t.steps:
        if a >= keep_from:
            break
        end = a + 1
        while end < keep_from and t.messages[end].get("role") in TOOL_ROLES:
            end += 1
        out.append((a, end))
    return out


def compact(t: Tail, j: int, target: int, limit: int | None = None) -> Decided:
    """The renderings of tail[:j] that bring it to `target` tokens or as near as the rules allow:
    pointers and diffs (they lose nothing); then the newest steps within `verbatim_share` of the
    target stay whole and the older ones are stubbed; then the oldest go further, level by level.
    Whenever outputs are compacted, the note keeps lines of them (`memory.turn.digest`). When
    stubs alone reach the target, the older steps' stubs go to their header and the note gets the
    room their first and last lines took, up to `digest_share` of the target (what it leaves goes
    back to the newest of those stubs); the verbatim window keeps its room, so a diff keeps its
    base. When steps must be dropped, `digest_share` of the target is kept for the note's lines,
    never more than the steps leave of it; when every step is dropped (a long loop: the newest
    steps alone fill the target), the note takes what they leave of `digest_reach` of the way from
    the target to `limit` (the room; never past it). Either way the compaction leaves `headroom`
    free below the room: the target and the note's reach are lowered to leave it."""
    room = max(target, limit or target)
    free = headroom(t, j) if limit is not None else 0
    target = max(0, min(target, room - free))
    keep_from = protected(t, j)
    steps = _steps(t, keep_from)
    first = _render(t, j, keep_from, steps, [0] * len(steps))
    if sum(t.tokens[:j]) - first.saved(t) <= target:
        return first
    share = int(target * t.policy.digest_share)
    levels, decided = _levels(t, j, keep_from, steps, first, target, target)
    if decided.note is None:
        # Stubs alone reach the target: the older steps' stubs go to their header and the room
        # their first and last lines took goes to the note's lines of them (never the verbatim
        # window's room: the newest steps stay whole, and so does a diff's base).
        headers = [2 if level else 0 for level in levels]
        headed = _render(t, j, keep_from, steps, headers)
        digest = max(0, min(share, target - (sum(t.tokens[:j]) - headed.saved(t))))
        noted = _render(t, j, keep_from, steps, headers, digest)
        if noted.note is None:
            return decided
        # Room the note leaves unused goes back to the newest older steps' stubs.
        left = target - (sum(t.tokens[:j]) - noted.saved(t))
        for n in range(len(steps) - 1, -1, -1):
            a, end = steps[n]
            more = sum(_alone(t, i, levels[n])[2] - _alone(t, i, 2)[2] for i in range(a, end)) if headers[n] else 0
            if 0 < more <= left:
                headers[n], left = levels[n], left - more
        filled = _render(t, j, keep_from, steps, headers, noted.note[2])
        return filled if filled.note is not None and sum(t.tokens[:j]) - filled.saved(t) <= target else noted
    levels, decided = _levels(t, j, keep_from, steps, first, target - share, target)
    bare = decided.note[2] if decided.note else 0
    rest = sum(t.tokens[:j]) - decided.saved(t) - bare  # what the steps take, the note aside
    if all(level >= 3 for level in levels):
        # Every step gave up its room: the note, all that is left of them, gets it, short of the
        # room so the next steps are still appended untouched for a while (the cache keeps hitting).
        reach = min(target + int(t.policy.digest_reach * (room - target)), room - free)
        digest = max(0, reach - rest)
    else:
        digest = max(0, min(share, target - rest))
    decided = _render(t, j, keep_from, steps, levels, digest)
    note = decided.note[2] if decided.note else 0
    if note >= digest or not t.policy.fill:
        return decided
    # The note came out smaller than its room (its outputs had fewer salient lines): the room it
    # left goes to the steps, so the compaction lands near its target rather than far below it.
    levels, _ = _levels(t, j, keep_from, steps, first, target - note, target)
    filled = _render(t, j, keep_from, steps, levels, note)
    return filled if sum(t.tokens[:j]) - filled.saved(t) <= max(target, rest + note) else decided


def headroom(t: Tail, j: int) -> int:
    """What a compaction of tail[:j] leaves free below the room for the steps appended after it:
    `headroom_steps` of the loop's recent steps (the median of the newest `headroom_window`, an
    assistant message and its outputs). A function of the messages, so a replay finds the same."""
    recent = [sum(t.tokens[a:end]) for a, end in _steps(t, j)[-t.policy.headroom_window:]]
    if not recent:
        return 0
    recent.sort()
    return int(t.policy.headroom_steps * recent[len(recent) // 2])


def _levels(t: Tail, j: int, keep_from: int, steps: list[tuple[int, int]], first: Decided, target: int,
            window_target: int) -> tuple[list[int], Decided]:
    """Each step's level (and the rendering) that brings tail[:j] to `target`; the verbatim window
    is `verbatim_share` of `window_target`."""
    levels = [0] * len(steps)
    cost = sum(t.tokens[:j])

    def shown(i: int) -> int:
        return first.out[i][2] if i in first.out else t.tokens[i]

    window = sum(shown(i) for i in range(keep_from, j))
    for n in range(len(steps) - 1, -1, -1):
        a, end = steps[n]
        window += sum(shown(i) for i in range(a, end))
        if window > t.policy.verbatim_share * window_target:
            levels[: n + 1] = [1] * (n + 1)
            break
    # A diff in the window keeps its base whole: the base costs about what the diff saves.
    start = next((a for (a, _), level in zip(steps, levels, strict=True) if level == 0), keep_from)
    for i, (kind, _, _, call) in first.out.items():
        if kind == "diff" and i >= start:
            base = next(n for n, (a, end) in enumerate(steps) if any(str(t.messages[b].get("tool_call_id")) == call for b in range(a, end)))
            levels[base] = 0
    decided = _render(t, j, keep_from, steps, levels)
    current = cost - decided.saved(t)
    old = [level > 0 for level in levels]
    # The older steps go further first; the window's steps only when nothing older is left to take.
    for level, among_old in ((2, True), (3, True), (1, False), (2, False), (3, False)):
        changed = True
        while current > target and changed:
            estimate, changed = current, False
            for n, (a, end) in enumerate(steps):
                if levels[n] >= level or old[n] != among_old:
                    continue
                before = sum(_alone(t, i, levels[n])[2] for i in range(a, end))
                # A dropped step takes a line of the note while the note lists fewer than
                # `note_calls` calls; past that it only pushes an older call out of the list.
                listed = level == 3 and levels.count(3) < t.policy.note_calls
                after = sum(_alone(t, i, level)[2] for i in range(a, end)) + (_NOTE_LINE if listed else 0)
                levels[n], changed = level, True
                estimate -= before - after
                if estimate <= target:
                    break
            if changed:
                decided = _render(t, j, keep_from, steps, levels)
                current = cost - decided.saved(t)
    return levels, decided


def _alone(t: Tail, i: int, level: int) -> Rendering:
    """Message i at `level`, on its own (no pointer or diff); the message itself at level 0."""
    found = t.alone.get((i, level))
    if found is None:
        found = t.alone[(i, level)] = _rendered_alone(t, i, level)
    return found


def _rendered_alone(t: Tail, i: int, level: int) -> Rendering:
    if level == 0:
        return ("verbatim", dict(t.messages[i]), t.tokens[i], None)
    if level >= 3:
        return ("dropped", {}, 0, None)
    return _stub(t, i, level) or ("verbatim", dict(t.messages[i]), t.tokens[i], None)


def _chat_tool(t: Tail, i: int, text: str) -> dict[str, Any]:
    m = t.messages[i]
    return {"role": m.get("role"), "tool_call_id": m.get("tool_call_id"), "content": text}


def _stub(t: Tail, i: int, level: int) -> Rendering | None:
    """The lossy rendering of message i at level 1 or 2: a stub of a tool output, or an assistant
    step with its long arguments and text shortened; None when nothing would get shorter."""
    m, p = t.messages[i], t.policy
    if m.get("role") in TOOL_ROLES:
        text = t.texts[i]
        if text is None or (level == 1 and t.tokens[i] < p.min_output_tokens):
            return None
        label = t.label(i)
        head, tail = (p.head_lines, p.tail_lines) if level == 1 else (0, 0)
        stub = t.memo.get(("stub", text, label, head, tail), lambda: stub_text(text, label, head, tail))
        chat = _chat_tool(t, i, stub)
        return _checked(t, i, ("stub", chat, t.token_of(chat), None))
    if m.get("role") != "assistant":
        return None
    content = m.get("content")
    calls = m.get("tool_calls") or []
    text_chars, text_keep, arg_chars, arg_keep = ((p.content_chars, p.content_keep, p.arg_chars, p.arg_keep) if level == 1
                                                  else (p.brief_chars, p.brief_chars // 2, p.brief_chars, p.brief_chars // 3))
    new_content = shorten_text(content, text_keep) if isinstance(content, str) and len(content) > text_chars else content
    new_calls = []
    for call in calls:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        args = function.get("arguments")
        if isinstance(args, str) and len(args) > arg_chars:
            short = t.memo.get(("args", args, arg_chars, arg_keep), partial(shorten_arguments, args, arg_chars, arg_keep))
            call = {**call, "function": {**function, "arguments": short}}
        new_calls.append(call)
    if new_content == content and new_calls == list(calls):
        return None
    step: dict[str, Any] = {"role": "assistant", "content": new_content}
    if calls:
        step["tool_calls"] = new_calls
    return _checked(t, i, ("arguments", step, t.token_of(step), None))


def _checked(t: Tail, i: int, rendering: Rendering) -> Rendering | None:
    """`rendering` with its chat form turned into the client's wire form, when it is shorter and
    that form can carry it; else None."""
    kind, chat, tokens, target = rendering
    if tokens >= t.tokens[i]:
        return None
    wire = t.rewrite(t.messages[i], chat)
    return (kind, wire, tokens, target) if wire is not None else None


def protected(t: Tail, j: int) -> int:
    """The first index of the newest `keep_steps` steps before `j` (everything from there on stays)."""
    steps = [s for s in t.steps if s < j]
    if not steps:
        return j
    return steps[-min(t.policy.keep_steps, len(steps))] if t.policy.keep_steps > 0 else j


def _render(t: Tail, j: int, keep_from: int, steps: list[tuple[int, int]], levels: list[int], digest: int = 0) -> Decided:
    """Each rewritten message of tail[:j] given each step's level: an output identical to a later
    one that stays verbatim becomes a pointer to it; an output of a call made again with the same
    arguments goes up as a diff against the earlier output when that one is verbatim; the rest of
    a compacted step as its level says; dropped steps are listed in one note."""
    level_of = [0] * j
    for (a, end), level in zip(steps, levels, strict=True):
        for i in range(a, end):
            level_of[i] = level
    out: dict[int, Rendering] = {}
    latest: dict[str, int] = {}  # an output (`same_output`) -> the newest verbatim output with it
    for i in range(j - 1, -1, -1):
        text = t.texts[i]
        if text is None or level_of[i] >= 3 or t.tokens[i] < t.policy.min_output_tokens:
            continue
        same = same_output(text)
        target = latest.get(same)
        if i < keep_from and target is not None:
            call = str(t.messages[target].get("tool_call_id"))
            label, exact = t.label(i), t.texts[target] == text
            chat = _chat_tool(t, i, t.memo.get(("ptr", text, label, call, exact), partial(pointer_text, text, label, call, exact)))
            found = _checked(t, i, ("pointer", chat, t.token_of(chat), call))
            if found is not None:
                out[i] = found
                continue
        if level_of[i] == 0:
            latest.setdefault(same, i)
    targets = {r[3] for r in out.values()}
    by_key: dict[tuple[str, str], int] = {}  # call -> its newest verbatim output so far
    for i in range(j):
        text, key = t.texts[i], t.key(i)
        if text is None or key is None or i in out or level_of[i] != 0 or t.tokens[i] < t.policy.min_output_tokens:
            continue
        base = by_key.get(key)
        if i < keep_from and str(t.messages[i].get("tool_call_id")) not in targets and base is not None:
            base_text = t.texts[base] or ""
            base_call = str(t.messages[base].get("tool_call_id"))
            label = t.label(i)
            diff = t.memo.get(("diff", base_text, text, label, base_call),
                              lambda: diff_text(base_text, text, label, base_call, t.policy.diff_share) or "")
            if diff:
                chat = _chat_tool(t, i, diff)
                found = _checked(t, i, ("diff", chat, t.token_of(chat), base_call))
                if found is not None:
                    out[i] = found
                    continue
        by_key[key] = i
    dropped: list[int] = []
    for i in range(j):
        if level_of[i] and i not in out:
            rendering = _alone(t, i, level_of[i])
            if rendering[0] != "verbatim":
                out[i] = rendering
            if rendering[0] == "dropped":
                dropped.append(i)
        elif level_of[i] >= 3:
            out[i] = ("dropped", {}, 0, None)
            dropped.append(i)
    # Outputs shown as a stub (of a step at level 1 or 2): the lines the stub does not show, which
    # the note may keep.
    stubbed: dict[int, str] = {}
    for i in range(j):
        output = t.texts[i]
        if output is not None and (level_of[i] == 2 or (level_of[i] == 1 and out.get(i, ("",))[0] == "stub")):
            stubbed[i] = _unshown(output, t.policy) if level_of[i] == 1 else output
    first = next((i for i in range(j) if level_of[i]), 0)  # the oldest compacted step's start
    return Decided(out, _note(t, j, dropped, stubbed, digest, first))


def _unshown(text: str, policy: CompactPolicy) -> str:
    """The lines of an output its level-1 stub leaves out (`memory.turn.stubs.stub_text`)."""
    lines = text.splitlines()
    return "\n".join(lines[policy.head_lines: max(policy.head_lines, len(lines) - policy.tail_lines)])


def _note(t: Tail, j: int, dropped: list[int], stubbed: dict[int, str], digest: int, first: int) -> tuple[int, dict[str, Any], int] | None:
    """One message standing for the dropped steps and keeping lines of the outputs shown as
    stubs (`memory.turn.digest`), where the dropped steps were (else before the oldest compacted
    step, `first`), within `digest` tokens when it keeps lines of their outputs. None when no step
    is dropped and there is no room for lines."""
    if not dropped and not (stubbed and digest > 0):
        return None
    calls = [call_label(*t.calls.get(str(c.get("id")), ("", ""))) for i in dropped for c in t.messages[i].get("tool_calls") or ()]
    note = as_message(note_text(calls, t.policy.note_calls, t.policy.note_chars, []))
    bare = note["content"]
    if digest > t.token_of(note):
        sources = [(i, t.label(i), stubbed.get(i, t.texts[i] or "")) for i in sorted(set(dropped) | stubbed.keys()) if t.texts[i]]
        steps = [_step_text(t.messages[i]) for i in range(j) if t.messages[i].get("role") == "assistant"]
        mentioned = mentions(steps)
        # The lines are chosen by characters; code runs denser than 4 per token, and the calls'
        # list comes on top: what is over is taken off the characters, three times at most.
        chars = digest * _CHARS_PER_TOKEN
        for _ in range(4):
            lines = salient_lines(sources, mentioned, chars, t.policy.digest_others, t.policy.note_chars)
            candidate = as_message(note_text(calls, t.policy.note_calls, t.policy.note_chars, lines))
            tokens = t.token_of(candidate)
            if tokens <= digest or not lines:
                note = candidate if tokens <= digest else note
                break
            chars = int(chars * digest / tokens * 0.9)
    if not dropped and note["content"] == bare:
        return None  # no step left out and no line kept: nothing to say
    return (dropped[0] if dropped else first), note, t.token_of(note)


def _step_text(m: dict[str, Any]) -> str:
    parts = [m.get("content") if isinstance(m.get("content"), str) else ""]
    parts += [str((c.get("function") or {}).get("arguments") or "") for c in m.get("tool_calls") or () if isinstance(c, dict)]
    return "\n".join(p for p in parts if p)
