"""The rules of live-tail compaction (`memory.turn.compact`): what is compacted, what never is, and
the cache-stable batching."""

from __future__ import annotations

import json
from typing import Any

from memory.recall.tokens import get_counter
from memory.turn.compact import CompactMemo, CompactPolicy, compact_tail
from memory.turn.compact import _fingerprint as _fingerprint_of
from memory.turn.stubs import STUB_MARK, artifact_id
from testkit.checks import orphan_problems
from testkit.openai_rules import check_chat

COUNTER = get_counter("gpt-4o-mini")
# The rules of stubs, pointers and diffs, without the note for dropped steps taking the room.
RULES = CompactPolicy(digest_share=0.0, low_water=0.6)
TASK = {"role": "user", "content": "Make the pager's last page never empty, then run the tests."}


def _output(k: int, lines: int = 40) -> str:
    return "\n".join(f"src/pager_{k}.py:{n}: def page_{k}_{n}(items, size): return items[{n}:{n} + size]" for n in range(lines))


def _step(k: int, command: str, output: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": f"Step {k}: I run {command}.",
             "tool_calls": [{"id": f"call_{k}", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]},
            {"role": "tool", "tool_call_id": f"call_{k}", "content": output}]


def _loop(steps: int, output: Any = _output) -> list[dict[str, Any]]:
    tail = [TASK]
    for k in range(steps):
        command, text = output(k) if not isinstance(output(k), str) else (f"grep -rn page_{k} src", output(k))
        tail += _step(k, command, text)
    return tail


def _tokens(messages: list[dict[str, Any]]) -> int:
    return sum(COUNTER.message_tokens(m) for m in messages)


def test_a_tail_that_fits_goes_up_unchanged() -> None:
    tail = _loop(3)
    result = compact_tail(tail, 10_000, COUNTER.message_tokens)
    assert result.messages == tail and not result.compacted and result.saved == 0


def test_a_long_loop_fits_its_room_keeps_the_task_the_newest_steps_and_every_answer() -> None:
    tail = _loop(40, lambda k: (f"grep -rn page_{k} src", _output(k, 20)))
    room = 6_000
    result = compact_tail(tail, room, COUNTER.message_tokens, RULES)
    assert _tokens(tail) > 4 * room
    assert result.compacted and _tokens(result.messages) == result.tokens <= room
    assert result.messages[0] == TASK
    assert result.messages[-4:] == tail[-4:]  # the newest two steps, verbatim
    assert orphan_problems(result.messages) == []
    assert check_chat({"model": "m", "messages": [{"role": "system", "content": "s"}, *result.messages]}) is None
    stubs = [m for m in result.messages if m.get("role") == "tool" and str(m["content"]).startswith(STUB_MARK)]
    assert stubs and all("re-run the tool" in m["content"] or "identical" in m["content"] for m in stubs)
    # A stub names the call that made it and the content's address.
    stub = next(m for m in stubs if "compacted output" in m["content"])
    original = next(m for m in tail if m.get("tool_call_id") == stub["tool_call_id"])
    assert artifact_id(original["content"]) in stub["content"] and "grep -rn page_" in stub["content"]


def test_between_compactions_the_prompt_only_grows() -> None:
    tail = _loop(80, lambda k: (f"grep -rn page_{k} src", _output(k, 8)))
    room = 6_000
    previous = None
    compactions = appends = 0
    for n in range(3, len(tail) + 1, 2):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens)
        assert result.tokens <= room
        if previous is not None:
            if result.compactions == previous.compactions:
                assert result.messages[: len(previous.messages)] == previous.messages
                appends += 1
            else:
                compactions += 1
        previous = result
    assert compactions >= 3 and appends > 4 * compactions  # batches, not a compaction per step


def test_a_compaction_goes_well_below_the_room() -> None:
    tail = _loop(40)
    # Here the newest two steps leave the note less than its share, and every older step is
    # dropped: the note's reach past the target is its own rule (tested below), held at 0 here.
    policy = CompactPolicy(low_water=0.5, digest_reach=0.0)
    result = compact_tail(tail, 6_000, COUNTER.message_tokens, policy)
    # The last compaction brought it to half the room; the steps after it were appended.
    at_point = compact_tail(tail[: result.point], 6_000, COUNTER.message_tokens, policy)
    assert at_point.tokens <= 3_000
    reaching = CompactPolicy(low_water=0.5)
    at_reach = compact_tail(tail[: compact_tail(tail, 6_000, COUNTER.message_tokens, reaching).point], 6_000, COUNTER.message_tokens, reaching)
    assert at_reach.tokens <= 3_000 + int(reaching.digest_reach * (6_000 - 3_000))


