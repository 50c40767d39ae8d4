"""Excerpts of compacted outputs for the current step (`memory.turn.excerpts`)."""

from __future__ import annotations

from memory.recall.tokens import get_counter
from memory.turn.excerpts import EXCERPTS_HEADER, candidates, excerpt_message, step_query

COUNT = get_counter("gpt-4o-mini").count
GREP = "\n".join([f"src/fields.py:{n}: def helper_{n}(value): return value" for n in range(40)]
                 + ["src/fields.py:77: def _serialize_nested(self, value, attr, obj): return self.schema.dump(value)"])


def test_the_lines_that_match_the_current_step_come_back_verbatim_under_their_call() -> None:
    tail = [{"role": "user", "content": "Fix nested serialization."},
            {"role": "assistant", "content": "Now I change _serialize_nested.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "sed -n 70,90p src/fields.py"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "70: class Nested(Field):"}]
    found = candidates([(3, 'bash {"command": "grep -n def src/fields.py"}', GREP)])
    message = excerpt_message(found, step_query(tail), 200, COUNT)
    assert message is not None and message["role"] == "system" and message["content"].startswith(EXCERPTS_HEADER)
    assert "src/fields.py:77: def _serialize_nested(self, value, attr, obj): return self.schema.dump(value)" in message["content"]
    assert '[bash {"command": "grep -n def src/fields.py"}]' in message["content"]
    assert COUNT(message["content"]) <= 200


def test_nothing_comes_back_without_a_match_or_for_lines_the_prompt_shows() -> None:
    query = ("I will look at _serialize_nested next.", "")
    assert excerpt_message(candidates([(3, "bash", GREP)]), ("unrelated words only", ""), 500, COUNT) is None
    shown = frozenset(GREP.splitlines())
    assert excerpt_message(candidates([(3, "bash", GREP)], shown), query, 500, COUNT) is None
    assert excerpt_message(candidates([(3, "bash", GREP)]), query, 0, COUNT) is None
