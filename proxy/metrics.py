"""Prometheus metrics of one proxy app, served at `GET /metrics` in the text exposition format.

Every metric lives in the app's own `CollectorRegistry` (built by `create_app`, never module-global),
so tests run several apps side by side. Labels are bounded: a route name from a fixed list, a model
family from a fixed list (an unknown model is "other"), an HTTP status, a layout mode, a stage.
Never a session id, a user, a key or a raw model name.

    memory_runtime_requests_total{route,model_family,status}          every HTTP request answered
    memory_runtime_failed_requests_total{route,model_family,status}   status >= 400, or a stream that
                                                                      ended in an error event
    memory_runtime_request_latency_seconds{route,model_family}        request in to response done
    memory_runtime_upstream_latency_seconds{model_family}             provider call to last byte
    memory_runtime_overhead_latency_seconds{model_family}             what the proxy added: total
                                                                      minus the provider's part
    memory_runtime_time_to_first_token_seconds{model_family}          request in to the provider's
                                                                      first streamed chunk or event
    memory_runtime_compile_latency_seconds{mode}                      the work before the call: limits
                                                                      check, memory sync and compile
    memory_runtime_prompts_total{mode}                                forwarded prompts by layout
    memory_runtime_client_tokens_total{model_family}                  tokens the clients sent
    memory_runtime_forwarded_tokens_total{model_family}               tokens the proxy forwarded
    memory_runtime_prompt_tokens_total{model_family}                  prompt tokens the provider billed
    memory_runtime_cached_tokens_total{model_family}                  of those, served from its cache
    memory_runtime_cache_write_tokens_total{model_family}             of those, written to its cache (Anthropic's
                                                                      cache_creation_input_tokens)
    memory_runtime_completion_tokens_total{model_family}              completion tokens it reported
    memory_runtime_memory_errors_total{stage}                         memory failed, the call went on
                                                                      (fail open): stage prepare|commit
    memory_runtime_sessions                                           sessions stored (at scrape time)

The chat and Responses routes are metered alike (`ChatMeter`). Token counters count each client
request once (an upstream retry of the same prompt is not counted twice); provider figures are added
when the provider reported them. A Responses request memory does not plan (no `input`, or a
`previous_response_id` memory does not know; forwarded as sent) counts as a request and in the
provider's figures, not as a prompt.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory import Usage

__all__ = ["Metrics", "ChatMeter", "MetricsMiddleware", "model_family", "route_name", "CONTENT_TYPE", "ROUTES", "MODEL_FAMILIES"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
ROUTES = ("chat_completions", "responses", "messages", "relay", "memory", "inspector", "metrics", "healthz", "other")
# Longest prefix first: "gpt-4o" before "gpt-4", "gpt-4.1" before "gpt-4".
_FAMILY_PREFIXES = (
    ("gpt-5", "gpt-5"), ("gpt-4.1", "gpt-4.1"), ("gpt-4o", "gpt-4o"), ("gpt-4", "gpt-4"), ("gpt-3.5", "gpt-3.5"),
    ("o1", "o-series"), ("o3", "o-series"), ("o4", "o-series"),
    ("gemini-2.5", "gemini-2.5"), ("gemini-2.0", "gemini-2.0"), ("gemini", "gemini-other"),
    ("claude", "claude"),
)
MODEL_FAMILIES = tuple(dict.fromkeys(f for _, f in _FAMILY_PREFIXES)) + ("other", "none")
_PROVIDER_PREFIX = re.compile(r"^(openai|gemini|google|azure|anthropic)/", re.I)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Where the chat route leaves its findings for the middleware (request.state is scope["state"]).
_STATE_FAMILY = "metrics_model_family"
_STATE_FAILED = "metrics_failed_status"


def model_family(model: str) -> str:
    """A bounded label for a model name: its family, or "other"."""
    name = _PROVIDER_PREFIX.sub("", model.strip().lower())
    for prefix, family in _FAMILY_PREFIXES:
        if name == prefix or name.startswith(prefix + "-") or name.startswith(prefix + ".") or (prefix == "gemini" and name.startswith(prefix)):
            return family
    return "other"


def route_name(path: str) -> str:
    """A bounded label for a request path."""
    if path == "/v1/chat/completions":
        return "chat_completions"
    if path == "/v1/responses":
        return "responses"  # POST, with memory; /v1/responses/{id} and its items are relayed
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        return "messages"
    if path.startswith("/v1/"):
        return "relay"
    if path == "/memory/ui" or path.startswith("/memory/ui/"):
        return "inspector"
    if path.startswith("/memory/"):
        return "memory"
    if path == "/metrics":
        return "metrics"
    if path == "/healthz":
        return "healthz"
    return "other"


class Metrics:
    """The proxy's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["route", "model_family", "status"]
        self.requests = Counter("memory_runtime_requests", "HTTP requests answered", labels, registry=r)
        self.failed = Counter("memory_runtime_failed_requests", "Requests answered with status >= 400 or ended by an error event", labels,
                              registry=r)
        self.latency = Histogram("memory_runtime_request_latency_seconds", "Request in to response done", ["route", "model_family"],
                                 buckets=_LATENCY, registry=r)
        self.upstream = Histogram("memory_runtime_upstream_latency_seconds", "Provider call to its last byte", ["model_family"],
                                  buckets=_LATENCY, registry=r)
        self.overhead = Histogram("memory_runtime_overhead_latency_seconds", "Latency the proxy added (total minus the provider's part)",
                                  ["model_family"], buckets=_FAST, registry=r)
        self.ttft = Histogram("memory_runtime_time_to_first_token_seconds", "Request in to the provider's first streamed chunk",
                              ["model_family"], buckets=_LATENCY, registry=r)
        self.compile = Histogram("memory_runtime_compile_latency_seconds", "Work before the provider call (limits check, memory sync, compile)", ["mode"],
                                 buckets=_FAST, registry=r)
        self.prompts = Counter("memory_runtime_prompts", "Forwarded prompts by layout mode", ["mode"], registry=r)
        family = ["model_family"]
        self.client_tokens = Counter("memory_runtime_client_tokens", "Prompt tokens the clients sent", family, registry=r)
        self.forwarded_tokens = Counter("memory_runtime_forwarded_tokens", "Prompt tokens the proxy forwarded", family, registry=r)
        self.prompt_tokens = Counter("memory_runtime_prompt_tokens", "Prompt tokens the provider reported", family, registry=r)
        self.cached_tokens = Counter("memory_runtime_cached_tokens", "Prompt tokens the provider served from its cache", family, registry=r)
        self.cache_write_tokens = Counter("memory_runtime_cache_write_tokens", "Prompt tokens the provider wrote to its cache", family,
                                          registry=r)
        self.completion_tokens = Counter("memory_runtime_completion_tokens", "Completion tokens the provider reported", family, registry=r)
        self.memory_errors = Counter("memory_runtime_memory_errors", "Memory failures the call went on without (fail open)", ["stage"],
                                     registry=r)
        self.sessions = Gauge("memory_runtime_sessions", "Sessions stored", registry=r)

    def chat(self, model: str, state: Any) -> ChatMeter:
        """A meter for one chat or Responses request; tells the middleware its model family."""
        family = model_family(model)
        setattr(state, _STATE_FAMILY, family)
        return ChatMeter(self, family, state)

    def render(self, sessions: int | None) -> bytes:
        """The exposition text; `sessions` is the stored count (None: unknown, e.g. memory is down)."""
        if sessions is not None:
            self.sessions.set(sessions)
        return generate_latest(self.registry)


