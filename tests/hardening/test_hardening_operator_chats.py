"""Issue 21 item 3: the operator token's own chats are scoped by its key like anyone's. Whatever
`X-Memory-Session` it sends on chat or Responses (`t_alpha/s1` included) names a session under its
own key; no chat creates a session without an owner; replies show its own, unprefixed ids; and
`<owner>/<id>` keeps naming any session on the `/memory/*` management routes."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from proxy.config import ProxyConfig
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
OPERATOR = "operator-token-own-chats-0123456789"
ALPHA = "alpha-token-0123456789"
OP_KEY = "sk-operator-own-key-" + "7" * 28
CONFIG = (f"upstreams: {{retries: 0}}\nserver: {{access_token: {OPERATOR}}}\n"
          f"tenants: [{{name: alpha, token: {ALPHA}}}]\n")


async def _chat(r: Running, token: str, text: str, session: str | None, key: str | None = OP_KEY) -> httpx.Response:
    headers = {"X-Memory-Access-Token": token, **({"Authorization": f"Bearer {key}"} if key else {}),
               **({"X-Memory-Session": session} if session else {})}
    return await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": text}]}, headers=headers)


async def _respond(r: Running, token: str, text: str, session: str | None) -> httpx.Response:
    headers = {"X-Memory-Access-Token": token, "Authorization": f"Bearer {OP_KEY}", **({"X-Memory-Session": session} if session else {})}
    return await r.http.post("/v1/responses", json={"model": MODEL, "input": text}, headers=headers)


async def _owners(r: Running) -> dict[str, str | None]:
    listed = (await r.http.get("/memory/sessions", headers={"X-Memory-Access-Token": OPERATOR})).json()["data"]
    return {s["id"]: s["owner"] for s in listed}


async def test_an_operator_session_header_never_reaches_a_tenants_session(proxy_config: Callable[..., ProxyConfig]) -> None:
    async with running(proxy_config(CONFIG)) as r:
        assert (await _chat(r, ALPHA, "Decision: alpha keeps qzalphaplan.", "s1", key=None)).status_code == 200
        before = (await r.http.get("/memory/sessions/s1/export", headers={"X-Memory-Access-Token": ALPHA})).text
        chat = await _chat(r, OPERATOR, "Decision: the operator writes qzoperatornote.", "t_alpha/s1")
        responded = await _respond(r, OPERATOR, "Decision: the operator responds qzoperatorreply.", "t_alpha/s1")
        assert chat.status_code == 200 and responded.status_code == 200, (chat.text, responded.text)
        assert chat.headers["x-memory-session"] == "t_alpha/s1" == responded.headers["x-memory-session"]
        after = (await r.http.get("/memory/sessions/s1/export", headers={"X-Memory-Access-Token": ALPHA})).text
        assert after == before and "qzoperator" not in after
        owner = (await r.http.get("/memory/whoami", headers={"X-Memory-Access-Token": OPERATOR, "Authorization": f"Bearer {OP_KEY}"})).json()
        owners = await _owners(r)
        assert owners == {"t_alpha/s1": "t_alpha", f"{owner['principal']}/t_alpha/s1": owner["principal"]}
        # The operator's own session is managed by its storage id like any other.
        mine = (await r.http.get(f"/memory/sessions/{owner['principal']}/t_alpha/s1/export", headers={"X-Memory-Access-Token": OPERATOR})).text
        assert "qzoperatornote" in mine and "qzoperatorreply" in mine


async def test_operator_chats_are_owned_and_replies_show_unprefixed_ids(proxy_config: Callable[..., ProxyConfig]) -> None:
    async with running(proxy_config(CONFIG)) as r:
        named = await _chat(r, OPERATOR, "hello from the operator", "opsess")
        unnamed = await _chat(r, OPERATOR, "hello again", None)
        keyless = await _chat(r, OPERATOR, "hello without a key", "opsess", key=None)
        responded = await _respond(r, OPERATOR, "hello through responses", None)
        assert all(x.status_code == 200 for x in (named, unnamed, keyless, responded))
        assert named.headers["x-memory-session"] == "opsess" == keyless.headers["x-memory-session"]
        for reply in (unnamed, responded):
            assert reply.headers["x-memory-session"].startswith("sess_"), reply.headers["x-memory-session"]
        owners = await _owners(r)
        assert None not in owners.values(), owners  # nothing `sessions reassign "" NEW` could hand out
        assert all(sid == f"{owner}/{sid.split('/', 1)[1]}" for sid, owner in owners.items())
        assert {sid.split("/", 1)[1] for sid in owners} == {"opsess", unnamed.headers["x-memory-session"], responded.headers["x-memory-session"]}
        whoami = await r.http.get("/memory/whoami", headers={"X-Memory-Access-Token": OPERATOR, "Authorization": f"Bearer {OP_KEY}"})
        assert set(owners.values()) == {"local", whoami.json()["principal"]}