def test_an_identical_output_goes_up_once_pointing_at_the_newer_copy() -> None:
    same = _output(1)
    tail = _loop(16, lambda k: ("cat src/pager.py", same) if k in (10, 14) else (f"grep -rn page_{k} src", _output(k, 8)))
    result = compact_tail(tail, 6_000, COUNTER.message_tokens, CompactPolicy(verbatim_share=0.9, digest_share=0.0, low_water=0.6))
    older = next(m for m in result.messages if m.get("tool_call_id") == "call_10")
    newer = next(m for m in result.messages if m.get("tool_call_id") == "call_14")
    assert newer["content"] == same
    assert "identical to the output of the later call call_14" in older["content"]


def _codex(output: str, chunk: str, wall: float) -> str:
    """An output as the Codex CLI's exec_command returns it: under a header of its own."""
    return f"Chunk ID: {chunk}\nWall time: {wall:.4f} seconds\nProcess exited with code 0\nOriginal token count: 550\nOutput:\n{output}"


def test_the_same_output_under_codex_run_headers_goes_up_once() -> None:
    """Codex prints a chunk id and a wall time above every output: the same file read twice
    differs there alone, and still goes up once (a pointer that says what differs)."""
    same = _output(1)
    reads = {10: _codex(same, "a1b2c3", 0.0912), 14: _codex(same, "d4e5f6", 0.4417)}
    tail = _loop(16, lambda k: ("cat src/pager.py", reads[k]) if k in reads else (f"grep -rn page_{k} src", _output(k, 8)))
    result = compact_tail(tail, 6_000, COUNTER.message_tokens, CompactPolicy(verbatim_share=0.9, digest_share=0.0, low_water=0.6))
    older = next(m for m in result.messages if m.get("tool_call_id") == "call_10")
    newer = next(m for m in result.messages if m.get("tool_call_id") == "call_14")
    assert newer["content"] == reads[14]
    assert older["content"].startswith(STUB_MARK) and "but for its chunk id and wall time, as the output of the later call call_14" in older["content"]
    # A different exit code is a different output: no pointer.
    failed = {10: reads[10].replace("code 0", "code 1"), 14: reads[14]}
    tail = _loop(16, lambda k: ("cat src/pager.py", failed[k]) if k in failed else (f"grep -rn page_{k} src", _output(k, 8)))
    result = compact_tail(tail, 6_000, COUNTER.message_tokens, CompactPolicy(verbatim_share=0.9, digest_share=0.0, low_water=0.6))
    older = next(m for m in result.messages if m.get("tool_call_id") == "call_10")
    assert "the later call call_14" not in older["content"]


def test_a_re_read_after_an_edit_goes_up_as_a_diff_while_the_earlier_read_is_verbatim() -> None:
    before = _output(1)
    after = before.replace("def page_1_7(items, size)", "def page_1_7(items, size, strict=True)")

    def steps(k: int) -> tuple[str, str]:
        if k == 20:
            return "cat src/pager.py", before
        if k == 22:
            return "cat src/pager.py", after
        return f"grep -rn page_{k} src", _output(k, 8)

    tail = _loop(26, steps)
    result = compact_tail(tail, 4_500, COUNTER.message_tokens, CompactPolicy(verbatim_share=0.9, digest_share=0.0, low_water=0.6))
    base = next(m for m in result.messages if m.get("tool_call_id") == "call_20")
    diff = next(m for m in result.messages if m.get("tool_call_id") == "call_22")
    assert base["content"] == before
    assert "with this diff applied" in diff["content"] and "+src/pager_1.py:7: def page_1_7(items, size, strict=True)" in diff["content"]
    # With the earlier read stubbed, the re-read goes up whole.
    tight = compact_tail(tail, 1_500, COUNTER.message_tokens)
    first = next((m for m in tight.messages if m.get("tool_call_id") == "call_20"), None)
    second = next((m for m in tight.messages if m.get("tool_call_id") == "call_22"), None)
    if second is not None and "with this diff applied" in str(second["content"]):
        assert first is not None and first["content"] == before