@dataclass
class ChatMeter:
    """Times and counts one chat or Responses request, from its start to the end of its response."""

    metrics: Metrics
    family: str
    state: Any
    started: float = field(default_factory=time.perf_counter)
    upstream_started: float | None = None
    upstream_seconds: float = 0.0

    def prepared(self, mode: str, client_tokens: int, forwarded_tokens: int, failed_open: bool) -> None:
        m = self.metrics
        m.compile.labels(mode).observe(time.perf_counter() - self.started)
        m.prompts.labels(mode).inc()
        m.client_tokens.labels(self.family).inc(client_tokens)
        m.forwarded_tokens.labels(self.family).inc(forwarded_tokens)
        if failed_open:
            m.memory_errors.labels("prepare").inc()
        self.calling()

    def calling(self) -> None:
        """The provider call starts now."""
        self.upstream_started = time.perf_counter()

    def first_chunk(self) -> None:
        self.metrics.ttft.labels(self.family).observe(time.perf_counter() - self.started)

    def upstream_done(self, usage: dict[str, Any] | None) -> Usage:
        """The provider's part is over (answered, refused or broke off); count what it reported
        (chat or Responses `usage`, None when it reported nothing) and return it read."""
        if self.upstream_started is not None:
            self.upstream_seconds = time.perf_counter() - self.upstream_started
            self.metrics.upstream.labels(self.family).observe(self.upstream_seconds)
        found = Usage.from_openai(usage)
        m = self.metrics
        for counter, value in ((m.prompt_tokens, found.prompt_tokens), (m.cached_tokens, found.cached_tokens),
                               (m.completion_tokens, found.completion_tokens)):
            if value:
                counter.labels(self.family).inc(value)
        return found

    def cache_written(self, tokens: int) -> None:
        """Prompt tokens the provider reported writing to its cache (Anthropic bills them apart)."""
        if tokens:
            self.metrics.cache_write_tokens.labels(self.family).inc(tokens)

    def committed(self, problem: str | None) -> None:
        if problem:
            self.metrics.memory_errors.labels("commit").inc()

    def stream_failed(self, status: int) -> None:
        setattr(self.state, _STATE_FAILED, status)

    def finished(self) -> None:
        total = time.perf_counter() - self.started
        self.metrics.overhead.labels(self.family).observe(max(0.0, total - self.upstream_seconds))


class MetricsMiddleware:
    """Counts and times every request (pure ASGI, so streaming is untouched); a stream's time runs
    until its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_name(scope["path"])
            family = str(state.get(_STATE_FAMILY, "none"))
            self.metrics.requests.labels(route, family, str(status)).inc()
            failed = state.get(_STATE_FAILED)
            if status >= 400 or failed is not None:
                self.metrics.failed.labels(route, family, str(status if status >= 400 else failed)).inc()
            self.metrics.latency.labels(route, family).observe(time.perf_counter() - started)
