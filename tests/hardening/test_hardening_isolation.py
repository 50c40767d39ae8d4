"""Isolation between callers, tried as an attacker would: two keys with the same first message, the
same session header, a spoofed `user` field, and the /memory routes with and without the operator
token. A caller never reads, extends or deletes another caller's memory, by any route."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.cli.main import main as cli_main
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
KEY_A = "sk-isolation-caller-alpha-" + "1" * 24
KEY_B = "sk-isolation-caller-bravo-" + "2" * 24
FILLER = " Please answer in detail, considering everything we discussed so far in this conversation." * 4
OPERATOR = "operator-token-isolation-0123456789"
TENANTS = "tenants: [{name: alpha, token: alpha-token-0123456789}, {name: beta, token: beta-token-9876543210}]\n"


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _chat(r: Running, key: str | None, messages: list[dict[str, Any]], *, session: str | None = None, user: str | None = None,
                budget: int | None = None, extra: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"model": MODEL, "messages": messages, **({"user": user} if user else {})}
    headers = {**_auth(key), **({"X-Memory-Session": session} if session else {}), **({"X-Memory-Budget": str(budget)} if budget else {}), **(extra or {})}
    return await r.http.post("/v1/chat/completions", json=body, headers=headers)


def _reply(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["choices"][0]["message"]
    return {"role": "assistant", "content": message["content"]}


async def _export_text(r: Running, key: str | None, session: str, extra: dict[str, str] | None = None) -> str:
    response = await r.http.get(f"/memory/sessions/{session}/export", headers={**_auth(key), **(extra or {})})
    return response.text if response.status_code == 200 else ""


async def test_two_keys_opening_with_the_same_message_never_share_a_session(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        hi = [{"role": "user", "content": "hi"}]
        a1, b1 = await _chat(r, KEY_A, hi), await _chat(r, KEY_B, hi)
        history_a = hi + [_reply(a1), {"role": "user", "content": "Decision: my locker code is qzalphacode."}]
        history_b = hi + [_reply(b1), {"role": "user", "content": "Decision: my locker code is qzbravocode."}]
        a2, b2 = await _chat(r, KEY_A, history_a), await _chat(r, KEY_B, history_b)
        history_b += [_reply(b2), {"role": "user", "content": "What is my locker code?" + FILLER}]
        b3 = await _chat(r, KEY_B, history_b, budget=120)
        assert b3.status_code == 200 and "x-memory-error" not in b3.headers
        assert "qzalphacode" not in faulty.fake.last_chat().body.decode()  # B's compiled prompt holds nothing of A's
        assert a2.headers["x-memory-session"] == a1.headers["x-memory-session"]
        assert b3.headers["x-memory-session"] == b1.headers["x-memory-session"]
        export_a = await _export_text(r, KEY_A, a2.headers["x-memory-session"])
        export_b = await _export_text(r, KEY_B, b3.headers["x-memory-session"])
    assert "qzalphacode" in export_a and "qzbravocode" not in export_a
    assert "qzbravocode" in export_b and "qzalphacode" not in export_b


async def test_another_callers_session_header_reaches_nothing_of_theirs(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        first = await _chat(r, KEY_A, [{"role": "user", "content": "Decision: the vault code is qzvaultcode."}], session="shared")
        assert first.headers["x-memory-session"] == "shared"  # the client sees its own id, unprefixed
        probe = await _chat(r, KEY_B, [{"role": "user", "content": "Tell me every decision and code you know." + FILLER}], session="shared", budget=200)
        assert probe.status_code == 200 and probe.headers["x-memory-session"] == "shared"
        assert "qzvaultcode" not in faulty.fake.last_chat().body.decode()
        # Every /memory route, as B, with A's session id.
        for path in ("/memory/sessions/shared", "/memory/sessions/shared/export", "/memory/sessions/shared/manifest"):
            seen = await r.http.get(path, headers=_auth(KEY_B))
            assert "qzvaultcode" not in seen.text, path
        dry = await r.http.post("/memory/sessions/shared/compile", json={"user_message": "what is the vault code?"}, headers=_auth(KEY_B))
        assert "qzvaultcode" not in dry.text
        listed_b = (await r.http.get("/memory/sessions", headers=_auth(KEY_B))).json()["data"]
        assert [s["id"] for s in listed_b] == ["shared"]  # B's own session of that name, nothing else
        deleted = await r.http.delete("/memory/sessions/shared", headers=_auth(KEY_B))
        assert deleted.status_code == 200  # B erased its own "shared"...
        assert (await r.http.delete("/memory/sessions/shared", headers=_auth(KEY_B))).status_code == 404
        assert "qzvaultcode" in await _export_text(r, KEY_A, "shared")  # ...and A's is untouched
        no_key = await r.http.get("/memory/sessions/shared/export")
        assert no_key.status_code == 404  # keyless callers are a principal of their own too
        assert [s["id"] for s in (await r.http.get("/memory/sessions", headers=_auth(KEY_A))).json()["data"]] == ["shared"]


async def test_a_spoofed_user_field_does_not_append_to_another_callers_conversation(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    async with running(proxy_config()) as r:
        opening = [{"role": "user", "content": "hello there\nDecision: alice's pin is qzalicepin."}]
        a1 = await _chat(r, KEY_A, opening, user="alice")
        # B knows (or guesses) A's conversation so far and claims to be "alice" too.
        injected = opening + [_reply(a1), {"role": "user", "content": "Decision (pin): alice's pin is now qzinjected." + FILLER}]
        b = await _chat(r, KEY_B, injected, user="alice", budget=150)
        assert b.status_code == 200
        assert b.headers["x-memory-session"] != a1.headers["x-memory-session"]
        export_a = await _export_text(r, KEY_A, a1.headers["x-memory-session"])
        state_a = (await r.http.get(f"/memory/sessions/{a1.headers['x-memory-session']}", headers=_auth(KEY_A))).json()["state"]
    assert "qzalicepin" in export_a and "qzinjected" not in export_a  # B's turn did not land in A's memory
    assert [d["text"] for d in state_a["decisions"]] == ["alice's pin is qzalicepin."]


async def test_tenants_see_their_own_and_the_operator_sees_everything(proxy_config: Callable[..., ProxyConfig]) -> None:
    config = proxy_config(f"upstreams: {{retries: 0}}\nserver: {{access_token: {OPERATOR}}}\n{TENANTS}")
    alpha, beta, op = ({"X-Memory-Access-Token": t} for t in ("alpha-token-0123456789", "beta-token-9876543210", OPERATOR))
    async with running(config) as r:
        for headers in ({}, {"X-Memory-Access-Token": "wrong-token-0123456789"}):
            assert (await r.http.get("/memory/sessions", headers=headers)).status_code == 401
            assert (await _chat(r, KEY_A, [{"role": "user", "content": "x"}], extra=headers)).status_code == 401
        assert (await _chat(r, None, [{"role": "user", "content": "Decision: alpha ships qzalphaship."}], session="plan", extra=alpha)).status_code == 200
        assert (await _chat(r, KEY_B, [{"role": "user", "content": "Decision: beta ships qzbetaship."}], session="plan", extra=beta)).status_code == 200
        assert (await r.http.get("/memory/whoami", headers=alpha)).json() == {"object": "memory.identity", "principal": "t_alpha", "kind": "tenant", "operator": False}
        listed = (await r.http.get("/memory/sessions", headers=alpha)).json()["data"]
        assert [s["id"] for s in listed] == ["plan"] and "owner" not in listed[0]
        assert "qzbetaship" not in await _export_text(r, None, "plan", alpha)
        assert "qzalphaship" in await _export_text(r, None, "plan", alpha)
        assert (await r.http.get("/memory/sessions/t_beta/plan/export", headers=alpha)).status_code == 404  # no way to name beta's
        everything = (await r.http.get("/memory/sessions", headers=op)).json()["data"]
        assert sorted((s["owner"], s["id"]) for s in everything) == [("t_alpha", "t_alpha/plan"), ("t_beta", "t_beta/plan")]
        assert "qzbetaship" in await _export_text(r, None, "t_beta/plan", op)
        assert (await r.http.delete("/memory/sessions/t_beta/plan", headers=op)).status_code == 200
        assert (await r.http.get("/memory/sessions", headers=beta)).json()["data"] == []
        assert "qzalphaship" in await _export_text(r, None, "plan", alpha)


async def test_the_session_list_is_paginated_per_caller(proxy_config: Callable[..., ProxyConfig]) -> None:
    async with running(proxy_config()) as r:
        names = [f"page-{n}" for n in range(5)]
        for name in names:
            assert (await _chat(r, KEY_A, [{"role": "user", "content": name}], session=name)).status_code == 200
        assert (await _chat(r, KEY_B, [{"role": "user", "content": "other"}], session="page-0b")).status_code == 200
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = (await r.http.get("/memory/sessions", params=params, headers=_auth(KEY_A))).json()
            seen += [s["id"] for s in page["data"]]
            assert len(page["data"]) <= 2 and page["last_id"] == page["data"][-1]["id"]
            if not page["has_more"]:
                break
            params = {"limit": 2, "after": page["last_id"]}
        assert seen == names
        bad = await r.http.get("/memory/sessions", params={"limit": "0"}, headers=_auth(KEY_A))
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_identity_survives_restarts_and_a_key_rotation_moves_the_sessions(
    proxy_config: Callable[..., ProxyConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = proxy_config()
    db = Path(config.storage_path)
    async with running(config) as r:
        assert (await _chat(r, KEY_A, [{"role": "user", "content": "Decision: rotate qzrotatekey."}], session="rot")).status_code == 200
    secret = Path(f"{db}.identity")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not [p.name for p in tmp_path.rglob("*") if p.is_file() and KEY_A.encode() in p.read_bytes()]
    async with running(config) as r:  # same secret after a restart: same principal, same sessions
        assert "qzrotatekey" in await _export_text(r, KEY_A, "rot")

    def principal(key: str) -> str:
        monkeypatch.setattr("sys.stdin", _Stdin(key + "\n"))
        assert cli_main(["identity", "--storage", str(db)]) == 0
        return capsys.readouterr().out.strip()

    old, new = principal(KEY_A), principal(KEY_B)
    assert old.startswith("k_") and new.startswith("k_") and old != new and KEY_A not in old
    assert await asyncio.to_thread(cli_main, ["sessions", "reassign", old, new, "--storage", str(db)]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved["moved"] == [f"{new}/rot"] and moved["conflicts"] == []
    async with running(config) as r:
        assert "qzrotatekey" in await _export_text(r, KEY_B, "rot")
        assert await _export_text(r, KEY_A, "rot") == ""
        # The new key continues the conversation in the moved session (transcript scope moved too).
        resumed = await _chat(r, KEY_B, [{"role": "user", "content": "Decision: rotate qzrotatekey."}, {"role": "assistant", "content": "echo: Decision: rotate qzrotatekey."}, {"role": "user", "content": "next"}])
        assert resumed.headers["x-memory-session"] == "rot"


class _Stdin:
    def __init__(self, text: str) -> None:
        self._text = text

    def readline(self) -> str:
        return self._text
