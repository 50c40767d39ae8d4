"""Which messages ask something of the assistant (full evidence block) and which only tell it
something (the strongest matches only): `memory.prompt.need`."""

from __future__ import annotations

import pytest

from memory.prompt.need import asks, is_tool_step, plain_chat, uses_tools


@pytest.mark.parametrize("message", [
    "When did Caroline go to the LGBTQ support group?",
    "Caroline: Thanks, Melanie! You play any instruments?",
    "What did Melanie paint",
    "remind me of the venue we picked",
    "Okay. Can you list the open bugs",
    "Fix the failing test in parser.py",
    "I forgot the name of that café",
    "Could you summarise last week's plan",
])
def test_questions_and_requests_ask(message: str) -> None:
    assert asks(message)


@pytest.mark.parametrize("message", [
    "We went hiking on Sunday!",
    "Caroline: Thanks, Melanie. It means a lot to share this with you.",
    "Caroline: Yeah, Mel! Life's all about creating memories. Can't wait for the trip!",
    "That's lovely.",
    "",
])
def test_news_and_reactions_only_tell(message: str) -> None:
    assert not asks(message)


def test_a_tool_call_or_result_makes_a_tool_loop() -> None:
    assert uses_tools([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c", "content": "x"}])
    assert uses_tools([{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}])
    assert not uses_tools([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])


def test_plain_chat_has_no_tool_call_or_result_anywhere():
    chat = [{"role": "user", "content": "When did John and Maria meet?"}]
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    assert plain_chat(chat, uses_tools([{"role": "assistant", "content": "Hi"}]))
    assert not plain_chat(chat, uses_tools([call, result]))
    assert not plain_chat([result], False)
    assert [is_tool_step(m) for m in (call, result, *chat)] == [True, True] + [False] * len(chat)
