"""The proxy's one typed configuration object: YAML file, then environment overrides.

This is the only module of the project that reads `os.environ`. Precedence, lowest first: built-in
defaults, the YAML file, environment variables, then CLI flags (applied by `proxy.cli.main` through
`with_server`). Every key is documented in `config.example.yaml`, which the test-suite loads.

Environment variables:

    MEMORY_RUNTIME_CONFIG          path of the YAML file when --config is not given
    MEMORY_RUNTIME_HOST / _PORT    server.host / server.port
    MEMORY_RUNTIME_STORAGE_PATH    storage_path
    MEMORY_RUNTIME_STORAGE_URL     storage_url (postgresql://...; when set, storage_path is ignored)
    MEMORY_RUNTIME_BUDGET_TOKENS / _AGENT_BUDGET_TOKENS   budget_tokens / agent_budget_tokens (`proxy.budget`)
    MEMORY_RUNTIME_LAYOUT_POLICY   layout_policy
    MEMORY_RUNTIME_ACCESS_TOKEN    server.access_token
    MEMORY_RUNTIME_EMBEDDING_MODEL embedding.model
    MEMORY_RUNTIME_STORE_IMAGES    store_images (true/false)
    MEMORY_RUNTIME_LOG_LEVEL       log_level
    MEMORY_RUNTIME_LOG_CONTENT     log_content (true/false)
    MEMORY_RUNTIME_LOG_FILE        log_file
    OPENAI_BASE_URL                upstreams.openai.api_base
    GEMINI_API_BASE                upstreams.gemini.api_base
    OPENAI_API_KEY / GEMINI_API_KEY  fallback keys when a request carries no Authorization header
    ANTHROPIC_API_BASE             upstreams.anthropic.api_base (not ANTHROPIC_BASE_URL: that is what
                                   Claude Code reads to find the proxy, often set in the same shell)
    ANTHROPIC_API_KEY              fallback key for /v1/messages when a request carries neither
                                   x-api-key nor Authorization
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from memory import POLICIES
from memory.store.open import is_postgres_url

from proxy.errors import ConfigError

__all__ = [
    "ProxyConfig",
    "ServerConfig",
    "UpstreamConfig",
    "UpstreamsConfig",
    "EmbeddingConfig",
    "TenantConfig",
    "LimitsConfig",
    "RetentionConfig",
    "load_config",
    "prepare_litellm_environment",
    "is_loopback",
]

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
DEFAULT_GEMINI_BASE = "https://generativelanguage.googleapis.com/v1beta"
DEFAULT_ANTHROPIC_BASE = "https://api.anthropic.com"
_TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def prepare_litellm_environment() -> None:
    """Make litellm use its bundled model cost map instead of fetching one at import time.

    The one write to `os.environ` in the project; `proxy.chat.upstream` calls it before importing litellm,
    because litellm reads the variable during import.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    # Required when host is not a loopback address; clients send it as `X-Memory-Access-Token`.
    access_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 8 * 1024 * 1024
    # Host header values accepted besides the loopback names and `host` itself (DNS rebinding
    # guard); "*" accepts any.
    allowed_hosts: tuple[str, ...] = ()
    # Browser origins (scheme://host[:port]) allowed to call the proxy, with their own API key.
    allowed_origins: tuple[str, ...] = ()
    workers: int = 1  # processes serving the one socket and the one memory (`proxy.cli.workers`), at most 64


@dataclass(frozen=True)
class UpstreamConfig:
    api_base: str
    # Never written anywhere; used only when a request carries no `Authorization: Bearer` key.
    api_key: str | None = field(default=None, repr=False)
    # OpenAI only: send a per-session `prompt_cache_key` when the client sets none.
    prompt_cache_key: bool = True


@dataclass(frozen=True)
class UpstreamsConfig:
    openai: UpstreamConfig = UpstreamConfig(api_base=DEFAULT_OPENAI_BASE)
    gemini: UpstreamConfig = UpstreamConfig(api_base=DEFAULT_GEMINI_BASE)
    # `POST /v1/messages` (and its count_tokens) go here: Anthropic's Messages API, without /v1.
    anthropic: UpstreamConfig = UpstreamConfig(api_base=DEFAULT_ANTHROPIC_BASE)
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    # Retries for connection failures, 429 and 5xx before any byte reached the client.
    retries: int = 1


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    model_dir: str | None = None


