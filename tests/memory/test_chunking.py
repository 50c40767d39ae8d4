from __future__ import annotations

from memory.ingest.chunking import MAX_CHUNK_TOKENS, chunk_text
from memory.recall.tokens import get_counter

count = get_counter("gpt-4o-mini").count


def test_short_text_is_one_chunk():
    chunks = chunk_text("hello there\nsecond line", count, "message")
    assert [(c.text, c.start_line, c.end_line) for c in chunks] == [("hello there\nsecond line", 1, 2)]


def test_long_code_splits_by_lines_with_ranges_and_bounded_size():
    code = "\n".join(f"def function_{i}(value):\n    return value * {i}\n" for i in range(200))
    chunks = chunk_text(code, count)
    assert len(chunks) > 5
    assert all(count(c.text) <= MAX_CHUNK_TOKENS for c in chunks)
    lines = code.split("\n")
    for c in chunks:
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])


def test_probes_isolate_a_comment_from_surrounding_code_and_docstrings():
    code = "\n".join(
        ['"""Module docstring that explains the rendering pipeline in several words."""', "from .index import SessionView, Unit",
         "from .records import StateItem", "# NOTE: Authentication timeout configured for 30 minutes.", "from .state import render_block"]
        + [f"value_{i} = compute_something(value_{i - 1})" for i in range(1, 40)]
    )
    chunk = chunk_text(code, count)[0]
    assert "NOTE: Authentication timeout configured for 30 minutes." in chunk.probes
    assert not any("import" in p for p in chunk.probes)


def test_diff_splits_by_hunk():
    hunks = "\n".join(f"@@ -{i * 10},3 +{i * 10},3 @@\n-old line {i} " + "x " * 40 + f"\n+new line {i} " + "y " * 40 for i in range(12))
    diff = "--- a/app.py\n+++ b/app.py\n" + hunks
    chunks = chunk_text(diff, count, "diff")
    assert len(chunks) > 1 and all(c.text.lstrip().startswith(("---", "@@")) for c in chunks)
