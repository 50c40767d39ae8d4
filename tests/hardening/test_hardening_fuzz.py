"""Property-based fuzzing of /v1/chat/completions and the memory endpoints (hypothesis, > 2,000
cases in all), in process through the ASGI interface with a real fake upstream on loopback.

For every case: no 5xx; every 4xx is the OpenAI error envelope; a rejected chat request stores
nothing and never reaches the upstream."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.app import create_app
from testkit.harness import Upstream, config_for

CASES: Counter[str] = Counter()
FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
ENVELOPE = {"message", "type", "param", "code"}
MODEL = "gpt-4o-mini"


class Client:
    """A synchronous face on an in-process ASGI client; hypothesis drives sync tests, and one event
    loop for the whole module keeps the app's lifespan (store, upstream client) open throughout.
    (starlette's Client decodes response headers as UTF-8 and breaks on a latin-1 session id.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient) -> None:
        self._loop = loop
        self._http = http

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._http.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture(scope="module")
def client(faulty: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(config_for(faulty, folder, "upstreams: {retries: 0}\nserver: {max_body_bytes: 65536}\n", fallback_keys=True))
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    http = loop.run_until_complete(stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30)))
    loop.run_until_complete(stack.enter_async_context(app.router.lifespan_context(app)))
    client = Client(loop, http)
    client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "seed"}]}, headers={"X-Memory-Session": "fuzz-existing"})
    try:
        yield client
    finally:
        loop.run_until_complete(stack.aclose())
        # litellm leaves a logging worker task on the loop; finish it before the loop closes.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def _stored_events(client: Client) -> int:
    total, after = 0, None
    while True:
        page = client.get("/memory/sessions", params={"limit": 1000, **({"after": after} if after else {})}).json()
        total += sum(s["events"] for s in page["data"])
        if not page["has_more"]:
            return total
        after = page["last_id"]


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ENVELOPE, error
        assert isinstance(error["message"], str) and isinstance(error["type"], str)


def _post_chat(client: Client, faulty: Upstream, content: bytes, headers: dict[str, Any] | None = None) -> httpx.Response:
    before_events = _stored_events(client)
    before_calls = len(faulty.fake.chat_requests())
    response = client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json", **(headers or {})})
    _check(response)
    if response.status_code >= 400 and "x-memory-session" not in response.headers:
        # Rejected before memory saw it. (A 4xx *with* X-Memory-Session is the provider refusing
        # the request, which keeps the user's message like any upstream error.)
        assert _stored_events(client) == before_events, "a rejected request stored something"
        assert len(faulty.fake.chat_requests()) == before_calls, "a rejected request reached the upstream"
    elif b'"stream": true' in content or b'"stream":true' in content:
        assert response.text.rstrip().endswith("data: [DONE]") or '"error"' in response.text
    return response


# ---- strategies ---------------------------------------------------------------------------------

ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", " ", "\u0000", "a\u0000b", "\u202eevil", "\ufeffbom", "e\u0301\u0301\u0301", "🦜" * 30, "\r\n\t", "x" * 5000, "\\ud800"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), ODD_TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)), max_leaves=12)
ROLES = st.one_of(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]), JSON_VALUES)
PARTS = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": ODD_TEXT}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": ODD_TEXT})}),
        JSON_VALUES,
    ),
    max_size=3,
)
CONTENT = st.one_of(ODD_TEXT, PARTS, JSON_VALUES)
TOOL_CALLS = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": ODD_TEXT, "type": st.just("function"), "function": st.fixed_dictionaries({"name": ODD_TEXT, "arguments": ODD_TEXT})}),
        JSON_VALUES,
    ),
    max_size=2,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLES, "content": CONTENT}, optional={"name": JSON_VALUES, "tool_calls": TOOL_CALLS, "tool_call_id": JSON_VALUES}),
    JSON_VALUES,
)
CHAT_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just(MODEL), st.just("gemini-2.0-flash"), ODD_TEXT, JSON_VALUES),
        "messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON_VALUES),
        "stream": st.one_of(st.booleans(), JSON_VALUES),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), JSON_VALUES),
        "user": st.one_of(ODD_TEXT, JSON_VALUES),
        "temperature": JSON_VALUES,
        "max_tokens": JSON_VALUES,
    },
)
HEADER_BYTES = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b""))


