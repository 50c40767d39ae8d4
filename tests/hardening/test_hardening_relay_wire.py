"""Issue 21 items 1, 2 and 5, against the fake upstream that sets a cookie on every reply and records
each path as it arrived on the wire: no provider cookie rides on a later call (relay, chat through
litellm, Responses); a path that decodes, once or many times, into dot segments, separators, control
characters or out of `/v1/` is a 400 that reaches nobody, and an accepted path reaches the upstream
byte for byte; headers named in `Connection` stay on their hop; a relayed reply carries one `date`
and one `server` header."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable

import httpx
import pytest

from testkit.cookies import COOKIE_NAME
from testkit.harness import Proxy, Upstream

KEY_A = "sk-relay-wire-caller-alpha-" + "1" * 24
KEY_B = "sk-relay-wire-caller-bravo-" + "2" * 24
OPERATOR = "operator-token-relay-wire-0123456789"
TENANTS = "tenants: [{name: alpha, token: alpha-token-0123456789}, {name: beta, token: beta-token-9876543210}]\n"


@pytest.fixture(scope="module")
def served(served_proxy: Callable[..., Proxy]) -> Proxy:
    return served_proxy()


def _raw(proxy: Proxy, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request with `path` sent verbatim (http.client neither normalises nor re-encodes it)."""
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"Authorization": f"Bearer {KEY_A}", **(headers or {})}.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


# -- item 1: cookies ----------------------------------------------------------------------------------

def _every_route_once(proxy: Proxy, key: str | None, extra: dict[str, str] | None = None) -> list[httpx.Response]:
    # A fresh client per call: a client's own cookie jar must not be what the test measures.
    answers = []
    for method, path, body in (("GET", "/v1/models", None),
                               ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
                               ("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
                               # Gemini through litellm's own HTTP client (its jar is blocked: checked here).
                               ("POST", "/v1/chat/completions", {"model": "gemini-2.0-flash", "messages": [{"role": "user", "content": "hi"}]}),
                               ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"})):
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(extra or {})}
            answers.append(client.request(method, path, json=body, headers=headers))
    return answers


def test_upstream_cookies_never_ride_on_another_callers_call(served: Proxy, faulty: Upstream) -> None:
    first = _every_route_once(served, KEY_A)
    assert [r.status_code for r in first] == [200] * 5, [r.text for r in first]
    # The fake did set a cookie on each of them (the relay passes it to the caller who got it).
    assert COOKIE_NAME in first[0].headers.get("set-cookie", "")
    second = _every_route_once(served, KEY_B) + _every_route_once(served, KEY_A)
    assert all(r.status_code == 200 for r in second)
    sent = [(r.method, r.path) for r in faulty.fake.requests if "cookie" in r.headers]
    assert sent == [], f"provider cookies replayed on {sent}"
    assert len(faulty.fake.requests) == 15


def test_tenants_sharing_the_environment_key_share_no_cookie(served_proxy: Callable[..., Proxy], faulty: Upstream) -> None:
    # Both tenants pay with the proxy's key, so litellm's per-key client is the same one for both.
    proxy = served_proxy(f"upstreams: {{retries: 0}}\nserver: {{access_token: {OPERATOR}}}\n{TENANTS}")
    for token in ("alpha-token-0123456789", "beta-token-9876543210", "alpha-token-0123456789"):
        assert all(r.status_code == 200 for r in _every_route_once(proxy, None, {"X-Memory-Access-Token": token}))
    assert [r.path for r in faulty.fake.requests if "cookie" in r.headers] == []


def test_a_clients_own_cookie_on_a_relayed_call_is_its_own_business(served: Proxy, faulty: Upstream) -> None:
    status, _, _ = _raw(served, "GET", "/v1/models", {"Cookie": "mine=1"})
    assert status == 200 and faulty.fake.requests[-1].headers["cookie"] == "mine=1"


# -- item 2: double-encoded paths ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "path",
    ["/v1/%252e%252e/%252e%252e/admin", "/v1/models/..%252f..%252fx", "/v1/%25252e%25252e/x", "/v1/models%252F..%252F..%252Fx",
     "/v1/a%255c..%255cb", "/v1/%252e/models", "/v1/models/%252e%252e", "/v1/x%2500y", "/v1/x%00y", "/v1/models%0a",
     "/v1/" + "%25" * 12 + "2e"],
)
def test_paths_that_decode_out_of_v1_are_refused(served: Proxy, faulty: Upstream, path: str, caplog: pytest.LogCaptureFixture) -> None:
    before = len(faulty.fake.requests)
    with caplog.at_level(logging.ERROR):
        status, _, body = _raw(served, "GET", path)
    assert status == 400, (path, status, body)
    assert b"invalid_path" in body and b'"error"' in body
    assert len(faulty.fake.requests) == before
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a refused path"


@pytest.mark.parametrize("path", ["/v1/files/a%2Bb/content", "/v1/files/file%20one", "/v1/files/report.v2.json", "/v1/files/x%25y",
                                  "/v1/files/%7Euser"])
def test_accepted_paths_reach_the_upstream_byte_for_byte(served: Proxy, faulty: Upstream, path: str) -> None:
    status, _, body = _raw(served, "GET", path + "?limit=2&after=a%2Fb")
    assert status == 200, body
    rec = faulty.fake.requests[-1]
    assert rec.raw_path == path and rec.query == "limit=2&after=a%2Fb"


# -- item 5: hop-by-hop headers and the reply's own headers ---------------------------------------------

def test_headers_named_in_connection_stay_on_their_hop(served: Proxy, faulty: Upstream) -> None:
    status, _, _ = _raw(served, "GET", "/v1/models", {"Connection": "keep-alive, X-Hop-Secret, x-other-hop", "X-Hop-Secret": "s3cr3t",
                                                      "X-Other-Hop": "1", "X-Kept": "yes"})
    assert status == 200
    received = faulty.fake.requests[-1].headers
    assert "x-hop-secret" not in received and "x-other-hop" not in received
    assert "hop" not in received.get("connection", "").lower()  # the proxy's own connection header, not the caller's
    assert received["x-kept"] == "yes"


def test_a_relayed_reply_has_one_date_and_one_server_header(served: Proxy) -> None:
    for path in ("/v1/models", "/v1/files/abc"):
        status, headers, _ = _raw(served, "GET", path)
        names = [k.lower() for k, _ in headers]
        assert status == 200 and names.count("date") == 1 and names.count("server") == 1, headers


def test_reply_headers_named_in_the_upstreams_connection_header_are_dropped(served: Proxy, faulty: Upstream) -> None:
    status, headers, _ = _raw(served, "GET", "/v1/hop-reply")
    names = [k.lower() for k, _ in headers]
    assert status == 200 and "x-upstream-hop" not in names and "x-fake-header" in names
