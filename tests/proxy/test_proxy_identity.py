"""`proxy.access.identity` and the pure parts of `proxy.access.guard` / `proxy.relay`: principals, the secret
file, tokens, browser contexts, Host names and relay paths."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from proxy.config import ServerConfig, TenantConfig
from proxy.errors import AccessDeniedError, ConfigError, InvalidRequestError
from proxy.access.guard import host_allowed
from proxy.access.identity import Caller, Identities, load_secret
from proxy.relay import relay_path

SECRET = bytes(range(32))


def _headers(**values: str) -> Headers:
    return Headers({k.replace("_", "-"): v for k, v in values.items()})


def test_a_principal_is_a_keyed_hash_of_the_key() -> None:
    ids = Identities(SECRET)
    a = ids.caller(_headers(authorization="Bearer sk-key-a"))
    assert a.kind == "key" and a.principal.startswith("k_") and len(a.principal) == 34 and "/" not in a.principal
    assert a.principal == ids.caller(_headers(authorization="bearer   sk-key-a")).principal
    assert a.principal != ids.caller(_headers(authorization="Bearer sk-key-b")).principal
    assert a.principal != Identities(bytes(32)).caller(_headers(authorization="Bearer sk-key-a")).principal  # depends on the secret
    assert "sk-key-a" not in repr(a)
    keyless = ids.caller(_headers())
    assert (keyless.principal, keyless.kind, keyless.key) == ("local", "local", None)


def test_storage_ids_and_scopes_are_namespaced() -> None:
    caller = Caller("k_abc", "key")
    assert caller.storage_id("my/session") == "k_abc/my/session" and caller.client_id("k_abc/my/session") == "my/session"
    assert caller.scope("alice") == "k_abc/alice" and caller.new_session_id().startswith("k_abc/sess_")
    operator = Caller("k_abc", "key", operator=True)
    # Its chats live under its own key whatever the id looks like; `<owner>/<id>` is for /memory/* only.
    assert operator.storage_id("t_x/s") == "k_abc/t_x/s" and operator.client_id("k_abc/t_x/s") == "t_x/s"
    assert operator.managed_id("t_x/s") == "t_x/s" and operator.shown_id("t_x/s") == "t_x/s" and operator.owned_prefix() == ""
    assert caller.managed_id("t_x/s") == "k_abc/t_x/s" and caller.shown_id("k_abc/t_x/s") == "t_x/s"


def test_tokens_gate_and_name_the_caller() -> None:
    ids = Identities(SECRET, "operator-token-123", (TenantConfig("alpha", "alpha-token-0123456789"),))
    assert ids.gated
    with pytest.raises(AccessDeniedError):
        ids.caller(_headers(authorization="Bearer sk-x"))
    with pytest.raises(AccessDeniedError):
        ids.caller(_headers(x_memory_access_token="alpha-token-012345678"))
    tenant = ids.caller(_headers(x_memory_access_token="alpha-token-0123456789", authorization="Bearer sk-x"))
    assert (tenant.principal, tenant.kind, tenant.operator, tenant.key) == ("t_alpha", "tenant", False, "sk-x")
    op = ids.caller(_headers(x_memory_access_token="operator-token-123", authorization="Bearer sk-x"))
    assert op.operator and op.principal == ids.principal_for_key("sk-x")
    assert not Identities(SECRET).gated


def test_a_web_page_without_its_own_key_cannot_spend_the_environment_key() -> None:
    ids = Identities(SECRET)
    for browser in ({"origin": "https://x"}, {"sec_fetch_site": "cross-site"}, {"referer": "https://x/"}):
        caller = ids.caller(_headers(**browser))
        assert caller.browser
        with pytest.raises(AccessDeniedError):
            caller.upstream_key()
    assert ids.caller(_headers(origin="https://x", authorization="Bearer sk-own")).upstream_key() == "sk-own"
    assert ids.caller(_headers()).upstream_key() is None  # a program: the environment key pays


def test_the_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    storage = str(tmp_path / "sub" / "m.sqlite")
    with pytest.raises(ConfigError):
        load_secret(storage, create=False)
    first = load_secret(storage)
    path = Path(storage + ".identity")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 32
    assert load_secret(storage) == first
    path.chmod(0o644)
    assert load_secret(storage, create=False) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not hex")
    with pytest.raises(ConfigError):
        load_secret(storage)
    assert load_secret(":memory:") != load_secret(":memory:")


@pytest.mark.parametrize(
    "host,allowed",
    [(None, True), ("127.0.0.1:8787", True), ("[::1]:8787", True), ("localhost", True), ("LOCALHOST:1", True), ("192.168.1.5", True),
     ("evil.example", False), ("127.0.0.1.evil.example", False), ("localhost.evil.example", False), ("memory.internal", True)],
)
def test_host_allow_list(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ServerConfig(allowed_hosts=("memory.internal",))) is allowed


@pytest.mark.parametrize("path", ["/v1/models", "/v1/files/abc/content", "/v1/", "/v1/files/"])
def test_plain_relay_paths_pass(path: str) -> None:
    assert relay_path(path.encode(), path) == path


@pytest.mark.parametrize(
    "raw,path",
    [(b"/v1/../x", "/v1/../x"), (b"/v1/%2e%2e/x", "/v1/../x"), (b"/v1/a%2Fb", "/v1/a/b"), (b"/v1//x", "/v1//x"), (b"/v1/.", "/v1/."),
     (b"/v1/a%5cb", "/v1/a\\b"), (b"/x", "/x"), (b"/v1", "/v1")],
)
def test_escaping_relay_paths_are_refused(raw: bytes, path: str) -> None:
    with pytest.raises(InvalidRequestError):
        relay_path(raw, path)
