"""The JSON routes the inspector page reads, through the running proxy: the session list with
search and paging, event and artifact pages, per-turn costs, the last prompt with its items' text,
usage across sessions; bad parameters are a 400 and change nothing; the page's static files are
served with a strict policy and without credentials, its data only with them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from proxy.admin.inspector import UI_PATHS
from testkit.harness import Proxy, Upstream
from tests.proxy.conftest import STORES, store_env

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module", params=STORES)
def proxy(request: pytest.FixtureRequest, proxy_factory: Callable[..., Proxy]) -> Proxy:
    """The routes read through the store's inspection methods: on SQLite and on PostgreSQL."""
    return proxy_factory(**store_env(request))


def _chat(proxy: Proxy, session: str, turns: int) -> None:
    client = proxy.client(default_headers={"X-Memory-Session": session, "X-Memory-Budget": "600"})
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        text = f"Decision: table {i} uses the ledger format\n" if i == 0 else f"turn {i} asks about the ledger import " + "row " * 90
        history.append({"role": "user", "content": text})
        reply = client.chat.completions.create(model=MODEL, messages=history).choices[0].message.content
        history.append({"role": "assistant", "content": reply or ""})


def test_the_routes_the_page_reads(proxy: Proxy, upstream: Upstream) -> None:
    for name in ("inspect-alpha", "inspect-beta", "other-gamma"):
        _chat(proxy, name, 6 if name == "inspect-alpha" else 1)
    with proxy.http() as http:
        listed = http.get("/memory/sessions", params={"q": "INSPECT", "limit": 1}).json()
        assert [s["id"] for s in listed["data"]] == ["inspect-alpha"] and listed["has_more"]
        following = http.get("/memory/sessions", params={"q": "inspect", "after": listed["last_id"]}).json()
        assert [s["id"] for s in following["data"]] == ["inspect-beta"] and not following["has_more"]

        base = "/memory/sessions/inspect-alpha"
        first = http.get(base + "/events", params={"limit": 5}).json()
        assert len(first["data"]) == 5 and first["has_more"]
        ids = [e["id"] for e in first["data"]]
        assert ids == sorted(ids, reverse=True)
        older = http.get(base + "/events", params={"limit": 5, "before": first["next_before"]}).json()
        assert max(e["id"] for e in older["data"]) < min(ids)
        picked = http.get(base + "/events", params={"ids": f"{ids[2]},{ids[0]}"}).json()["data"]
        assert [e["id"] for e in picked] == sorted([ids[0], ids[2]])

        turns = http.get(base + "/turns").json()["data"]
        assert [t["n"] for t in turns] == list(range(1, 7))
        exported = http.get(base + "/export").json()
        assert [t["forwarded_tokens"] for t in turns] == [t["forwarded_tokens"] for t in exported["turns"]]
        assert all(t["prompt_tokens"] for t in turns)

        prompt = http.get(base + "/prompt").json()
        assert prompt["included"][-1]["reason"] == "live_tail" and prompt["included"][-1]["text"].startswith("turn 5")
        assert prompt["mode"] in ("rebased", "frame")
        assert any(i["reason"] == "state" and i["text"] == "table 0 uses the ledger format" for i in prompt["included"])
        assert sum(i["tokens"] for i in prompt["included"]) <= 600

        state = http.get(base).json()["state"]["decisions"][0]
        sources = http.get(base + "/events", params={"ids": ",".join(map(str, state["source_events"]))}).json()["data"]
        assert "Decision: table 0" in sources[0]["content"]

        usage = http.get("/memory/usage").json()
        assert usage["sessions"] >= 3
        alpha = next(s for s in usage["by_session"] if s["session_id"] == "inspect-alpha")
        assert alpha["turns"] == 6 and alpha["forwarded_tokens"] == sum(t["forwarded_tokens"] for t in turns)


def test_artifacts_and_their_versions(proxy: Proxy) -> None:
    code = "```python\n# app/ledger.py\ndef total(rows):\n    return sum(r.amount for r in rows)\n\n\nprint(total([]))\n```"
    client = proxy.client(default_headers={"X-Memory-Session": "inspect-artifacts"})
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Here is the code:\n" + code}])
    with proxy.http() as http:
        page = http.get("/memory/sessions/inspect-artifacts/artifacts").json()
        assert page["data"] and not page["has_more"]
        first = page["data"][0]
        full = http.get(f"/memory/sessions/inspect-artifacts/artifacts/{first['id']}").json()
        assert "def total(rows)" in full["content"] and full["version"] == 1
        assert http.get(f"/memory/sessions/inspect-alpha/artifacts/{first['id']}").status_code == 404
        assert http.get("/memory/sessions/inspect-artifacts/artifacts/not-a-number").status_code == 404


def test_bad_parameters_are_400_and_unknown_sessions_404(proxy: Proxy) -> None:
    client = proxy.client(default_headers={"X-Memory-Session": "inspect-params"})
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    with proxy.http() as http:
        for path, params in [("/memory/sessions", {"limit": "0"}), ("/memory/sessions", {"limit": "x"}),
                             ("/memory/sessions/inspect-params/events", {"limit": "5000"}),
                             ("/memory/sessions/inspect-params/events", {"before": "-1"}),
                             ("/memory/sessions/inspect-params/events", {"ids": "1,two"}),
                             ("/memory/sessions/inspect-params/artifacts", {"after": "1e3"}), ("/memory/usage", {"limit": "0"})]:
            response = http.get(path, params=params)
            assert response.status_code == 400, (path, params)
            assert response.json()["error"]["type"] == "invalid_request_error"
        for suffix in ("/events", "/artifacts", "/turns", "/prompt"):
            assert http.get("/memory/sessions/no-such-session" + suffix).status_code == 404
        assert http.get("/memory/sessions/inspect-params").json()["counts"]["events"] == 2


def test_the_page_is_served_with_a_strict_policy_and_its_data_needs_credentials(proxy_factory: Callable[..., Proxy]) -> None:
    proxy = proxy_factory("upstreams: {retries: 0}\nserver: {access_token: inspector-operator-token}\n")
    for path in sorted(UI_PATHS):
        response = httpx.get(proxy.url + path)
        assert response.status_code == 200, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(proxy.url + "/memory/ui").text
    assert "/memory/ui/app.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
    assert httpx.get(proxy.url + "/memory/sessions").status_code == 401
    assert httpx.get(proxy.url + "/memory/usage").status_code == 401
    assert httpx.get(proxy.url + "/memory/ui/../sessions").status_code in (401, 404)
    token = {"X-Memory-Access-Token": "inspector-operator-token"}
    assert httpx.get(proxy.url + "/memory/usage", headers=token).status_code == 200
