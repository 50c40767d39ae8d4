"""Property test: generated conversations through the real proxy against a fake upstream that
rejects what OpenAI rejects. Tool loops (parallel calls too), retries, regenerations, edits;
full-history, stateless and sliding-window clients; budgets from tiny to roomy. Every request must
be accepted upstream, carry the live tail verbatim and exactly once, stay within the budget, repeat
byte for byte when retried, and leave memory holding exactly the conversation that happened."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memory import get_counter
from testkit.checks import orphan_problems
from testkit.harness import Proxy, Upstream
from testkit.openai_rules import check_chat
from testkit.script import Reply, ToolCall

MODEL = "gpt-4o-mini"
SYSTEM = {"role": "system", "content": "You are a careful assistant."}
WORDS = st.sampled_from("deploy cache login quota invoice retry schema index vector budget token alpha beta gamma 42 ünï 漢字".split())
TEXT = st.lists(WORDS, min_size=3, max_size=40).map(" ".join)


@dataclass(frozen=True)
class Say:
    text: str
    calls: int  # tool calls the model makes before answering (0: a plain answer)
    answer: str


@dataclass(frozen=True)
class Retry:
    pass


@dataclass(frozen=True)
class Regenerate:
    answer: str


@dataclass(frozen=True)
class Edit:
    text: str
    answer: str


ACTION = st.one_of(
    st.builds(Say, TEXT, st.sampled_from([0, 0, 1, 2, 3]), TEXT),
    st.just(Retry()),
    st.builds(Regenerate, TEXT),
    st.builds(Edit, TEXT, TEXT),
)


@dataclass
class Client:
    """A chat app of one shape: `full` resends everything, `stateless` sends only what is new,
    `window` sends its last few messages."""

    http: httpx.Client
    upstream: Upstream
    shape: str
    budget: int
    session: str = field(default_factory=lambda: f"prop-{uuid.uuid4().hex}")
    history: list[dict[str, Any]] = field(default_factory=list)
    sent_upto: int = 0  # stateless: history already sent
    last_request: list[dict[str, Any]] | None = None
    last_forwarded: list[dict[str, Any]] | None = None
    calls: int = 0

    def _request(self) -> list[dict[str, Any]]:
        if self.shape == "full":
            return [SYSTEM, *self.history]
        if self.shape == "stateless":
            return [SYSTEM, *self.history[self.sent_upto :]]
        return [SYSTEM, *self.history[-4:]]

    def send(self, reply: Reply, messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        messages = messages if messages is not None else self._request()
        self.upstream.fake.enqueue(reply)
        response = self.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages},
                                  headers={"X-Memory-Session": self.session, "X-Memory-Budget": str(self.budget)})
        assert response.status_code == 200, response.text
        assert "x-memory-error" not in response.headers, response.headers["x-memory-error"]
        forwarded = self.upstream.fake.last_chat().json()["messages"]
        assert check_chat({"model": MODEL, "messages": forwarded}) is None
        assert orphan_problems(forwarded) == []
        own = [m for m in messages if m.get("role") != "system"]
        # The live tail: from the request's last user message on (a stateless client sending tool
        # results carries only the end of it; memory supplies the start).
        tail = _tail(own) if any(m.get("role") == "user" for m in own) else own
        assert forwarded[-len(tail) :] == tail
        for message in tail:
            # Never more copies than the conversation itself holds (identical messages can recur).
            assert forwarded.count(message) <= max(1, self.history.count(message)), "the live tail went up twice"
        if response.headers["x-memory-mode"] != "over_budget":
            assert get_counter(MODEL).messages_tokens(forwarded) <= self.budget
        self.last_request, self.last_forwarded = messages, forwarded
        self.sent_upto = len(self.history)
        return dict(response.json()["choices"][0]["message"])

    def say(self, text: str, calls: int, answer: str) -> None:
        if self.shape == "stateless":
            # A stateless client that sends its last message again verbatim is retrying it (that is
            # all the proxy can tell), so this one never says the same thing twice.
            text = f"{text} (#{len(self.history)})"
        self.history.append({"role": "user", "content": text})
        if calls:
            ids = [f"call_{self.calls}_{k}" for k in range(calls)]
            self.calls += 1
            message = self.send(Reply(tool_calls=tuple(ToolCall("lookup", {"q": text[:20], "k": k}, id=i) for k, i in enumerate(ids))))
            self.history.append({k: v for k, v in message.items() if v is not None})
            self.history += [{"role": "tool", "tool_call_id": i, "content": f"result {i}: {text[:30]}"} for i in ids]
        message = self.send(Reply(text=answer))
        assert message["content"] == answer
        self.history.append({"role": "assistant", "content": answer})

    def retry(self) -> None:
        if self.last_request is None or self.shape == "window":
            return
        before = json.dumps(self.last_forwarded)
        reply = self.history[-1]
        self.send(Reply(text=reply.get("content"), tool_calls=_calls(reply)), self.last_request)
        assert json.dumps(self.last_forwarded) == before, "a retry forwarded a different prompt"

    def regenerate(self, answer: str) -> None:
        if self.last_request is None or self.shape == "window" or self.history[-1].get("tool_calls"):
            return
        self.send(Reply(text=answer), self.last_request)
        self.history[-1] = {"role": "assistant", "content": answer}

    def edit(self, text: str, answer: str) -> None:
        last_user = max((i for i, m in enumerate(self.history) if m["role"] == "user"), default=None)
        # A lone first message edited is, to a named session, a stateless client's next message.
        if not last_user or self.shape != "full":
            return
        # An edit right after an exchange the conversation already had (the same question and
        # answer twice) reads, to a session matched by content, just as well as a sliding window
        # that moved past the first copy: transcript matching cannot tell the two apart.
        kept = [(m["role"], m.get("content")) for m in self.history[:last_user]]
        later = [(m["role"], m.get("content")) for m in self.history[last_user - 2:]]
        if len(kept) >= 2 and any(later[k:k + 2] == kept[-2:] for k in range(1, len(later) - 1)):
            return
        del self.history[last_user:]
        self.say(text, 0, answer)


def _tail(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    return messages[start:]


def _calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(c["function"]["name"], json.loads(c["function"]["arguments"]), id=c["id"]) for c in message.get("tool_calls") or [])


class Env:
    """The proxy client and the fake upstream, printed briefly when hypothesis reports a case."""

    def __init__(self, http: httpx.Client, upstream: Upstream) -> None:
        self.http = http
        self.upstream = upstream

    def __repr__(self) -> str:
        return "Env(proxy, fake upstream)"


@pytest.fixture(scope="module")
def env(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> Iterator[Env]:
    with proxy_factory().http() as client:
        yield Env(client, upstream)


@example(shape="full", budget=120, actions=[Say("deploy deploy deploy", 0, "deploy deploy deploy"),
                                            Say("deploy deploy deploy", 0, "deploy deploy deploy"),
                                            Edit("deploy deploy deploy", "beta beta beta")])
@example(shape="window", budget=120, actions=[Say("deploy deploy deploy", 0, "deploy deploy deploy"),
                                              Say("deploy deploy deploy", 2, "deploy deploy deploy")])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(["full", "stateless", "window"]), budget=st.sampled_from([120, 300, 700, 2000, 6000]),
       actions=st.lists(ACTION, min_size=2, max_size=14))
def test_generated_conversations_stay_valid_exact_and_stored_once(env: Env, shape: str, budget: int, actions: list[Any]) -> None:
    http = env.http
    client = Client(http, env.upstream, shape, budget)
    for action in actions:
        if isinstance(action, Say):
            client.say(action.text, action.calls, action.answer)
        elif isinstance(action, Retry):
            client.retry()
        elif isinstance(action, Regenerate):
            client.regenerate(action.answer)
        else:
            client.edit(action.text, action.answer)
    if not client.history:
        return
    export = http.get(f"/memory/sessions/{client.session}/export").json()
    live = {e["id"]: e for e in export["events"] if not e["detached"] and e["type"].endswith("_message")}
    stored = [(live[t["event_id"]]["type"], live[t["event_id"]]["content"]) for t in export["transcript"]]
    expected = [(f"{m['role']}_message", m.get("content") or "") for m in client.history]
    assert stored == expected, "memory does not hold the conversation that happened"

