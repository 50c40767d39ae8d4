"""`POST /v1/responses` with memory, driven by the official openai client (`client.responses`),
against a fake Responses API that rejects what OpenAI rejects (tool-call pairing, unknown fields,
`previous_response_id` of a response it did not store, `item_reference` to unknown items).

Every test asserts on what the upstream received, so it fails when memory is not applied."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from testkit.harness import GEMINI_KEY, OPENAI_KEY, Proxy, Upstream, config_for, start_proxy
from testkit.script import Reply, ToolCall
from tests.proxy.conftest import STORES, store_env

MODEL = "gpt-4o-mini"
BUDGET = 700
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _filler(i: int) -> str:
    return f"Turn {i}: notes on checklist item {i}, " + " ".join(f"detail-{i}-{k}" for k in range(40))


@pytest.fixture(scope="module", params=STORES)
def rproxy(request: pytest.FixtureRequest, proxy_factory: Callable[..., Proxy]) -> Proxy:
    """Every test below runs on SQLite and on PostgreSQL (response ids and items live in the store)."""
    return proxy_factory(f"upstreams: {{retries: 0}}\nbudget_tokens: {BUDGET}\nagent_budget_tokens: null\n", **store_env(request))


def _sent(upstream: Upstream) -> dict[str, Any]:
    return dict(upstream.fake.last_response_request().json())


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _export(proxy: Proxy, session: str, key: str = OPENAI_KEY) -> dict[str, Any]:
    with proxy.http(key) as http:
        response = http.get(f"/memory/sessions/{session}/export")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _live(export: dict[str, Any], etype: str) -> list[str]:
    return [e["content"] for e in export["events"] if e["type"] == etype and not e["detached"]]


def test_a_long_conversation_is_compiled_under_budget_with_state_from_turn_one(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": "resp-long"})
    history: list[Any] = [{"role": "user", "content": "Decision: the release train leaves on Thursdays."}]
    first = client.responses.create(model=MODEL, input=history, instructions="You are the release assistant.")
    history += [o.model_dump(exclude_none=True) for o in first.output]
    for i in range(12):
        history.append({"role": "user", "content": _filler(i)})
        raw = client.responses.with_raw_response.create(model=MODEL, input=history, instructions="You are the release assistant.",
                                                        temperature=0.2)
        reply = raw.parse()
        history += [o.model_dump(exclude_none=True) for o in reply.output]
    sent = _sent(upstream)
    assert int(raw.headers["x-memory-compiled-tokens"]) <= BUDGET < int(raw.headers["x-memory-original-tokens"])
    assert raw.headers["x-memory-session"] == "resp-long"
    assert sent["temperature"] == 0.2 and sent["instructions"] == "You are the release assistant."  # passed through
    assert len(sent["input"]) < len(history)
    assert sent["input"][-1] == history[-2]  # the live user message, verbatim, last
    assert "Thursdays" in _text(sent["input"]) and history[0] not in sent["input"]  # state, not the old turn
    assert reply.output_text == f"echo: {_filler(11)}"
    export = _export(rproxy, "resp-long")
    assert len(_live(export, "user_message")) == 13 and len(_live(export, "assistant_message")) == 13


def test_streamed_response_is_stored_before_completed_and_passes_provider_headers(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": "resp-stream"})
    upstream.fake.enqueue(Reply(text="Decision: ship the beta to ten customers."))
    with client.responses.with_streaming_response.create(model=MODEL, input="what do we ship?", stream=True) as raw:
        assert raw.headers["x-memory-session"] == "resp-stream"
        assert raw.headers["x-request-id"].startswith("req_") and raw.headers["x-ratelimit-limit-requests"] == "10000"
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Decision: ship the beta to ten customers."
    export = _export(rproxy, "resp-stream")
    assert _live(export, "assistant_message") == ["Decision: ship the beta to ten customers."]
    with rproxy.http() as http:
        state = http.get("/memory/sessions/resp-stream").json()["state"]
    assert any("beta" in d["text"] for d in state["decisions"])


def test_a_function_tool_loop_over_budget_is_accepted_by_the_strict_fake(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": "resp-tools"})
    history: list[Any] = []
    for i in range(8):
        history.append({"role": "user", "content": _filler(i)})
        history += [o.model_dump(exclude_none=True) for o in client.responses.create(model=MODEL, input=history).output]
    history.append({"role": "user", "content": "What is the weather in Paris and Oslo?"})
    calls = (ToolCall("get_weather", {"city": "Paris"}, id="call_paris"), ToolCall("get_weather", {"city": "Oslo"}, id="call_oslo"))
    upstream.fake.enqueue(Reply(tool_calls=calls), Reply(text="Mild in Paris, cold in Oslo."))
    first = client.responses.create(model=MODEL, input=history, tools=[WEATHER])
    assert [o.type for o in first.output] == ["function_call", "function_call"]
    history += [o.model_dump(exclude_none=True) for o in first.output]
    history += [{"type": "function_call_output", "call_id": o.call_id, "output": f"{json.loads(o.arguments)['city']}: 9C"}
                for o in first.output]
    second = client.responses.create(model=MODEL, input=history, tools=[WEATHER])
    assert second.output_text == "Mild in Paris, cold in Oslo."  # the strict fake accepted the pairing
    sent = _sent(upstream)["input"]
    assert sent[-5:] == history[-5:]  # the live tail: question, both calls, both outputs, verbatim and last
    assert len(sent) < len(history)
    assert sum(1 for item in sent if item == history[-5]) == 1
    export = _export(rproxy, "resp-tools")
    assert _live(export, "tool_message") == ["Paris: 9C", "Oslo: 9C"]
    assert _live(export, "assistant_message")[-1] == "Mild in Paris, cold in Oslo."


@pytest.mark.parametrize("stream", [False, True])
def test_a_previous_response_id_chain_with_store_false_is_served_from_memory(rproxy: Proxy, upstream: Upstream, stream: bool) -> None:
    client = rproxy.client()  # no session header: the chain names the session
    first = client.responses.create(model=MODEL, input="Constraint: never deploy on Fridays.", store=False)
    previous = first.id
    for i in range(10):
        if stream:
            with client.responses.create(model=MODEL, input=_filler(i), previous_response_id=previous, store=False, stream=True) as events:
                done = [e for e in events if e.type == "response.completed"]
            previous = done[0].response.id
        else:
            previous = client.responses.create(model=MODEL, input=_filler(i), previous_response_id=previous, store=False).id
    raw = client.responses.with_raw_response.create(model=MODEL, input="Can we deploy tomorrow, a Friday?", previous_response_id=previous,
                                                    store=False)
    sent = _sent(upstream)
    # The fake stored nothing (store: false): had the id gone upstream, it would have refused it.
    assert "previous_response_id" not in sent
    assert int(raw.headers["x-memory-compiled-tokens"]) <= BUDGET < int(raw.headers["x-memory-original-tokens"])
    assert "never deploy on Fridays" in _text(sent["input"])  # state from the first turn, over budget
    assert sent["input"][-1] == {"role": "user", "content": "Can we deploy tomorrow, a Friday?"}
    session = raw.headers["x-memory-session"]
    assert len(_live(_export(rproxy, session), "user_message")) == 12


def test_a_previous_response_id_repeated_is_a_retry_and_an_older_one_branches(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client()
    one = client.responses.create(model=MODEL, input="first question", store=False)
    upstream.fake.enqueue(Reply(text="answer A"), Reply(text="answer B"))
    two = client.responses.create(model=MODEL, input="second question", previous_response_id=one.id, store=False)
    retry = client.responses.with_raw_response.create(model=MODEL, input="second question", previous_response_id=one.id, store=False)
    assert two.output_text == "answer A" and retry.parse().output_text == "answer B"
    session = retry.headers["x-memory-session"]
    export = _export(rproxy, session)
    assert _live(export, "user_message") == ["first question", "second question"]
    assert _live(export, "assistant_message") == ["echo: first question", "answer B"]  # the regenerated reply replaced A
    branch = client.responses.create(model=MODEL, input="a different second question", previous_response_id=one.id, store=False)
    assert [i.get("content") for i in _sent(upstream)["input"] if i.get("role") == "user"] == ["first question", "a different second question"]
    assert _live(_export(rproxy, session), "user_message") == ["first question", "a different second question"]
    assert branch.output_text == "echo: a different second question"


def test_an_unknown_previous_response_id_is_forwarded_unchanged_with_a_memory_error(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hello", previous_response_id="resp_never_seen")
    assert _sent(upstream)["previous_response_id"] == "resp_never_seen"
    assert "resp_never_seen" in caught.value.response.headers["x-memory-error"]
    assert caught.value.code == "previous_response_not_found"  # the upstream's own error, code kept


def test_item_references_are_resolved_from_what_memory_stored(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": "resp-refs"})
    first = client.responses.create(model=MODEL, input=[{"role": "user", "content": "remember the code word: heliotrope"}], store=False)
    refs = [{"type": "item_reference", "id": first.output[0].id}]
    second = client.responses.create(model=MODEL, store=False, input=[{"role": "user", "content": "remember the code word: heliotrope"},
                                                                       *refs, {"role": "user", "content": "what was it?"}])
    sent = _sent(upstream)["input"]
    assert not any(i.get("type") == "item_reference" for i in sent)  # the fake would have refused it (store: false)
    assert sent[1]["id"] == first.output[0].id and sent[1]["content"][0]["text"] == first.output_text
    assert second.output_text == "echo: what was it?"


@pytest.mark.parametrize("status", ["failed", "incomplete"])
def test_failed_or_incomplete_responses_are_not_stored(rproxy: Proxy, upstream: Upstream, status: str) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": f"resp-{status}"})
    client.responses.create(model=MODEL, input="hello")
    upstream.fake.enqueue(Reply(text="half an answer", responses_status=status))
    with client.responses.create(model=MODEL, input="and now?", stream=True) as events:
        kinds = [e.type for e in events]
    assert kinds[-1] == f"response.{status}"
    assert _live(_export(rproxy, f"resp-{status}"), "user_message") == ["hello"]


def test_a_truncated_stream_gets_an_error_event_and_stores_nothing(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(default_headers={"X-Memory-Session": "resp-cut"})
    client.responses.create(model=MODEL, input="hello")
    upstream.fake.enqueue(Reply(text="a reply that will stop early", end_after_chunks=2))
    with httpx.Client(base_url=rproxy.url, timeout=30) as http:
        response = http.post("/v1/responses", json={"model": MODEL, "input": "tell me", "stream": True},
                             headers={"Authorization": f"Bearer {OPENAI_KEY}", "X-Memory-Session": "resp-cut"})
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "upstream_incomplete"
    assert not any(e["type"] == "response.completed" for e in events)
    assert _live(_export(rproxy, "resp-cut"), "user_message") == ["hello"]


def test_stored_responses_are_relayed_get_input_items_and_delete(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client()
    created = client.responses.create(model=MODEL, input="keep this one")
    assert client.responses.retrieve(created.id).output_text == "echo: keep this one"
    assert [i.type for i in client.responses.input_items.list(created.id)] == ["message"]
    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_unknown_fields_pass_through_and_bad_bodies_get_a_400(rproxy: Proxy, upstream: Upstream) -> None:
    with httpx.Client(base_url=rproxy.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
        ok = http.post("/v1/responses", json={"model": MODEL, "input": "hi", "metadata": {"k": "v"}, "top_logprobs": 2}, headers=headers)
        passed = _sent(upstream)
        refused = http.post("/v1/responses", json={"model": MODEL, "input": "hi", "not_a_field": 1}, headers=headers)
        bad = http.post("/v1/responses", json={"model": MODEL, "input": 5}, headers=headers)
    assert ok.status_code == 200 and passed["metadata"] == {"k": "v"} and passed["top_logprobs"] == 2
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unknown_parameter"  # the upstream's verdict
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("input")


def test_no_key_anywhere_gets_openais_401_and_nothing_is_forwarded(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    proxy = start_proxy(config_for(upstream, tmp_path_factory.mktemp("nokey")))
    try:
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            for path, body in (("/v1/responses", {"model": MODEL, "input": "hi"}),
                               ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})):
                response = http.post(path, json=body)
                assert response.status_code == 401
                error = response.json()["error"]
                assert error["message"].startswith("You didn't provide an API key.")
                assert error["type"] == "invalid_request_error" and error["code"] is None and error["param"] is None
    finally:
        proxy.served.stop()
    assert upstream.fake.requests == []


def test_gemini_through_litellms_bridge_with_a_tool_loop_and_a_local_chain(rproxy: Proxy, upstream: Upstream) -> None:
    client = rproxy.client(api_key=GEMINI_KEY)
    first = client.responses.create(model="gemini-2.5-flash", input="Decision: invoices are sent on the first Monday.")
    previous = first.id
    for i in range(6):
        previous = client.responses.create(model="gemini-2.5-flash", input=_filler(i), previous_response_id=previous).id
    upstream.fake.enqueue(Reply(tool_calls=(ToolCall("get_weather", {"city": "Rome"}, id="call_rome", thought_signature="sig-rome"),)),
                          Reply(text="Rome is warm."))
    call = client.responses.create(model="gemini-2.5-flash", input="Weather in Rome?", previous_response_id=previous, tools=[WEATHER])
    assert [o.type for o in call.output] == ["function_call"]
    outputs = [{"type": "function_call_output", "call_id": call.output[0].call_id, "output": "Rome: 25C"}]
    done = client.responses.create(model="gemini-2.5-flash", input=outputs, previous_response_id=call.id, tools=[WEATHER])
    assert done.output_text == "Rome is warm."  # the fake Gemini checks that the function response answers the call
    contents = upstream.fake.last_chat().json()
    text = json.dumps(contents)
    assert "invoices are sent on the first Monday" in text  # state from the first turn, over budget
    assert "detail-0-39" not in text  # the early turns themselves were left out
    last = json.dumps(contents["contents"][-1])
    assert "function_response" in last or "functionResponse" in last


def test_a_gemini_stream_that_drops_through_the_bridge_is_not_stored(rproxy: Proxy, upstream: Upstream) -> None:
    session = "resp-gemini-cut"
    client = rproxy.client(api_key=GEMINI_KEY, default_headers={"X-Memory-Session": session})
    client.responses.create(model="gemini-2.5-flash", input="hello")
    upstream.fake.enqueue(Reply(text="a long reply that stops early", die_after_chunks=2))
    with httpx.Client(base_url=rproxy.url, timeout=30) as http:
        response = http.post("/v1/responses", json={"model": "gemini-2.5-flash", "input": "tell me", "stream": True},
                             headers={"Authorization": f"Bearer {GEMINI_KEY}", "X-Memory-Session": session})
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and not any(e["type"] == "response.completed" for e in events)
    assert _live(_export(rproxy, session, GEMINI_KEY), "user_message") == ["hello"]


def test_another_caller_cannot_continue_from_my_response_id(rproxy: Proxy, upstream: Upstream) -> None:
    mine = rproxy.client().responses.create(model=MODEL, input="my secret plan: move the launch to May", store=False)
    other = rproxy.client(api_key="sk-" + "another-caller-key-5c2a")
    with pytest.raises(openai.BadRequestError) as caught:
        other.responses.create(model=MODEL, input="what was the plan?", previous_response_id=mine.id, store=False)
    assert "not known to memory" in caught.value.response.headers["x-memory-error"]
    assert _sent(upstream)["previous_response_id"] == mine.id  # forwarded as it came: the provider decides
    assert "launch to May" not in json.dumps(_sent(upstream)["input"])
