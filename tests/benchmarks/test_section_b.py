"""`benchmarks.common.splice_section` as `benchmarks.section_b` uses it: section B alone is replaced; the sections around it stay as written."""

from __future__ import annotations

from benchmarks.common import splice_section

RESULTS = "# results\n\n## A. Session\n\nA's text\n\n## B. Evidence recall\n\nold B\n\n### sub\n\nold table\n\n## C. Proxy\n\nC's text\n"


def test_only_section_b_is_replaced():
    out = splice_section(RESULTS, "B", ["## B. Evidence recall", "", "new B", ""])
    assert "old B" not in out and "old table" not in out
    assert out == "# results\n\n## A. Session\n\nA's text\n\n## B. Evidence recall\n\nnew B\n\n## C. Proxy\n\nC's text\n"


def test_a_file_without_section_b_gets_it_appended():
    out = splice_section("# results\n\n## A. Session\n\nA's text\n", "B", ["## B. Evidence recall", "", "new B"])
    assert out.endswith("A's text\n\n## B. Evidence recall\n\nnew B\n")


def test_section_b_last_in_the_file():
    out = splice_section("# r\n\n## B. x\n\nold\n", "B", ["## B. x", "", "new"])
    assert out == "# r\n\n## B. x\n\nnew\n"
