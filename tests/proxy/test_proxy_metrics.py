"""`GET /metrics` after a scripted run: every counter agrees with what the fake upstream saw and
reported (requests, tokens forwarded, prompt / cached / completion tokens), the histograms counted
each call once, labels stay within their fixed sets, and the route is guarded like the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memory import get_counter
from memory.errors import StorageError
from proxy.metrics import MODEL_FAMILIES, ROUTES, model_family
from testkit.harness import Proxy, Upstream
from testkit.script import Reply

MODEL = "gpt-4o-mini"
SESSION = "metrics-session-7f1c"
ALLOWED_LABELS = {"route", "model_family", "status", "mode", "stage", "le"}


def _scrape(proxy: Proxy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(proxy.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert SESSION not in response.text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, lbl), v in samples.items() if n == name and set(labels.items()) <= set(lbl))


def _question(i: int) -> str:
    return f"Question {i}: how should the importer treat row {i} of the ledger? " + "Context line. " * 25


def test_counters_match_what_the_fake_upstream_saw(proxy_factory: Callable[..., Proxy], upstream: Upstream,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = proxy_factory()
    client = proxy.client(default_headers={"X-Memory-Session": SESSION, "X-Memory-Budget": "1400"})
    counter = get_counter(MODEL)
    history: list[dict[str, Any]] = [{"role": "system", "content": "You keep the ledger tidy. " * 220}]
    client_tokens = 0
    streams = 0
    for i in range(8):
        history.append({"role": "user", "content": _question(i)})
        client_tokens += counter.messages_tokens(history)
        if i % 3 == 1:
            streams += 1
            parts = client.chat.completions.create(model=MODEL, messages=history, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        else:
            text = client.chat.completions.create(model=MODEL, messages=history).choices[0].message.content or ""
        history.append({"role": "assistant", "content": text})
    # The provider refuses one call.
    upstream.fake.enqueue(Reply(error_status=500, error_message="overloaded"))
    refused = [*history, {"role": "user", "content": "one more?"}]
    client_tokens += counter.messages_tokens(refused)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=refused)
    # Memory fails once; the call goes on unmodified (fail open) and is counted as a memory error.
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("disk gone")

    monkeypatch.setattr(type(proxy.services.runtime.session("x")), "prepare_turn", broken)
    plain = [{"role": "user", "content": "still answer, please"}]
    client_tokens += counter.messages_tokens(plain)
    client.chat.completions.create(model=MODEL, messages=plain)
    monkeypatch.undo()
    # Other routes: a relayed call, a memory lookup that finds nothing.
    with proxy.http() as http:
        assert http.get("/v1/models").status_code == 200
        assert http.get("/memory/sessions/no-such-session").status_code == 404
        stored = len(http.get("/memory/sessions").json()["data"])

    samples = _scrape(proxy)
    seen = upstream.fake.chat_requests()
    answered = [r for r in seen if r.reported is not None]
    family = model_family(MODEL)
    assert family == "gpt-4o" and len(seen) == 10 and len(answered) == 9
    # Requests and failures, by route, model family and status.
    assert _value(samples, "memory_runtime_requests_total", route="chat_completions", model_family=family, status="200") == 9
    assert _value(samples, "memory_runtime_requests_total", route="chat_completions", model_family=family, status="500") == 1
    assert _sum(samples, "memory_runtime_requests_total", route="chat_completions") == len(seen)
    assert _value(samples, "memory_runtime_failed_requests_total", route="chat_completions", model_family=family, status="500") == 1
    assert _value(samples, "memory_runtime_requests_total", route="relay", model_family="none", status="200") == 1
    assert _value(samples, "memory_runtime_failed_requests_total", route="memory", model_family="none", status="404") == 1
    # Tokens: what the clients sent, what reached the provider, and what the provider reported.
    forwarded = sum(counter.messages_tokens(r.json()["messages"]) for r in seen)
    assert _value(samples, "memory_runtime_client_tokens_total", model_family=family) == client_tokens
    assert _value(samples, "memory_runtime_forwarded_tokens_total", model_family=family) == forwarded < client_tokens
    reported = {k: sum(r.reported[k] for r in answered) for k in ("prompt_tokens", "completion_tokens")}  # type: ignore[index]
    cached = sum(r.reported["prompt_tokens_details"]["cached_tokens"] for r in answered)  # type: ignore[index]
    assert cached > 0, "the scripted run should hit the provider's prompt cache"
    assert _value(samples, "memory_runtime_prompt_tokens_total", model_family=family) == reported["prompt_tokens"]
    assert _value(samples, "memory_runtime_cached_tokens_total", model_family=family) == cached
    assert _value(samples, "memory_runtime_completion_tokens_total", model_family=family) == reported["completion_tokens"]
    # Histograms: one observation per call where each applies.
    assert _value(samples, "memory_runtime_upstream_latency_seconds_count", model_family=family) == len(seen)
    assert _value(samples, "memory_runtime_time_to_first_token_seconds_count", model_family=family) == streams
    assert _value(samples, "memory_runtime_overhead_latency_seconds_count", model_family=family) == len(answered)
    assert _sum(samples, "memory_runtime_compile_latency_seconds_count") == len(seen)
    assert _value(samples, "memory_runtime_request_latency_seconds_count", route="chat_completions", model_family=family) == len(seen)
    assert _sum(samples, "memory_runtime_prompts_total") == len(seen)
    assert _value(samples, "memory_runtime_prompts_total", mode="unmodified") == 1
    assert _sum(samples, "memory_runtime_prompts_total") - _value(samples, "memory_runtime_prompts_total", mode="full_history") > 0
    assert _value(samples, "memory_runtime_memory_errors_total", stage="prepare") == 1
    assert _value(samples, "memory_runtime_sessions") == stored >= 1
    # Bounded labels: fixed names and values, never an id.
    for (name, labels), _ in samples.items():
        assert {k for k, _ in labels} <= ALLOWED_LABELS, name
        for key, value in labels:
            assert key != "route" or value in ROUTES
            assert key != "model_family" or value in MODEL_FAMILIES


def test_a_stream_that_breaks_off_is_counted_as_failed(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    proxy = proxy_factory()
    upstream.fake.enqueue(Reply(text="This answer stops half way through without any ending", end_after_chunks=2))
    parts = proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "tell me"}], stream=True)
    with pytest.raises(openai.APIError):
        for _ in parts:
            pass
    samples = _scrape(proxy)
    assert _value(samples, "memory_runtime_requests_total", route="chat_completions", model_family="gpt-4o", status="200") == 1
    assert _value(samples, "memory_runtime_failed_requests_total", route="chat_completions", model_family="gpt-4o", status="502") == 1


@pytest.mark.parametrize("model,family", [("gpt-4o-mini", "gpt-4o"), ("gpt-4.1-nano", "gpt-4.1"), ("gpt-4", "gpt-4"),
                                          ("gpt-5-mini", "gpt-5"), ("o3-mini", "o-series"), ("gemini-2.5-flash", "gemini-2.5"),
                                          ("gemini/gemini-2.5-pro", "gemini-2.5"), ("my-finetune-of-anything", "other"),
                                          ("openai/gpt-4o", "gpt-4o")])
def test_model_families_are_a_fixed_set(model: str, family: str) -> None:
    assert model_family(model) == family and family in MODEL_FAMILIES


def test_metrics_need_the_access_token_when_one_is_set(proxy_factory: Callable[..., Proxy]) -> None:
    proxy = proxy_factory("upstreams: {retries: 0}\nserver: {access_token: metrics-operator-token}\n")
    assert httpx.get(proxy.url + "/metrics").status_code == 401
    allowed = httpx.get(proxy.url + "/metrics", headers={"X-Memory-Access-Token": "metrics-operator-token"})
    assert allowed.status_code == 200 and "memory_runtime_requests_total" in allowed.text


def test_the_responses_route_is_metered_like_chat(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    proxy = proxy_factory()
    client = proxy.client(default_headers={"X-Memory-Session": SESSION, "X-Memory-Budget": "1400"})
    history: list[Any] = []
    for i in range(5):
        history.append({"role": "user", "content": _question(i)})
        if i % 2:
            events = list(client.responses.create(model=MODEL, input=history, instructions="Keep the ledger tidy. " * 200, stream=True))
            reply = next(e.response for e in events if e.type == "response.completed")
        else:
            reply = client.responses.create(model=MODEL, input=history, instructions="Keep the ledger tidy. " * 200)
        history += [o.model_dump(exclude_none=True) for o in reply.output]
    samples = _scrape(proxy)
    seen = upstream.fake.responses_requests()
    family = model_family(MODEL)
    assert len(seen) == 5 and all(r.reported is not None for r in seen)
    assert _value(samples, "memory_runtime_requests_total", route="responses", model_family=family, status="200") == 5
    assert _sum(samples, "memory_runtime_requests_total", route="chat_completions") == 0
    reported = {k: sum(r.reported[k] for r in seen) for k in ("input_tokens", "output_tokens")}  # type: ignore[index]
    cached = sum(r.reported["input_tokens_details"]["cached_tokens"] for r in seen)  # type: ignore[index]
    assert cached > 0, "the instructions alone are a cacheable prefix"
    assert _value(samples, "memory_runtime_prompt_tokens_total", model_family=family) == reported["input_tokens"]
    assert _value(samples, "memory_runtime_cached_tokens_total", model_family=family) == cached
    assert _value(samples, "memory_runtime_completion_tokens_total", model_family=family) == reported["output_tokens"]
    assert _value(samples, "memory_runtime_upstream_latency_seconds_count", model_family=family) == 5
    assert _value(samples, "memory_runtime_time_to_first_token_seconds_count", model_family=family) == 2
    assert _value(samples, "memory_runtime_overhead_latency_seconds_count", model_family=family) == 5
    assert _sum(samples, "memory_runtime_prompts_total") == 5
    assert _value(samples, "memory_runtime_client_tokens_total", model_family=family) > 0
    assert _value(samples, "memory_runtime_forwarded_tokens_total", model_family=family) > 0
