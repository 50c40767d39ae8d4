"""The proxy's one typed configuration object: YAML file, then environment overrides.

This is the only module of the project that reads `os.environ`. Precedence, lowest first: built-in
defaults, the YAML file, environment variables, then CLI flags (applied by `proxy.cli` through
`with_server`). Every key is documented in `config.example.yaml`, which the test-suite loads.

Environment variables:

    MEMORY_RUNTIME_CONFIG          path of the YAML file when --config is not given
    MEMORY_RUNTIME_HOST / _PORT    server.host / server.port
    MEMORY_RUNTIME_STORAGE_PATH    storage_path
    MEMORY_RUNTIME_BUDGET_TOKENS   budget_tokens
    MEMORY_RUNTIME_ACCESS_TOKEN    server.access_token
    MEMORY_RUNTIME_EMBEDDING_MODEL embedding.model
    MEMORY_RUNTIME_LOG_LEVEL       log_level
    OPENAI_BASE_URL                upstreams.openai.api_base
    GEMINI_API_BASE                upstreams.gemini.api_base
    OPENAI_API_KEY / GEMINI_API_KEY  fallback keys when a request carries no Authorization header
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "ProxyConfig",
    "ServerConfig",
    "UpstreamConfig",
    "UpstreamsConfig",
    "EmbeddingConfig",
    "load_config",
    "prepare_litellm_environment",
    "is_loopback",
]

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
DEFAULT_GEMINI_BASE = "https://generativelanguage.googleapis.com/v1beta"
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def prepare_litellm_environment() -> None:
    """Make litellm use its bundled model cost map instead of fetching one at import time.

    The one write to `os.environ` in the project; `proxy.upstream` calls it before importing litellm,
    because litellm reads the variable during import.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    # Required when host is not a loopback address; clients send it as `X-Memory-Access-Token`.
    access_token: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024


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
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    # Retries for connection failures, 429 and 5xx before any byte reached the client.
    retries: int = 1


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    model_dir: str | None = None


@dataclass(frozen=True)
class ProxyConfig:
    server: ServerConfig = ServerConfig()
    storage_path: str = "./.memory.sqlite"
    budget_tokens: int = 4000
    upstreams: UpstreamsConfig = UpstreamsConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    log_level: str = "info"

    def with_server(self, host: str | None = None, port: int | None = None) -> ProxyConfig:
        """A copy with CLI overrides of the bind address applied (None keeps the current value)."""
        server = dataclasses.replace(
            self.server,
            host=self.server.host if host is None else host,
            port=self.server.port if port is None else port,
        )
        _check_server(server)
        return dataclasses.replace(self, server=server)


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


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


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    return value


def _check_server(server: ServerConfig) -> None:
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port out of range: {server.port}")
    if not is_loopback(server.host) and not server.access_token:
        raise ConfigError(
            f"refusing to bind {server.host}: set server.access_token (or MEMORY_RUNTIME_ACCESS_TOKEN) "
            "for non-loopback addresses"
        )


def _build(raw: Mapping[str, Any], env: Mapping[str, str]) -> ProxyConfig:
    server_raw = _section(raw, "server")
    ups_raw = _section(raw, "upstreams")
    openai_raw = _section(ups_raw, "openai")
    gemini_raw = _section(ups_raw, "gemini")
    emb_raw = _section(raw, "embedding")

    def pick(env_key: str, value: Any) -> Any:
        return env[env_key] if env.get(env_key) else value

    server = ServerConfig(
        host=str(pick("MEMORY_RUNTIME_HOST", server_raw.get("host", ServerConfig.host))),
        port=_typed(pick("MEMORY_RUNTIME_PORT", server_raw.get("port", ServerConfig.port)), int, "server.port"),
        access_token=pick("MEMORY_RUNTIME_ACCESS_TOKEN", server_raw.get("access_token")) or None,
        max_body_bytes=_typed(server_raw.get("max_body_bytes", ServerConfig.max_body_bytes), int, "server.max_body_bytes"),
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
    budget = _typed(pick("MEMORY_RUNTIME_BUDGET_TOKENS", raw.get("budget_tokens", ProxyConfig.budget_tokens)), int, "budget_tokens")
    if budget <= 0:
        raise ConfigError("budget_tokens must be positive")
    return ProxyConfig(
        server=server,
        storage_path=str(pick("MEMORY_RUNTIME_STORAGE_PATH", raw.get("storage_path", ProxyConfig.storage_path))),
        budget_tokens=budget,
        upstreams=upstreams,
        embedding=embedding,
        log_level=str(pick("MEMORY_RUNTIME_LOG_LEVEL", raw.get("log_level", ProxyConfig.log_level))).lower(),
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