# ---- /v1/chat/completions -----------------------------------------------------------------------


@settings(FUZZ, max_examples=700)
@given(body=CHAT_BODY)
def test_fuzz_chat_bodies(client: Client, faulty: Upstream, body: dict[str, Any]) -> None:
    CASES["chat_bodies"] += 1
    _post_chat(client, faulty, json.dumps(body).encode())


VALID_ROLE_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]), "content": st.one_of(ODD_TEXT, PARTS, st.none())},
    optional={"name": ODD_TEXT, "tool_calls": TOOL_CALLS, "tool_call_id": ODD_TEXT},
)


@settings(FUZZ, max_examples=300)
@given(model=st.sampled_from([MODEL, "gemini-2.0-flash", "gemini/gemini-1.5-pro"]), messages=st.lists(VALID_ROLE_MESSAGE, min_size=1, max_size=5), stream=st.booleans())
def test_fuzz_well_formed_requests_with_odd_messages(client: Client, faulty: Upstream, model: str, messages: list[dict[str, Any]], stream: bool) -> None:
    # Shapes the wire model accepts but the provider translation (OpenAI -> Gemini) may choke on:
    # odd parts, tool results without calls, empty contents. Whatever happens: no 5xx.
    CASES["well_formed"] += 1
    _post_chat(client, faulty, json.dumps({"model": model, "messages": messages, "stream": stream}).encode())


def _valid_body(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


@settings(FUZZ, max_examples=350)
@given(
    text=ODD_TEXT,
    mutation=st.sampled_from(["truncate", "garbage", "nest", "nan", "bigint", "surrogate", "raw-surrogate", "utf16", "dup-keys", "trailing"]),
    where=st.integers(min_value=0, max_value=10_000),
    depth=st.integers(min_value=1, max_value=50_000),
)
def test_fuzz_raw_bytes(client: Client, faulty: Upstream, text: str, mutation: str, where: int, depth: int) -> None:
    CASES["raw_bytes"] += 1
    valid = json.dumps(_valid_body(text)).encode()
    raw = {
        "truncate": valid[: where % max(len(valid), 1)],
        "garbage": bytes((where * 7 + i) % 256 for i in range(where % 200)),
        "nest": b'{"model": "m", "messages": [{"role": "user", "content": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}]}",
        "nan": valid[:-1] + b', "temperature": NaN}',
        "bigint": valid[:-1] + b', "max_tokens": ' + b"9" * (depth % 6000 + 1) + b"}",
        "surrogate": json.dumps(_valid_body(text + "\ud800"[: where % 2]), ensure_ascii=True).encode(),
        # UTF-8-encoded surrogates (json.loads on bytes would decode them with surrogatepass).
        "raw-surrogate": valid[: where % max(len(valid) - 4, 1)] + bytes([0xED, 0xA0 + where % 32, 0x80]) + valid[where % max(len(valid) - 4, 1) :],
        "utf16": json.dumps(_valid_body(text)).encode("utf-16"),
        "dup-keys": b'{"model": "m", "model": 5, "messages": []}',
        "trailing": valid + b"}",
    }[mutation]
    _post_chat(client, faulty, raw)


@settings(FUZZ, max_examples=350)
@given(session=HEADER_BYTES, budget=HEADER_BYTES, text=ODD_TEXT, stream=st.booleans())
def test_fuzz_memory_headers(client: Client, faulty: Upstream, session: bytes, budget: bytes, text: str, stream: bool) -> None:
    CASES["headers"] += 1
    body = {**_valid_body(text), "stream": stream}
    _post_chat(client, faulty, json.dumps(body).encode(), headers={"X-Memory-Session": session, "X-Memory-Budget": budget})


# ---- memory endpoints ---------------------------------------------------------------------------

SESSION_IDS = st.one_of(st.just("fuzz-existing"), ODD_TEXT.filter(lambda s: s != ""), st.text(st.characters(codec="latin-1"), min_size=1, max_size=300))
COMPILE_BODY = st.one_of(
    st.fixed_dictionaries({}, optional={"user_message": st.one_of(ODD_TEXT, MESSAGE, st.lists(MESSAGE, max_size=3)), "budget_tokens": JSON_VALUES, "model": st.one_of(st.just(MODEL), JSON_VALUES)}),
    JSON_VALUES,
)


@settings(FUZZ, max_examples=600)
@given(session=SESSION_IDS, action=st.sampled_from(["show", "manifest", "export", "compile", "delete", "list"]), body=COMPILE_BODY)
def test_fuzz_memory_endpoints(client: Client, session: str, action: str, body: Any) -> None:
    CASES["memory"] += 1
    path = "/memory/sessions/" + quote(session, safe="")
    before = _stored_events(client)
    if action == "list":
        response = client.get("/memory/sessions")
    elif action == "compile":
        response = client.post(path + "/compile", content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    elif action == "delete":
        if session == "fuzz-existing":
            return
        response = client.delete(path)
    else:
        response = client.get(path + {"show": "", "manifest": "/manifest", "export": "/export"}[action])
    _check(response)
    if action != "delete":
        assert _stored_events(client) == before  # reading and dry runs store nothing


# ---- the front door: Host, Origin, content types, browser headers, methods, paths ---------------

FRONT_PATHS = st.one_of(
    st.sampled_from([
        "/v1/chat/completions", "/memory/sessions", "/memory/sessions/fuzz-existing", "/memory/sessions/fuzz-existing/export",
        "/memory/sessions/fuzz-existing/compile", "/memory/whoami", "/healthz", "/v1/files", "/v1/files/abc/content", "/v1/../x",
        "/v1/%2e%2e/x", "/v1/a%2fb", "/v1//x", "/nope", "/v1", "/memory/sessions/a/b/c/manifest",
    ]),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=30).map(lambda t: "/v1/files/" + quote(t, safe="/%.")),
)
MAYBE_HEADER = st.one_of(st.none(), HEADER_BYTES, st.sampled_from([b"127.0.0.1", b"localhost:8787", b"evil.example", b"null", b"https://evil.example"]))
CONTENT_TYPES = st.one_of(
    st.none(), HEADER_BYTES,
    st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"text/plain", b"multipart/form-data; boundary=x",
                     b"application/x-www-form-urlencoded", b"application/octet-stream"]),
)