def test_long_arguments_of_older_steps_keep_head_tail_and_stay_valid_json() -> None:
    body = "\n".join(f"line {n} of the new module" for n in range(400))
    tail = _loop(20, lambda k: (f"cat <<'EOF' > src/new_{k}.py\n{body}\nEOF", "ok") if k == 2 else (f"grep -rn page_{k} src", _output(k, 10)))
    result = compact_tail(tail, 6_000, COUNTER.message_tokens, RULES)
    call = next(m for m in result.messages if m.get("role") == "assistant" and any(c["id"] == "call_2" for c in m.get("tool_calls") or ()))
    arguments = json.loads(call["tool_calls"][0]["function"]["arguments"])
    assert arguments["command"].startswith("cat <<'EOF' > src/new_2.py") and arguments["command"].endswith("EOF")
    assert "chars elided here" in arguments["command"] and call["tool_calls"][0]["function"]["name"] == "bash"


def test_a_rewrite_hook_that_cannot_carry_a_change_leaves_the_message_whole() -> None:
    tail = _loop(40)
    result = compact_tail(tail, 4_000, COUNTER.message_tokens, rewrite=lambda original, new: None)
    assert all(m in tail for m in result.messages if m.get("role") != "system")


def test_the_same_messages_compact_the_same_way() -> None:
    tail = _loop(50)
    first = compact_tail(tail, 5_000, COUNTER.message_tokens)
    second = compact_tail(json.loads(json.dumps(tail)), 5_000, COUNTER.message_tokens)
    assert json.dumps(first.messages) == json.dumps(second.messages)


def _same(a: Any, b: Any) -> bool:
    return (a.messages, a.changes, a.point, a.compactions, a.tokens, a.original_tokens, a.stubbed, a.key, a.origin) == (
        b.messages, b.changes, b.point, b.compactions, b.tokens, b.original_tokens, b.stubbed, b.key, b.origin)


def test_a_request_resumes_its_predecessors_plan_with_the_full_replays_result() -> None:
    # Every request of a growing loop (and requests that end anywhere, even right after a call),
    # planned with one memo that resumes where the previous request stopped, equals the replay of
    # the whole tail's growth with nothing remembered.
    tail = _loop(30, lambda k: (f"cat src/pager_{k % 7}.py", _output(k % 7 if k % 3 else k, 30)))
    room = 3_000
    shared = CompactMemo()
    resumed = 0
    for end in range(2, len(tail) + 1):
        plan = shared.plan(hash((hash((room, RULES)), _fingerprint_of(tail[0]))))  # the key: the tail's first chain hash
        resumed += plan is not None and plan.end > 1
        incremental = compact_tail(tail[:end], room, COUNTER.message_tokens, RULES, memo=shared)
        full = compact_tail(tail[:end], room, COUNTER.message_tokens, RULES, memo=CompactMemo())
        assert _same(incremental, full), end
    assert resumed > 40 and full.compactions >= 3


def test_an_edited_tail_does_not_resume_a_plan_it_does_not_extend() -> None:
    tail = _loop(24, lambda k: (f"grep -rn page_{k} src", _output(k, 30)))
    shared = CompactMemo()
    compact_tail(tail, 2_500, COUNTER.message_tokens, RULES, memo=shared)
    edited = [*tail[:5], {**tail[5], "content": "a different output"}, *tail[6:], *_step(99, "ls", _output(99, 30))]
    assert _same(compact_tail(edited, 2_500, COUNTER.message_tokens, RULES, memo=shared),
                 compact_tail(edited, 2_500, COUNTER.message_tokens, RULES, memo=CompactMemo()))


def _runs(k: int) -> tuple[str, str]:
    """A step whose output names nothing the agent mentions (no salient line for the note)."""
    return f"python run_{k}.py", "\n".join(f"progress {n} of step {k}: still running" for n in range(30))


