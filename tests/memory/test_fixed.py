"""Where the client's fixed context goes, and an updated one as a diff against its anchor (pure)."""

from __future__ import annotations

from typing import Any

from memory.turn.fixed import DIFF_HEADER, FixedAnchors, FixedPolicy, anchored
from testkit.diffs import apply_diff

SYSTEM = {"role": "system", "content": "Act as an expert software developer."}
EXAMPLE = [{"role": "user", "content": "Change the greeting"}, {"role": "assistant", "content": "Ok."}]
BODY = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(40))


def _files(body: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"I have *added these files to the chat*.\n\nnotes.py\n```\n{body}```"},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."}]


def _call(anchors: FixedAnchors, body: str, history: list[dict[str, Any]], question: str,
          policy: FixedPolicy = FixedPolicy()) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    files = _files(body)
    system = [SYSTEM, *EXAMPLE]
    tail = [*files, {"role": "user", "content": question}]
    fixed = {id(m) for m in EXAMPLE + files}
    placed = anchored("owner\0s1", system, tail, fixed, anchors, policy)
    return placed.system, placed.tail, placed.diffed


def test_the_files_message_goes_in_front_and_an_edit_as_a_diff_that_gives_the_current_file() -> None:
    anchors = FixedAnchors()
    system, tail, diffed = _call(anchors, BODY, [], "q1")
    assert system == [SYSTEM, *EXAMPLE, *_files(BODY)] and tail == [{"role": "user", "content": "q1"}] and diffed == 0
    edited = BODY.replace("return x * 7\n", "return x * 7 + 1  # edited\n")
    system2, tail2, diffed2 = _call(anchors, edited, [], "q2")
    assert system2 == system  # the anchor stays: the cached prefix is byte-identical
    assert diffed2 == 1 and tail2[-1] == {"role": "user", "content": "q2"}
    note = tail2[0]["content"]
    assert note.startswith(DIFF_HEADER) and "+    return x * 7 + 1  # edited" in note and len(note) < len(edited) / 4
    # The model can read the current file: the anchor with the diff applied.
    assert apply_diff(_files(BODY)[0]["content"], note) == _files(edited)[0]["content"]
    # The same request again (a retry) goes up the same.
    assert _call(anchors, edited, [], "q2") == (system2, tail2, 1)


def test_a_large_change_re_anchors_and_goes_up_whole_once() -> None:
    anchors = FixedAnchors()
    _call(anchors, BODY, [], "q1")
    rewritten = "".join(f"def other_{i}(y):\n    return y - {i}\n\n" for i in range(40))
    system, tail, diffed = _call(anchors, rewritten, [], "q2")
    assert system[-2:] == _files(rewritten) and diffed == 0 and len(tail) == 1
    assert _call(anchors, rewritten, [], "q3")[0] == system  # the new anchor holds


def test_whole_mode_sends_the_fixed_context_as_the_client_placed_it() -> None:
    anchors = FixedAnchors()
    system, tail, _ = _call(anchors, BODY, [], "q1", FixedPolicy("whole"))
    assert system == [SYSTEM, *EXAMPLE] and tail == [*_files(BODY), {"role": "user", "content": "q1"}]


def test_anchors_are_per_session_and_bounded() -> None:
    anchors = FixedAnchors(max_sessions=2)
    for n in range(3):
        anchors.put(f"s{n}", [{"role": "user", "content": str(n)}])
    assert anchors.get("s0") is None and anchors.get("s2") == ({"role": "user", "content": "2"},)
    # Another session never gets this one's anchor, however alike its messages.
    _call(anchors, BODY, [], "q1")
    files = _files(BODY + "# x\n")
    other = anchored("other-owner\0s1", [SYSTEM], [*files, {"role": "user", "content": "q"}], {id(m) for m in files}, anchors)
    assert other.diffed == 0 and other.system == [SYSTEM, *files]
