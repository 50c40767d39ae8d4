"""The note for dropped steps (`memory.turn.digest`)."""

from __future__ import annotations

from memory.turn.digest import mentions, note_text, salient_lines
from memory.turn.stubs import STUB_MARK


def test_lines_naming_what_the_agent_mentioned_are_kept_verbatim_best_first() -> None:
    output = "\n".join([f"pvlib/irradiance.py:{n}: x = {n}  # filler line" for n in range(50)]
                       + ["pvlib/irradiance.py:512: def get_total_irradiance(surface_tilt, surface_azimuth):"])
    steps = ["I should check get_total_irradiance and surface_tilt.", "get_total_irradiance is called from ModelChain."]
    lines = salient_lines([(5, "bash grep", output)], mentions(steps), 200)
    assert lines == [("bash grep", ["pvlib/irradiance.py:512: def get_total_irradiance(surface_tilt, surface_azimuth):"])]
    assert salient_lines([(5, "bash grep", output)], mentions(steps), 0) == []


def test_the_note_counts_the_calls_left_out_and_lists_the_newest() -> None:
    text = note_text([f"bash ls {n}" for n in range(30)], 3, 80, [("bash grep", ["a line that matters here"])])
    assert text.startswith(STUB_MARK) and "30 earlier tool calls" in text
    assert "- bash ls 29" in text and "- bash ls 26" not in text and "a line that matters here" in text