def _at_points(tail: list[dict[str, Any]], room: int, policy: CompactPolicy) -> list[int]:
    """The tail's tokens right after each compaction, as the tail grows a step at a time."""
    out: list[int] = []
    memo = CompactMemo()
    for n in range(3, len(tail) + 1, 2):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens, policy, memo=memo)
        if result.compactions > len(out):
            out.append(result.tokens)
    return out


def test_room_the_note_leaves_unused_goes_back_to_the_steps() -> None:
    tail = _loop(40, _runs)
    room, target = 6_000, 4_200
    filled = _at_points(tail, room, CompactPolicy(low_water=0.7))
    unfilled = _at_points(tail, room, CompactPolicy(low_water=0.7, fill=False))
    # Once steps are dropped, the note's share of the target would sit empty without the rule.
    assert unfilled[-1] < 0.5 * target
    assert all(0.85 * target < tokens <= target for tokens in filled)


def test_compactions_land_as_high_late_in_a_long_loop_as_early() -> None:
    # The note lists only the newest `note_calls` calls, so a step dropped beyond those costs the
    # note nothing: counting a line for each would sink every later compaction further below its target.
    tail = _loop(120, _runs)
    points = _at_points(tail, 6_000, CompactPolicy(low_water=0.7))
    assert len(points) > 10 and min(points) > 0.85 * 4_200 and max(points) <= 4_200


def _note_tokens(tail: list[dict[str, Any]], room: int, policy: CompactPolicy) -> list[tuple[int, int]]:
    """(the tail's tokens, its note's tokens) right after each compaction, as the tail grows."""
    out: list[tuple[int, int]] = []
    memo = CompactMemo()
    for n in range(3, len(tail) + 1, 2):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens, policy, memo=memo)
        if result.compactions > len(out):
            notes = [m for m, (_, kind) in zip(result.messages, result.origin, strict=False) if kind == "note"]
            out.append((result.tokens, sum(COUNTER.message_tokens(m) for m in notes)))
    return out


def test_when_every_older_step_is_dropped_the_note_gets_their_room_up_to_its_reach_never_past_the_room() -> None:
    # The newest two steps alone nearly fill the target (a long loop reading large files): every
    # older step is dropped at each compaction, and their note is all that is left of them.
    tail = _loop(30, lambda k: (f"cat src/pager_{k}.py", _output(k, 55)))
    room, target = 6_000, 4_200
    # (keep_steps=2: the two newest steps are protected, so they alone nearly fill the target;
    # headroom_steps=0: the reach alone, without the room it leaves for the next steps, tested below)
    held = _note_tokens(tail, room, CompactPolicy(low_water=0.7, digest_reach=0.0, keep_steps=2, headroom_steps=0))
    reaching = _note_tokens(tail, room, CompactPolicy(low_water=0.7, digest_reach=0.5, keep_steps=2, headroom_steps=0))
    assert len(held) > 5 and len(reaching) > 5
    assert all(tokens <= target for tokens, _ in held)
    # Half the way from the target to the room, never past it.
    assert all(tokens <= target + (room - target) // 2 for tokens, _ in reaching)
    assert any(tokens > target for tokens, _ in reaching)
    assert max(note for _, note in reaching) > 1.5 * max(note for _, note in held)


def test_when_stubs_alone_reach_the_target_the_note_still_keeps_lines_of_the_stubbed_outputs() -> None:
    # A stub shows an output's first and last lines; what a later step needs is as often in the
    # middle. Whether or not a step had to be left out, the note keeps salient lines of what the
    # compaction no longer shows whole (once only steps that were dropped had their lines kept).
    tail = _loop(8, lambda k: (f"cat src/pager_{k}.py", _output(k, 40)))
    room = 6_000
    result = compact_tail(tail, room, COUNTER.message_tokens, CompactPolicy(digest_share=0.2))
    kinds = {c.kind for c in result.changes}
    assert "stub" in kinds and "dropped" not in kinds
    notes = [m for m, (_, kind) in zip(result.messages, result.origin, strict=False) if kind == "note"]
    assert len(notes) == 1 and notes[0]["content"].startswith(STUB_MARK) and "left out" not in notes[0]["content"]
    shown = {line for m in result.messages if m.get("role") == "tool" for line in str(m["content"]).splitlines()}
    kept = [line for line in notes[0]["content"].splitlines() if line.startswith("src/pager_")]
    assert kept and all(line not in shown for line in kept)  # lines the stubs do not show
    assert result.messages.index(notes[0]) == 1  # before the oldest compacted step, after the task
    assert _tokens(result.messages) == result.tokens <= room
    assert orphan_problems(result.messages) == []
    assert check_chat({"model": "m", "messages": [{"role": "system", "content": "s"}, *result.messages]}) is None


def test_only_the_newest_step_is_kept_whole_whatever_the_target() -> None:
    # Two large outputs in a row: protecting both would leave every older step out of the prompt
    # and the prompt over its room; the one before the newest is compacted like any older step.
    tail = _loop(12, lambda k: (f"cat src/pager_{k}.py", _output(k, 40 if k < 10 else 160)))
    room = 6_000
    result = compact_tail(tail, room, COUNTER.message_tokens)
    assert result.tokens <= room and result.messages[-2:] == tail[-2:]
    assert any(c.call_id == "call_10" for c in result.changes)  # the step before the newest
    protected = compact_tail(tail, room, COUNTER.message_tokens, CompactPolicy(keep_steps=2))
    assert protected.tokens > room  # the rule it replaces


def _compacting_requests(tail: list[dict[str, Any]], room: int, policy: CompactPolicy) -> list[int]:
    """The requests (one per step, as the loop grows) that compacted the tail again."""
    out: list[int] = []
    memo, last = CompactMemo(), 0
    for request, n in enumerate(range(3, len(tail) + 1, 2)):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens, policy, memo=memo)
        assert result.tokens <= room
        if result.compactions > last:
            out.append(request)
            last = result.compactions
    return out


