"""Who sees what through the inspector: every route the page reads (the list and its search, a
session's events, artifacts, one artifact, turns, last prompt; usage across sessions) keeps a
caller to its own sessions, by the ids it chose, whatever id, search text or event and artifact
numbers it sends; the operator sees every session, with its owner; `/metrics` is the operator's
when tokens are configured. The page's own files need no credentials and carry no data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from proxy.admin.inspector import UI_PATHS
from testkit.harness import Proxy

MODEL = "gpt-4o-mini"
KEY_A = "sk-inspector-caller-alpha-" + "a" * 20
KEY_B = "sk-inspector-caller-bravo-" + "b" * 20
OPERATOR = "inspector-isolation-operator-token"
ALPHA_TOKEN = "inspector-isolation-tenant-alpha"
BETA_TOKEN = "inspector-isolation-tenant-beta"
GATED = (f"upstreams: {{retries: 0}}\nserver: {{access_token: {OPERATOR}}}\n"
         f"tenants: [{{name: alpha, token: {ALPHA_TOKEN}}}, {{name: beta, token: {BETA_TOKEN}}}]\n")
INSPECTOR_SUFFIXES = ("", "/events", "/artifacts", "/turns", "/prompt", "/manifest", "/export")


def _code(secret: str) -> str:
    return f"Here is the file:\n```python\n# app/{secret}.py\ndef {secret}():\n    return '{secret}'\n```"


def _chat(proxy: Proxy, session: str, secret: str, headers: dict[str, str], key: str) -> None:
    """Two turns in `session`: a decision naming `secret`, then code that becomes an artifact."""
    client = proxy.client(api_key=key, default_headers={"X-Memory-Session": session, **headers})
    history: list[dict[str, Any]] = [{"role": "user", "content": f"Decision: the vault word is {secret}"}]
    reply = client.chat.completions.create(model=MODEL, messages=history).choices[0].message.content or ""
    history += [{"role": "assistant", "content": reply}, {"role": "user", "content": _code(secret)}]
    client.chat.completions.create(model=MODEL, messages=history)


def _get(proxy: Proxy, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.get(proxy.url + path, headers=headers, params=params, timeout=30)


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["data"]]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _whoami(proxy: Proxy, headers: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = _get(proxy, "/memory/whoami", headers).json()
    return found


def _every_route_text(proxy: Proxy, session: str, headers: dict[str, str]) -> str:
    """Everything the inspector can read of `session` as this caller (404s included)."""
    out = []
    for suffix in INSPECTOR_SUFFIXES:
        out.append(_get(proxy, f"/memory/sessions/{session}{suffix}", headers).text)
    for artifact in _get(proxy, f"/memory/sessions/{session}/artifacts", headers).json().get("data", []):
        out.append(_get(proxy, f"/memory/sessions/{session}/artifacts/{artifact['id']}", headers).text)
    return "\n".join(out)


@pytest.fixture(scope="module")
def keyed(proxy_factory: Callable[..., Proxy]) -> Proxy:
    """No tokens: callers are told apart by their API keys. A and B both use the id "shared"."""
    proxy = proxy_factory()
    _chat(proxy, "shared", "qzalphashared", {}, KEY_A)
    _chat(proxy, "alpha-only", "qzalphaonly", {}, KEY_A)
    _chat(proxy, "shared", "qzbravoshared", {}, KEY_B)
    _chat(proxy, "bravo-only", "qzbravoonly", {}, KEY_B)
    return proxy


def test_a_caller_lists_and_searches_only_its_own_sessions(keyed: Proxy) -> None:
    assert _ids(_get(keyed, "/memory/sessions", _auth(KEY_A))) == ["alpha-only", "shared"]
    assert _ids(_get(keyed, "/memory/sessions", _auth(KEY_B))) == ["bravo-only", "shared"]
    assert _ids(_get(keyed, "/memory/sessions", _auth(KEY_A), q="ONLY")) == ["alpha-only"]
    assert _ids(_get(keyed, "/memory/sessions", _auth(KEY_A), q="bravo")) == []
    # The search is over the ids the caller sees, not the principal they are stored under.
    principal_a = _whoami(keyed, _auth(KEY_A))["principal"]
    assert principal_a.startswith("k_") and _ids(_get(keyed, "/memory/sessions", _auth(KEY_A), q=principal_a)) == []
    assert _ids(_get(keyed, "/memory/sessions", _auth(KEY_A), after="alpha-only")) == ["shared"]
    assert _ids(_get(keyed, "/memory/sessions", {})) == []  # the keyless local caller has none
    assert "owner" not in _get(keyed, "/memory/sessions", _auth(KEY_A)).json()["data"][0]


def test_every_inspector_route_shows_a_caller_its_own_session_only(keyed: Proxy) -> None:
    principal_a, principal_b = (_whoami(keyed, _auth(key))["principal"] for key in (KEY_A, KEY_B))
    text_a = _every_route_text(keyed, "shared", _auth(KEY_A))
    assert "qzalphashared" in text_a and "def qzalphashared" in text_a
    assert "qzbravo" not in text_a  # nothing of B's
    assert principal_a not in text_a and principal_b not in text_a  # ids as the caller knows them
    text_b = _every_route_text(keyed, "shared", _auth(KEY_B))
    assert "qzbravoshared" in text_b and "qzalpha" not in text_b
    for name in ("bravo-only", f"{principal_b}/bravo-only", f"{principal_b}/shared"):
        for suffix in INSPECTOR_SUFFIXES:
            assert _get(keyed, f"/memory/sessions/{name}{suffix}", _auth(KEY_A)).status_code == 404, (name, suffix)
    assert "qzbravo" not in _every_route_text(keyed, f"{principal_b}/bravo-only", _auth(KEY_A))


def test_event_and_artifact_numbers_of_another_session_reach_nothing(keyed: Proxy) -> None:
    b_events = [e["id"] for e in _get(keyed, "/memory/sessions/shared/events", _auth(KEY_B)).json()["data"]]
    b_artifacts = [a["id"] for a in _get(keyed, "/memory/sessions/shared/artifacts", _auth(KEY_B)).json()["data"]]
    assert b_events and b_artifacts
    picked = _get(keyed, "/memory/sessions/shared/events", _auth(KEY_A), ids=",".join(map(str, b_events)))
    assert picked.status_code == 200 and picked.json()["data"] == []
    for artifact in b_artifacts:
        assert _get(keyed, f"/memory/sessions/shared/artifacts/{artifact}", _auth(KEY_A)).status_code == 404
        assert _get(keyed, f"/memory/sessions/alpha-only/artifacts/{artifact}", _auth(KEY_A)).status_code == 404
    before = _get(keyed, "/memory/sessions/shared/events", _auth(KEY_A), before=str(max(b_events) + 1)).json()["data"]
    assert before and "qzbravo" not in str(before)


def test_usage_covers_the_callers_own_sessions(keyed: Proxy) -> None:
    usage_a = _get(keyed, "/memory/usage", _auth(KEY_A)).json()
    assert usage_a["sessions"] == 2
    assert sorted(s["session_id"] for s in usage_a["by_session"]) == ["alpha-only", "shared"]
    assert all("owner" not in s for s in usage_a["by_session"])
    turns_a = [t for name in ("alpha-only", "shared") for t in _get(keyed, f"/memory/sessions/{name}/turns", _auth(KEY_A)).json()["data"]]
    assert usage_a["totals"]["turns"] == len(turns_a) == 4
    assert usage_a["totals"]["forwarded_tokens"] == sum(t["forwarded_tokens"] for t in turns_a)
    assert _get(keyed, "/memory/usage", {}).json()["sessions"] == 0


def test_without_tokens_metrics_and_the_page_are_open_on_loopback(keyed: Proxy) -> None:
    assert keyed.config.server.host == "127.0.0.1"
    assert _get(keyed, "/metrics", {}).status_code == 200
    assert _whoami(keyed, {})["principal"] == "local"


@pytest.fixture(scope="module")
def gated(proxy_factory: Callable[..., Proxy]) -> Proxy:
    """Tokens configured: two tenants, both chatting with the same API key and the same session id."""
    proxy = proxy_factory(GATED)
    _chat(proxy, "notes", "qzalphasecret", {"X-Memory-Access-Token": ALPHA_TOKEN}, KEY_A)
    _chat(proxy, "notes", "qzbetasecret", {"X-Memory-Access-Token": BETA_TOKEN}, KEY_A)
    _chat(proxy, "beta-plans", "qzbetaplans", {"X-Memory-Access-Token": BETA_TOKEN}, KEY_A)
    return proxy


def test_a_tenant_sees_its_own_sessions_only(gated: Proxy) -> None:
    alpha, beta = {"X-Memory-Access-Token": ALPHA_TOKEN}, {"X-Memory-Access-Token": BETA_TOKEN}
    assert _whoami(gated, alpha) == {"object": "memory.identity", "principal": "t_alpha", "kind": "tenant", "operator": False}
    assert _ids(_get(gated, "/memory/sessions", alpha)) == ["notes"]
    assert _ids(_get(gated, "/memory/sessions", beta)) == ["beta-plans", "notes"]
    text = _every_route_text(gated, "notes", alpha)
    assert "qzalphasecret" in text and "qzbeta" not in text and "t_beta" not in text
    for name in ("beta-plans", "t_beta/beta-plans", "t_beta/notes"):
        assert "qzbeta" not in _every_route_text(gated, name, alpha)
    assert [s["session_id"] for s in _get(gated, "/memory/usage", alpha).json()["by_session"]] == ["notes"]


def test_the_operator_sees_every_session_with_its_owner(gated: Proxy) -> None:
    operator = {"X-Memory-Access-Token": OPERATOR}
    assert _whoami(gated, operator)["operator"] is True
    listed = _get(gated, "/memory/sessions", operator).json()["data"]
    assert [(s["id"], s["owner"]) for s in listed] == [("t_alpha/notes", "t_alpha"), ("t_beta/beta-plans", "t_beta"), ("t_beta/notes", "t_beta")]
    assert _ids(_get(gated, "/memory/sessions", operator, q="beta/")) == ["t_beta/beta-plans", "t_beta/notes"]
    assert "qzalphasecret" in _every_route_text(gated, "t_alpha/notes", operator)
    assert "qzbetasecret" in _every_route_text(gated, "t_beta/notes", operator)
    usage = _get(gated, "/memory/usage", operator).json()
    assert usage["sessions"] == 3
    assert {(s["session_id"], s["owner"]) for s in usage["by_session"]} == {("t_alpha/notes", "t_alpha"), ("t_beta/notes", "t_beta"),
                                                                            ("t_beta/beta-plans", "t_beta")}


def test_metrics_are_the_operators_when_tokens_are_configured(gated: Proxy) -> None:
    assert _get(gated, "/metrics", {}).status_code == 401
    refused = _get(gated, "/metrics", {"X-Memory-Access-Token": ALPHA_TOKEN, **_auth(KEY_A)})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "operator_only"
    allowed = _get(gated, "/metrics", {"X-Memory-Access-Token": OPERATOR})
    assert allowed.status_code == 200 and "memory_runtime_requests_total" in allowed.text


def test_the_page_needs_no_credentials_and_holds_no_data(gated: Proxy) -> None:
    for path in sorted(UI_PATHS):
        page = _get(gated, path, {})
        assert page.status_code == 200, path
        assert "qz" not in page.text and "t_alpha" not in page.text and "notes" not in page.text
    assert _get(gated, "/memory/ui", {"Host": "rebind.attacker.example"}).status_code == 403  # the Host check still applies
    assert _get(gated, "/memory/ui/app.js", {"Origin": "http://evil.example"}).status_code == 403
    for path in ("/memory/whoami", "/memory/sessions", "/memory/usage", "/memory/sessions/t_alpha/notes/events",
                 "/memory/ui/../sessions", "/memory/uix"):
        assert _get(gated, path, {}).status_code in (401, 404), path
