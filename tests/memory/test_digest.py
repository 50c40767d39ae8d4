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


def test_names_the_agent_never_mentioned_count_when_asked_and_each_line_must_add_one() -> None:
    output = "\n".join(["    raise ValueError('the tilt must be between 0 and 90 degrees')",
                        "    raise ValueError('the tilt must be between 0 and 90 degrees')  # again",
                        "def get_total_irradiance(surface_tilt, surface_azimuth):",
                        "    albedo_default = 0.25"])
    steps = ["I should check get_total_irradiance."]
    only_mentioned = salient_lines([(5, "bash cat", output)], mentions(steps), 1_000)
    assert only_mentioned == [("bash cat", ["def get_total_irradiance(surface_tilt, surface_azimuth):"])]
    wider = salient_lines([(5, "bash cat", output)], mentions(steps), 1_000, others=0.5)
    # A line adds its names to what the chosen lines cover; one that adds none (the repeated
    # raise, every name of it covered) is left out.
    assert wider == [("bash cat", ["    raise ValueError('the tilt must be between 0 and 90 degrees')",
                                   "def get_total_irradiance(surface_tilt, surface_azimuth):", "    albedo_default = 0.25"])]


def test_the_line_adding_the_most_per_character_goes_first_when_the_room_is_short() -> None:
    long_line = "first_mentioned = second_mentioned(" + ", ".join(f"arg{n}" for n in range(25)) + ")"
    output = "\n".join(["short_name_alpha = 1", long_line])
    steps = ["short_name_alpha, first_mentioned and second_mentioned all matter"]
    # Either line fits the room, not both: the long one names two mentioned names, the short one
    # one name in a tenth of the characters.
    lines = salient_lines([(5, "bash cat", output)], mentions(steps), len(long_line) + 10)
    assert lines == [("bash cat", ["short_name_alpha = 1"])]


def test_a_note_for_stubbed_outputs_alone_does_not_say_calls_were_left_out() -> None:
    text = note_text([], 12, 80, [("bash cat a.py", ["def middle_of_the_file(): pass"])])
    assert text.startswith(STUB_MARK) and "left out" not in text and "compacted below" in text
    assert "def middle_of_the_file(): pass" in text