@settings(FUZZ, max_examples=450)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]), path=FRONT_PATHS, host=MAYBE_HEADER,
    origin=MAYBE_HEADER, content_type=CONTENT_TYPES, fetch_site=st.one_of(st.none(), st.sampled_from([b"cross-site", b"same-origin", b"none"])),
    key=st.booleans(), token=MAYBE_HEADER, body=st.one_of(st.binary(max_size=200), st.just(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}')),
)
def test_fuzz_front_door(client: Client, method: str, path: str, host: bytes | None, origin: bytes | None, content_type: bytes | None,
                         fetch_site: bytes | None, key: bool, token: bytes | None, body: bytes) -> None:
    CASES["front_door"] += 1
    headers: dict[str, Any] = {}
    for name, value in (("Host", host), ("Origin", origin), ("Content-Type", content_type), ("Sec-Fetch-Site", fetch_site),
                        ("X-Memory-Access-Token", token)):
        if value is not None:
            headers[name] = value
    if key:
        headers["Authorization"] = "Bearer sk-fuzz-front-door-key-0000"
    response = client.request(method, path, content=body if method not in ("GET", "HEAD", "OPTIONS") else None, headers=headers)
    assert response.status_code < 500, (method, path, headers, response.text[:300])
    if response.status_code >= 400 and method != "HEAD" and not response.headers.get("x-fake-header"):
        error = response.json()["error"]
        assert set(error) == ENVELOPE, error


def test_body_size_limit_is_413_on_every_body_endpoint(client: Client, faulty: Upstream) -> None:
    big = json.dumps(_valid_body("z" * 70_000)).encode()
    before = _stored_events(client)
    for path in ("/v1/chat/completions", "/memory/sessions/fuzz-existing/compile"):
        response = client.post(path, content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert set(response.json()["error"]) == ENVELOPE
    assert _stored_events(client) == before
    assert not any(b"z" * 1000 in r.body for r in faulty.fake.chat_requests())


def test_fuzzing_ran_at_least_two_thousand_cases() -> None:
    # Runs last in this module (pytest keeps file order); guards against settings drifting down.
    if len(CASES) < 5:
        pytest.skip("run the whole module to count cases")
    assert sum(CASES.values()) >= 2000, CASES