@dataclass(frozen=True)
class TenantConfig:
    """A named client: requests carrying `token` in X-Memory-Access-Token act as `name`."""

    name: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on one chat request, checked before anything is stored or forwarded (413)."""

    max_messages: int = 4096
    max_message_tokens: int = 65_536


@dataclass(frozen=True)
class RetentionConfig:
    """Optional expiry of sessions: nothing expires unless one of the first two is set."""

    session_ttl_days: float | None = None
    max_sessions_per_caller: int | None = None
    sweep_interval_seconds: float = 600.0


@dataclass(frozen=True)
class ProxyConfig:
    server: ServerConfig = ServerConfig()
    storage_path: str = "./.memory.sqlite"
    # A PostgreSQL database shared by several instances; None keeps the SQLite file. May carry a
    # password, hence kept out of repr.
    storage_url: str | None = field(default=None, repr=False)
    budget_tokens: int = 4000
    agent_budget_tokens: int | None = 16000  # requests with tools; None: they get budget_tokens (`proxy.budget`)
    # How prompts trade the provider's prompt cache against fresh evidence: "cache" or "recall"
    # (memory.prompt.policy).
    layout_policy: str = "cache"
    # False: memory stores a text note in place of every image (data URLs and links alike).
    store_images: bool = True
    upstreams: UpstreamsConfig = UpstreamsConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    tenants: tuple[TenantConfig, ...] = ()
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    log_level: str = "info"
    # At debug level, libraries log request bodies and SQL parameters; they are dropped unless this
    # second switch is on too.
    log_content: bool = False
    log_file: str | None = None

    def with_server(self, host: str | None = None, port: int | None = None, workers: int | None = None) -> ProxyConfig:
        """A copy with CLI overrides of the bind address and workers applied (None keeps the current value)."""
        given: dict[str, Any] = {"host": host, "port": port, "workers": workers}
        server = dataclasses.replace(self.server, **{k: v for k, v in given.items() if v is not None})
        _check_server(server)
        return dataclasses.replace(self, server=server)


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback IP addresses (127.0.0.0/8, ::1), by parsed address: a
    name that merely starts with "127." is not loopback."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {key!r} must be a mapping")
    return value


def _typed(value: Any, kind: type, key: str) -> Any:
    if value is None:
        return None
    try:
        if kind is int and isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} must be {kind.__name__}, got {value!r}") from None


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"config key {key!r} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")


def _tenants(value: Any, access_token: str | None) -> tuple[TenantConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
        raise ConfigError("config key 'tenants' must be a list of {name, token} mappings")
    tenants = []
    for t in value:
        name, token = t.get("name"), t.get("token")
        if not isinstance(name, str) or not _TENANT_NAME.fullmatch(name):
            raise ConfigError(f"tenant name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(token, str) or len(token.strip()) < 16:
            raise ConfigError(f"tenant {name!r} needs a token of at least 16 characters")
        tenants.append(TenantConfig(name, token.strip()))
    tokens = [t.token for t in tenants] + ([access_token] if access_token else [])
    if len({t.name for t in tenants}) != len(tenants) or len(set(tokens)) != len(tokens):
        raise ConfigError("tenant names and tokens must be distinct (and differ from server.access_token)")
    return tuple(tenants)


def _positive(value: Any, kind: type, key: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    typed = _typed(value, kind, key)
    if typed is None or typed <= 0:
        raise ConfigError(f"config key {key!r} must be a positive {kind.__name__}")
    return typed


def _limits(raw: Mapping[str, Any]) -> LimitsConfig:
    return LimitsConfig(
        max_messages=_positive(raw.get("max_messages", LimitsConfig.max_messages), int, "limits.max_messages"),
        max_message_tokens=_positive(raw.get("max_message_tokens", LimitsConfig.max_message_tokens), int, "limits.max_message_tokens"),
    )


def _retention(raw: Mapping[str, Any]) -> RetentionConfig:
    return RetentionConfig(
        session_ttl_days=_positive(raw.get("session_ttl_days"), float, "retention.session_ttl_days", optional=True),
        max_sessions_per_caller=_positive(raw.get("max_sessions_per_caller"), int, "retention.max_sessions_per_caller", optional=True),
        sweep_interval_seconds=_positive(
            raw.get("sweep_interval_seconds", RetentionConfig.sweep_interval_seconds), float, "retention.sweep_interval_seconds"
        ),
    )


def _check_server(server: ServerConfig) -> None:
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port out of range: {server.port}")
    if not 1 <= server.workers <= 64:  # more is a typo: each worker holds its own model and connections
        raise ConfigError(f"server.workers must be from 1 to 64: {server.workers}")
    if not is_loopback(server.host) and not server.access_token:
        raise ConfigError(
            f"refusing to bind {server.host}: set server.access_token (or MEMORY_RUNTIME_ACCESS_TOKEN) "
            "for non-loopback addresses"
        )


# Fields the YAML file never sets: keys come from the environment only (they must not sit in a
# file), and only OpenAI takes a prompt_cache_key.
_NOT_IN_FILE = frozenset({"upstreams.openai.api_key", "upstreams.gemini.api_key", "upstreams.gemini.prompt_cache_key"})


def _check_keys(raw: Mapping[str, Any], schema: type, where: str = "") -> None:
    """Refuse a key the config object does not have, naming it (with the nearest known key): a
    misspelt `budget_token` must not run silently on the default `budget_tokens`. The known keys
    are the dataclasses' fields, so a new field is known the moment it exists."""
    hints = get_type_hints(schema)
    known = [f.name for f in dataclasses.fields(schema) if f"{where}{f.name}" not in _NOT_IN_FILE]
    for key, value in raw.items():
        if f"{where}{key}" in _NOT_IN_FILE:
            raise ConfigError(f"config key '{where}{key}' is not read from the file (API keys come from the environment only)")
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{where}{near[0]}'?" if near else f"known here: {', '.join(sorted(known))}"
            raise ConfigError(f"unknown config key '{where}{key}' ({hint})")
        kind = hints[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            _check_keys(value, kind, f"{where}{key}.")
        elif key == "tenants" and isinstance(value, list):
            for tenant in value:
                if isinstance(tenant, Mapping):
                    _check_keys(tenant, TenantConfig, "tenants[].")


def _build(raw: Mapping[str, Any], env: Mapping[str, str]) -> ProxyConfig:
    _check_keys(raw, ProxyConfig)
    server_raw = _section(raw, "server")
    ups_raw = _section(raw, "upstreams")
    openai_raw = _section(ups_raw, "openai")
    gemini_raw = _section(ups_raw, "gemini")
    anthropic_raw = _section(ups_raw, "anthropic")
    emb_raw = _section(raw, "embedding")

    def pick(env_key: str, value: Any) -> Any:
        return env[env_key] if env.get(env_key) else value

    server = ServerConfig(
        host=str(pick("MEMORY_RUNTIME_HOST", server_raw.get("host", ServerConfig.host))),
        port=_typed(pick("MEMORY_RUNTIME_PORT", server_raw.get("port", ServerConfig.port)), int, "server.port"),
        access_token=pick("MEMORY_RUNTIME_ACCESS_TOKEN", server_raw.get("access_token")) or None,
        max_body_bytes=_positive(server_raw.get("max_body_bytes", ServerConfig.max_body_bytes), int, "server.max_body_bytes"),
        allowed_hosts=tuple(h.lower() for h in _strings(server_raw.get("allowed_hosts"), "server.allowed_hosts")),
        allowed_origins=tuple(o.lower().rstrip("/") for o in _strings(server_raw.get("allowed_origins"), "server.allowed_origins")),
        workers=_typed(server_raw.get("workers", ServerConfig.workers), int, "server.workers"),
    )
    _check_server(server)
    upstreams = UpstreamsConfig(
        openai=UpstreamConfig(
            api_base=str(pick("OPENAI_BASE_URL", openai_raw.get("api_base") or DEFAULT_OPENAI_BASE)).rstrip("/"),
            api_key=env.get("OPENAI_API_KEY") or None,
            prompt_cache_key=_flag(openai_raw.get("prompt_cache_key", True), "upstreams.openai.prompt_cache_key"),
        ),
        gemini=UpstreamConfig(
            api_base=str(pick("GEMINI_API_BASE", gemini_raw.get("api_base") or DEFAULT_GEMINI_BASE)).rstrip("/"),
            api_key=env.get("GEMINI_API_KEY") or None,
        ),
        anthropic=UpstreamConfig(
            api_base=str(pick("ANTHROPIC_API_BASE", anthropic_raw.get("api_base") or DEFAULT_ANTHROPIC_BASE)).rstrip("/"),
            api_key=env.get("ANTHROPIC_API_KEY") or None,
        ),
        timeout_seconds=_typed(ups_raw.get("timeout_seconds", UpstreamsConfig.timeout_seconds), float, "upstreams.timeout_seconds"),
        connect_timeout_seconds=_typed(
            ups_raw.get("connect_timeout_seconds", UpstreamsConfig.connect_timeout_seconds), float, "upstreams.connect_timeout_seconds"
        ),
        retries=_typed(ups_raw.get("retries", UpstreamsConfig.retries), int, "upstreams.retries"),
    )
    if upstreams.retries < 0:
        raise ConfigError("upstreams.retries must be >= 0")
    if not upstreams.gemini.api_base.endswith("/v1beta"):
        raise ConfigError("upstreams.gemini.api_base must end in /v1beta")
    embedding = EmbeddingConfig(
        model=str(pick("MEMORY_RUNTIME_EMBEDDING_MODEL", emb_raw.get("model", EmbeddingConfig.model))),
        model_dir=emb_raw.get("model_dir") or None,
    )
    budget = _positive(pick("MEMORY_RUNTIME_BUDGET_TOKENS", raw.get("budget_tokens", ProxyConfig.budget_tokens)), int, "budget_tokens")
    storage_url = pick("MEMORY_RUNTIME_STORAGE_URL", raw.get("storage_url")) or None
    if storage_url is not None and not is_postgres_url(str(storage_url)):
        raise ConfigError("storage_url must be a postgresql://user@host:port/db URL (leave it unset to use storage_path)")
    layout_policy = str(pick("MEMORY_RUNTIME_LAYOUT_POLICY", raw.get("layout_policy", ProxyConfig.layout_policy)))
    if layout_policy not in POLICIES:
        raise ConfigError(f"layout_policy must be one of {sorted(POLICIES)}, got {layout_policy!r}")
    return ProxyConfig(
        server=server,
        storage_path=str(pick("MEMORY_RUNTIME_STORAGE_PATH", raw.get("storage_path", ProxyConfig.storage_path))),
        storage_url=None if storage_url is None else str(storage_url),
        budget_tokens=budget,
        agent_budget_tokens=_positive(pick("MEMORY_RUNTIME_AGENT_BUDGET_TOKENS", raw.get("agent_budget_tokens", 16000)), int, "agent_budget_tokens", True),
        layout_policy=layout_policy,
        store_images=_flag(pick("MEMORY_RUNTIME_STORE_IMAGES", raw.get("store_images", True)), "store_images"),
        upstreams=upstreams,
        embedding=embedding,
        tenants=_tenants(raw.get("tenants"), server.access_token),
        limits=_limits(_section(raw, "limits")),
        retention=_retention(_section(raw, "retention")),
        log_level=str(pick("MEMORY_RUNTIME_LOG_LEVEL", raw.get("log_level", ProxyConfig.log_level))).lower(),
        log_content=_flag(pick("MEMORY_RUNTIME_LOG_CONTENT", raw.get("log_content", False)), "log_content"),
        log_file=pick("MEMORY_RUNTIME_LOG_FILE", raw.get("log_file")) or None,
    )


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> ProxyConfig:
    """Load the config from `path` (or $MEMORY_RUNTIME_CONFIG, or defaults only) and apply the
    environment overrides. `env` defaults to `os.environ`; tests pass their own mapping."""
    env = os.environ if env is None else env
    path = path or env.get("MEMORY_RUNTIME_CONFIG") or None
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError("config file must contain a mapping at the top level")
    return _build(raw, env)
