"""The proxy under test and its fake upstream, as handles tests share: both served by uvicorn on
loopback in background threads (`serve_in_thread`), configured the way a user would (a YAML file
plus environment overrides)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from proxy.app import create_app
from proxy.config import ProxyConfig, load_config
from proxy.services import Services

from .serve import ServedApp, serve_in_thread
from .upstream import FakeUpstream

__all__ = [
    "OPENAI_KEY", "GEMINI_KEY", "ENV_OPENAI_KEY", "ENV_GEMINI_KEY", "Upstream", "Proxy",
    "serve_upstream", "config_for", "start_proxy",
]

OPENAI_KEY = "sk-test-caller-key-7f3a9c1e"
GEMINI_KEY = "AIza-test-caller-key-b52d8e"
ENV_OPENAI_KEY = "sk-env-fallback-key-0c4d"
ENV_GEMINI_KEY = "AIza-env-fallback-key-91ab"


# How long a test's plain HTTP client waits for an answer (a hang guard, as the openai client's own
# 600 s default is).
CLIENT_TIMEOUT_S = 300.0


@dataclass
class Upstream:
    fake: FakeUpstream
    served: ServedApp

    @property
    def url(self) -> str:
        return self.served.url


@dataclass
class Proxy:
    served: ServedApp
    app: Any
    config: ProxyConfig

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def services(self) -> Services:
        found: Services = self.app.state.services
        return found

    def client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("api_key", OPENAI_KEY)
        return openai.OpenAI(base_url=self.url + "/v1", max_retries=0, **kwargs)

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("api_key", OPENAI_KEY)
        return openai.AsyncOpenAI(base_url=self.url + "/v1", max_retries=0, **kwargs)

    def http(self, key: str | None = OPENAI_KEY) -> httpx.Client:
        """A plain client acting as the caller with `key` (memory routes are scoped by it). Its
        timeout guards against a hang and is no speed target: a library compile over a long
        session with the real model embeds the whole backlog first, which took over 30 s on a
        loaded machine."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S, headers=headers)


def serve_upstream(fake: FakeUpstream | None = None) -> Upstream:
    """`fake` (a fresh one by default) served on loopback; stop it with `.served.stop()`."""
    fake = fake or FakeUpstream()
    return Upstream(fake, serve_in_thread(fake.app(), lifespan="off"))


def config_for(upstream: Upstream, folder: Path, yaml_text: str = "upstreams: {retries: 0}\n", *, fallback_keys: bool = False,
               **env: str) -> ProxyConfig:
    """A proxy config from `yaml_text` (written to `folder/config.yaml`) pointing at `upstream`,
    storing in `folder/memory.sqlite`, lexical-only memory, then `env` overrides. With
    `fallback_keys`, OPENAI_API_KEY / GEMINI_API_KEY hold the ENV_* keys, for requests without one."""
    cfg = folder / "config.yaml"
    cfg.write_text(yaml_text)
    values = {
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "GEMINI_API_BASE": upstream.url + "/v1beta",
        "ANTHROPIC_API_BASE": upstream.url,
        "MEMORY_RUNTIME_STORAGE_PATH": str(folder / "memory.sqlite"),
        "MEMORY_RUNTIME_EMBEDDING_MODEL": "none",
    }
    if fallback_keys:
        values.update({"OPENAI_API_KEY": ENV_OPENAI_KEY, "GEMINI_API_KEY": ENV_GEMINI_KEY})
    values.update(env)
    return load_config(cfg, env=values)


def start_proxy(config: ProxyConfig) -> Proxy:
    """`create_app(config)` served on loopback in this process; stop it with `.served.stop()`."""
    app = create_app(config)
    return Proxy(serve_in_thread(app), app, config)
