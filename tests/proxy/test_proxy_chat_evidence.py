"""Questions asked one after another in the same chat keep their evidence: the real proxy, the
official openai client, a fake upstream that caches prompt prefixes by OpenAI's rule. Each question
and its short reply join the history the client resends, so the window fills with recent questions;
each question still gets the turn it asks about (out of view) in one evidence message after the
cached part, just before the live turn, and the top of the prompt is not rebuilt for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memory import get_counter
from testkit.harness import Proxy, Upstream
from testkit.script import Reply
from tests.proxy.conftest import STORES, store_env

MODEL = "gpt-4o-mini"
SYSTEM = {"role": "system", "content": "You are the release assistant of a small team. Keep track of what the user tells you."}
CODENAMES = ("bramble cobalt dunlin ember fjord garnet heron indigo juniper kestrel lichen marlin nectar osprey "
             "pewter quartz russet sorrel tamarack umber vetch willow xenon yarrow zephyr").split()
QUESTION_REPLY = "Thanks, let me think about that."
BUDGET = 2000
NOTES = 40


def _codename(i: int) -> str:
    return f"{CODENAMES[i % len(CODENAMES)]}{i // len(CODENAMES) or ''}"


def _note(i: int) -> str:
    return f"Release checklist item {i}: the {_codename(i)} build ships on channel {100 + 7 * i} after the smoke tests " + \
        " ".join(f"step-{i}-{k}" for k in range(25))


def _question(i: int) -> str:
    return f"Quick question about the release checklist again: which channel does the {_codename(i)} build ship on?"


@pytest.fixture(scope="module", params=STORES)
def proxy(request: pytest.FixtureRequest, proxy_factory: Callable[..., Proxy]) -> Proxy:
    return proxy_factory("upstreams: {retries: 0}\n", **store_env(request))


def test_questions_in_sequence_each_get_their_evidence_after_the_cached_part(proxy: Proxy, upstream: Upstream) -> None:
    client = proxy.client(default_headers={"X-Memory-Session": "in-sequence", "X-Memory-Budget": str(BUDGET)})
    messages: list[dict[str, Any]] = [SYSTEM]
    for i in range(NOTES):
        messages.append({"role": "user", "content": _note(i)})
        upstream.fake.enqueue(Reply(text=f"Noted item {i}."))
        reply = client.chat.completions.create(model=MODEL, messages=messages)
        messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    assert get_counter(MODEL).messages_tokens(messages) > 3 * BUDGET
    modes: list[str] = []
    prompts: list[list[dict[str, Any]]] = []
    in_evidence = 0
    for i in range(16):  # the oldest items first: far out of view, and the window fills with questions
        messages.append({"role": "user", "content": _question(i)})
        upstream.fake.enqueue(Reply(text=QUESTION_REPLY))
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
        raw.parse()
        modes.append(raw.headers["x-memory-mode"])
        sent = list(upstream.fake.last_chat().json()["messages"])
        prompts.append(sent)
        assert get_counter(MODEL).messages_tokens(sent) <= BUDGET
        assert sent[-1] == messages[-1]  # the live turn ends the prompt, verbatim
        # The item asked about is in the prompt exactly once: in the evidence message just before
        # the live turn, or already in view (in the frame's base).
        holding = [n for n, m in enumerate(sent) if _note(i) in str(m.get("content"))]
        assert len(holding) == 1, f"question {i}: its item is in the prompt {len(holding)} times"
        in_evidence += holding == [len(sent) - 2] and sent[-2]["role"] == "system"
        messages.append({"role": "assistant", "content": QUESTION_REPLY})
    # The stable top survives: most questions reuse the frame, and each one that does sends the
    # previous prompt's stable part again, byte for byte.
    assert modes.count("frame") >= 12, modes
    assert in_evidence >= 8  # most came as this question's own evidence, after the cached part
    for i in range(1, len(prompts)):
        if modes[i] == "frame":
            stable = prompts[i - 1][:-2]
            assert prompts[i][: len(stable)] == stable, f"question {i} rewrote the top of the prompt"
