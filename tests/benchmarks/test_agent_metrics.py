"""Section H's metrics on a tiny synthetic trajectory: which identifiers a step needs, what carries
them (a whole line of the output they came from, or of the agent's own step; never a bare list of
names, never a line cut out of a longer one), the clearing window, and the summaries and section."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.agent_metrics import carried, clearing_window, identifiers, needs_by_step, placeholder, prompt_lines
from benchmarks.agent_replay import AgentsRun, StepRecord, reply_of
from benchmarks.agent_traces import clean_message, split_of
from benchmarks.agents import write_section
from benchmarks.common import splice_section
from benchmarks.report_agents import section_h, summaries, summarize
from memory.recall.tokens import get_counter


def _call(i: int, command: str, text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text,
            "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]}


def _output(i: int, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{i}", "content": f"<returncode>0</returncode>\n<output>\n{text}\n</output>"}


TRAJECTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful assistant that runs shell commands."},
    {"role": "user", "content": "Fix the tokenizer bug in the parser module."},
    _call(1, "cat parser.py", "Let me read the parser."),
    _output(1, "import string\n\ndef tokenize_stream(source):\n    return source.split()"),
    _call(2, "grep -rn helper_value .", "Now the helper."),
    _output(2, "config.py:3: helper_value = 42"),
    _call(3, "sed -i 's/split()/split(None)/' parser.py", "I will change tokenize_stream so helper_value stays."),
]
STEP = 6


def _prompt(replace_first_output: str | None) -> list[dict[str, Any]]:
    prompt = [dict(m) for m in TRAJECTORY[:STEP]]
    if replace_first_output is not None:
        prompt[3] = {**prompt[3], "content": replace_first_output}
    return prompt


def test_identifiers_are_six_characters_or_more() -> None:
    assert identifiers("a split tokenize_stream x1_abcdef __init__ 9abcdef") == {"tokenize_stream", "x1_abcdef", "__init__", "abcdef"}


def test_a_step_needs_what_an_earlier_output_held_and_nothing_always_sent() -> None:
    needs = needs_by_step(TRAJECTORY)
    assert set(needs) == {2, 4, 6}
    # helper_value is in the latest output (always sent); "parser" is in the task; "change" came from no output.
    assert set(needs[STEP].needed) == {"tokenize_stream"}
    assert needs[STEP].needed["tokenize_stream"] == frozenset({"def tokenize_stream(source):"})
    assert needs[2].needed == {} and needs[4].needed == {}


def test_the_whole_prompt_carries_the_identifier_with_its_line() -> None:
    needs = needs_by_step(TRAJECTORY)[STEP]
    assert carried(needs, prompt_lines(_prompt(None))) == 1
    # The line alone, as a stub that kept it whole (trailing whitespace aside), still carries it.
    assert carried(needs, prompt_lines(_prompt("[stub] first lines:\ndef tokenize_stream(source):   "))) == 1


def test_a_bare_list_of_names_or_a_cut_line_carries_nothing() -> None:
    needs = needs_by_step(TRAJECTORY)[STEP]
    assert carried(needs, prompt_lines(_prompt("names: tokenize_stream, helper_value"))) == 0
    assert carried(needs, prompt_lines(_prompt("see def tokenize_stream(source): in parser.py"))) == 0
    assert carried(needs, prompt_lines(_prompt("tokenize_stream"))) == 0
    assert carried(needs, prompt_lines(_prompt(placeholder(TRAJECTORY[3])["content"]))) == 0


def test_the_agents_own_step_carries_what_it_said_about_an_output() -> None:
    trajectory = [dict(m) for m in TRAJECTORY]
    trajectory[4] = _call(2, "grep -rn helper_value .", "The function tokenize_stream splits on whitespace.")
    needs = needs_by_step(trajectory)[STEP]
    prompt = [dict(m) for m in trajectory[:STEP]]
    prompt[3] = placeholder(prompt[3])
    assert carried(needs, prompt_lines(prompt)) == 1
    # ... and a command it ran, read as the command (not its JSON encoding).
    trajectory[4] = _call(2, "python -c 'from parser import tokenize_stream'", "Try it.")
    needs = needs_by_step(trajectory)[STEP]
    prompt = [dict(m) for m in trajectory[:STEP]]
    prompt[3] = placeholder(prompt[3])
    assert carried(needs, prompt_lines(prompt)) == 1


def test_the_clearing_window_clears_oldest_outputs_first_and_keeps_the_latest() -> None:
    counter = get_counter("gpt-4o-mini")
    prompt = _prompt(None)
    full = counter.messages_tokens(prompt)
    assert clearing_window(prompt, full, counter) == prompt
    narrow = clearing_window(prompt, full - 1, counter)
    assert narrow[3] == placeholder(prompt[3]) and narrow[5] == prompt[5]
    assert [m["role"] for m in narrow] == [m["role"] for m in prompt] and narrow[3]["tool_call_id"] == "call_1"
    assert "\n" not in narrow[3]["content"]
    assert counter.messages_tokens(narrow) <= full - 1
    tiny = clearing_window(prompt, 10, counter)
    assert tiny[5] == prompt[5] and tiny[3] == placeholder(prompt[3])  # the latest output always goes


def test_messages_are_cleaned_to_what_openai_accepts_and_replies_keep_their_bytes() -> None:
    raw = {"role": "assistant", "content": "x", "function_call": None, "provider_specific_fields": None, "extra": {"a": 1},
           "tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command":  "ls"}'}}]}
    clean = clean_message(raw)
    assert clean == {"role": "assistant", "content": "x",
                     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command":  "ls"}'}}]}
    assert reply_of(clean).tool_calls[0].arguments_json() == '{"command":  "ls"}'
    assert split_of("pyvista__pyvista-4315") == "held_out" and split_of("pylint-dev__astroid-1196") == "tuning"
    with pytest.raises(ValueError):
        split_of("django__django-1")


def _record(split: str, **kw: Any) -> StepRecord:
    base = dict(trajectory=f"t-{split}", split=split, budget=8000, step=2, sent=1000, sent_cached=0, forwarded=500, cached=0, status=200,
                mode="compiled", direct_ms=10.0, proxy_ms=15.0, needed=4, carried=3, window=800, window_cached=0, window_carried=2,
                window_over=False)
    return StepRecord(**{**base, **kw})


def test_summaries_price_cache_hits_and_count_rejections() -> None:
    steps = [_record("held_out"), _record("held_out", step=3, sent_cached=0, forwarded=500, cached=400, status=400, mode="over_budget"),
             _record("tuning", needed=0, carried=0, window_carried=0)]
    held = summarize(steps[:2])
    assert held["raw_vs_resend"] == pytest.approx(0.5) and held["cached_share"] == pytest.approx(0.4)
    assert held["cost"]["0.1"] == pytest.approx((600 + 0.1 * 400) / 2000)
    assert (held["rejected"], held["over_budget"], held["needed"]) == (1, 1, 8)
    assert held["recall"] == pytest.approx(6 / 8) and held["window"]["recall"] == pytest.approx(4 / 8)
    assert held["added_ms"]["p50"] == pytest.approx(5.0)
    run = AgentsRun((8000,), (("t-held_out", "held_out", 2), ("t-tuning", "tuning", 1)), tuple(steps), "none", 1.0)
    h = summaries(run, {"command": "x", "commit": "abc"})
    assert [(r["split"], r["steps"]) for r in h["rows"]] == [("held_out", 2), ("tuning", 1), ("all", 3)]
    text = "\n".join(section_h(h))
    assert "- 1 requests rejected by the strict fake (target 0): **not met**" in text
    assert "identifier recall 0.750 (target ≥ 0.90; clearing window 0.500): **not met**" in text


def test_the_section_is_spliced_in_place() -> None:
    doc = "# R\n\n## G. PostgreSQL\n\ng\n\n## H. Agents: old\n\nold figures\n"
    once = splice_section(doc, "H", ["## H. Agents: new", "", "new figures", ""])
    assert once == "# R\n\n## G. PostgreSQL\n\ng\n\n## H. Agents: new\n\nnew figures\n"
    assert splice_section(once, "H", ["## H. Agents: new", "", "new figures", ""]) == once
    assert splice_section("# R\n", "H", ["## H. x", ""]) == "# R\n\n## H. x\n"
    middle = splice_section("# R\n\n## H. a\n\nold\n\n## I. next\n", "H", ["## H. b", "", "new", ""])
    assert middle == "# R\n\n## H. b\n\nnew\n\n## I. next\n"


def test_a_tuning_run_is_written_as_a_sub_section_and_a_held_out_run_keeps_it(tmp_path: Any) -> None:
    held = AgentsRun((8000,), (("t-held_out", "held_out", 1),), (_record("held_out"),), "none", 1.0)
    tuning = AgentsRun((8000,), (("t-tuning", "tuning", 1),), (_record("tuning", carried=4),), "none", 1.0)
    write_section(tmp_path, summaries(held, {"command": "held", "commit": "abc"}))
    held_text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    write_section(tmp_path, summaries(tuning, {"command": "tuning", "commit": "def"}), tuning=True)
    both = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert both.startswith(held_text.rstrip("\n")) and "### The tuning split" in both
    assert "| tuning (" in both and "1.000 (4)" in both and "identifier recall 0.750" in both  # held-out targets unchanged
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert [r["split"] for r in results["H"]["rows"]] == ["held_out"] and results["H"]["tuning"]["meta"]["commit"] == "def"
    # A later held-out run replaces the held-out tables and keeps the tuning sub-section.
    write_section(tmp_path, summaries(held, {"command": "held again", "commit": "ghi"}))
    again = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "held again" in again and "### The tuning split" in again and "`tuning` on commit def" in again
    with pytest.raises(SystemExit):
        write_section(tmp_path, summaries(held, {"command": "held", "commit": "abc"}), tuning=True)