def _large(k: int) -> tuple[str, str]:
    # Whole-file reads of 1,500-3,000 tokens at a room of 8,000 (Claude Code's reads and reminders).
    return f"cat src/pager_{k}.py", _output(k, 55 + (k * 37) % 55)


def test_a_loop_of_large_steps_leaves_room_for_its_next_steps_after_each_compaction() -> None:
    # A compaction that fills the room to its target or its note's reach leaves less than one large
    # step free: the next step compacts again and rewrites the note, and the cache is rebuilt at
    # every request. Each compaction leaves room for `headroom_steps` of the loop's recent steps.
    tail = _loop(30, _large)
    sizes = [COUNTER.message_tokens(m) for m in tail[2::2]]
    assert min(sizes) > 1_500 and max(sizes) < 3_200
    room = 8_000
    before = _compacting_requests(tail, room, CompactPolicy(headroom_steps=0))  # the rule it replaces
    assert any(b - a == 1 for a, b in zip(before, before[1:], strict=False))
    default = _compacting_requests(tail, room, CompactPolicy())
    assert len(default) < len(before)
    # Two steps of room: never compacted at two requests in a row.
    two = _compacting_requests(tail, room, CompactPolicy(headroom_steps=2))
    assert len(two) > 5 and all(b - a >= 2 for a, b in zip(two, two[1:], strict=False))
    # Right after each compaction, the room left holds the loop's median recent step.
    memo, last = CompactMemo(), 0
    for n in range(3, len(tail) + 1, 2):
        result = compact_tail(tail[:n], room, COUNTER.message_tokens, memo=memo)
        if result.compactions > last:
            last = result.compactions
            recent = sorted(COUNTER.message_tokens(tail[i]) + COUNTER.message_tokens(tail[i + 1]) for i in range(max(1, n - 16), n, 2))
            assert room - result.tokens >= recent[len(recent) // 2], (n, result.tokens)


def test_a_loop_of_small_steps_compacts_as_without_the_headroom() -> None:
    # Its steps fit, two at a time, in what the target and the note's reach leave free anyway: nothing changes.
    tail = _loop(80, lambda k: (f"grep -rn page_{k} src", _output(k, 8)))
    room = 6_000
    assert [compact_tail(tail[:n], room, COUNTER.message_tokens).messages for n in range(41, len(tail) + 1, 20)] == \
        [compact_tail(tail[:n], room, COUNTER.message_tokens, CompactPolicy(headroom_steps=0)).messages for n in range(41, len(tail) + 1, 20)]
