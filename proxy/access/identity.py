"""Who is calling: every request acts as one *principal*, and memory is namespaced by it.

    tenant token in X-Memory-Access-Token   -> "t_<name>"            (tenants configured)
    operator token (server.access_token)    -> operator: sees and manages every session through
                                               /memory/* by `<owner>/<id>`; its own chats are
                                               scoped like anyone's (by its API key), whatever
                                               the X-Memory-Session it sends looks like
    Authorization: Bearer <key>             -> "k_<hmac>"            HMAC-SHA256(secret, key), 32 hex
      (or x-api-key: <key>, Anthropic's)
    no key at all                           -> "local"               the proxy's environment key pays

The HMAC secret is 32 random bytes the proxy creates on first start beside the database
(`<storage_path>.identity`, mode 0600) or, when instances share a PostgreSQL memory, in that
database (so a caller is the same principal whichever instance it reaches); the key itself is
never stored. Storage session ids are
`<principal>/<client id>` and the transcript-matching scope is `<principal>/<user field>`, so one
caller can never name, match or list another's memory: the namespacing happens before memory is
asked anything. Clients always see their own, unprefixed ids.

Requests from a web page (they carry `Origin`, `Sec-Fetch-*` or `Referer`) never spend the
environment key: they must bring their own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from starlette.datastructures import Headers

from memory import MemoryRuntimeError

from proxy.config import ProxyConfig, TenantConfig
from proxy.errors import AccessDeniedError, ConfigError
from proxy.http import bearer_value

__all__ = ["Caller", "Identities", "LOCAL", "ACCESS_HEADER", "secret_path", "load_secret", "identity_secret", "is_browser", "owner_of"]

log = logging.getLogger("memory_runtime.identity")
LOCAL = "local"
ACCESS_HEADER = "x-memory-access-token"
_BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "referer")


def is_browser(headers: Headers) -> bool:
    """Whether a request comes from a web page: browsers add these headers, and scripts cannot
    remove them."""
    return any(name in headers for name in _BROWSER_HEADERS)


def owner_of(storage_id: str) -> str | None:
    """The principal a storage id belongs to (None for a session stored before identities)."""
    return storage_id.split("/", 1)[0] if "/" in storage_id else None


@dataclass(frozen=True)
class Caller:
    """The identity one request acts as. `principal` never contains "/"."""

    principal: str
    kind: str  # "key", "tenant" or "local"
    operator: bool = False
    browser: bool = False
    key: str | None = field(default=None, repr=False)

    def storage_id(self, session_id: str) -> str:
        """The id memory stores one of this caller's chat sessions under: always under its own
        principal, the operator's chats included, whatever `session_id` looks like (an operator's
        `t_alice/s1` is its own session of that name, never tenant alice's)."""
        return f"{self.principal}/{session_id}"

    def client_id(self, storage_id: str) -> str:
        """What the client sees for one of its chat sessions' storage ids."""
        return storage_id.removeprefix(f"{self.principal}/")

    def managed_id(self, session_id: str) -> str:
        """The storage id a `/memory/*` management route names: the operator names any session by
        `<owner>/<id>`; everyone else, their own by the id they chose."""
        return session_id if self.operator else self.storage_id(session_id)

    def shown_id(self, storage_id: str) -> str:
        """A storage id as a `/memory/*` route shows it: whole to the operator, unprefixed to its owner."""
        return storage_id if self.operator else self.client_id(storage_id)

    def owned_prefix(self) -> str:
        """Storage ids this caller may see start with this ("" for the operator: all of them)."""
        return "" if self.operator else f"{self.principal}/"

    def scope(self, user: str) -> str:
        """Transcript matching never crosses principals: the scope is the principal plus `user`."""
        return f"{self.principal}/{user}"

    def new_session_id(self) -> str:
        return f"{self.principal}/sess_{uuid.uuid4().hex}"

    def upstream_key(self) -> str | None:
        """The caller's own key, or None (the environment key pays), refused for web pages."""
        if self.key is None and self.browser:
            raise AccessDeniedError("a request from a web page must carry its own API key", code="browser_needs_own_key")
        return self.key


def secret_path(storage_path: str) -> Path | None:
    """Where the HMAC secret lives: beside the database (None for an in-memory database)."""
    if storage_path == ":memory:":
        return None
    return Path(f"{Path(storage_path).expanduser()}.identity")


def load_secret(storage_path: str, create: bool = True) -> bytes:
    """Read the identity secret, creating it (0600, never overwritten) on first use."""
    path = secret_path(storage_path)
    if path is None:
        return secrets.token_bytes(32)
    try:
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: read theirs
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32) + "\n")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("identity secret %s was readable by others; made it 0600", path)
            path.chmod(0o600)
        text = path.read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except FileNotFoundError:
        raise ConfigError(f"no identity secret at {path}: start the proxy once to create it") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use identity secret {path}: {exc}") from None
    if len(secret) < 16:
        raise ConfigError(f"identity secret {path} is too short; move it away to create a new one")
    return secret


@runtime_checkable
class SharedSecrets(Protocol):
    """A store several instances share keeps the secrets they must agree on (PostgreSQL does)."""

    async def shared_secret(self, name: str, create: bool = True) -> bytes: ...


async def identity_secret(config: ProxyConfig, store: object, create: bool = True) -> bytes:
    """The identity secret for `config`'s storage: beside the SQLite file, or in the shared
    PostgreSQL database (`store`, opened) so that every instance names a caller alike."""
    if config.storage_url is None:
        return load_secret(config.storage_path, create)
    if not isinstance(store, SharedSecrets):
        raise ConfigError("storage_url is set but the store keeps no shared secrets")
    try:
        return await store.shared_secret("identity", create)
    except MemoryRuntimeError as exc:
        raise ConfigError(f"cannot read the caller-identity secret from the PostgreSQL storage: {exc}") from exc


class Identities:
    """Turns a request's headers into a `Caller`."""

    def __init__(self, secret: bytes, operator_token: str | None = None, tenants: tuple[TenantConfig, ...] = ()) -> None:
        self._secret = secret
        self._tokens: list[tuple[bytes, str | None]] = [(t.token.encode(), t.name) for t in tenants]
        if operator_token:
            self._tokens.append((operator_token.encode(), None))

    @property
    def gated(self) -> bool:
        """Whether every request must present a token (operator or tenant)."""
        return bool(self._tokens)

    def principal_for_key(self, key: str) -> str:
        return "k_" + hmac.new(self._secret, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def caller(self, headers: Headers) -> Caller:
        """The caller for these request headers; `AccessDeniedError` when tokens are configured and
        none of them was sent."""
        browser = is_browser(headers)
        # Anthropic's clients send their key as x-api-key: the same caller as with Bearer.
        key = bearer_value(headers.get("authorization", "")) or headers.get("x-api-key", "").strip() or None
        tenant: str | None = None
        operator = False
        if self._tokens:
            sent = headers.get(ACCESS_HEADER, "").encode("utf-8", "surrogateescape")
            # Compare against every token, so the time taken does not say which one matched.
            matches = [name for token, name in self._tokens if hmac.compare_digest(sent, token)]
            if not matches:
                raise AccessDeniedError("missing or wrong X-Memory-Access-Token")
            tenant = matches[0]
            operator = tenant is None
        if tenant is not None:
            return Caller(f"t_{tenant}", "tenant", browser=browser, key=key)
        if key is not None:
            return Caller(self.principal_for_key(key), "key", operator=operator, browser=browser, key=key)
        return Caller(LOCAL, "local", operator=operator, browser=browser)

