"""The proxy-under-test and fake-upstream handles the proxy tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from proxy.app import create_app
from proxy.config import ProxyConfig
from proxy.services import Services
from tests.fakes.server import ServedApp, serve_in_thread
from tests.fakes.upstream import FakeUpstream

__all__ = ["OPENAI_KEY", "GEMINI_KEY", "ENV_OPENAI_KEY", "ENV_GEMINI_KEY", "Upstream", "Proxy", "proxy_env", "start_proxy"]

OPENAI_KEY = "sk-test-caller-key-7f3a9c1e"
GEMINI_KEY = "AIza-test-caller-key-b52d8e"
ENV_OPENAI_KEY = "sk-env-fallback-key-0c4d"
ENV_GEMINI_KEY = "AIza-env-fallback-key-91ab"


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
        """A plain client acting as the caller with `key` (memory routes are scoped by it)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


def proxy_env(upstream: Upstream, storage: Path, **extra: str) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "GEMINI_API_BASE": upstream.url + "/v1beta",
        "MEMORY_RUNTIME_STORAGE_PATH": str(storage),
        "MEMORY_RUNTIME_EMBEDDING_MODEL": "none",
        "OPENAI_API_KEY": ENV_OPENAI_KEY,
        "GEMINI_API_KEY": ENV_GEMINI_KEY,
    }
    env.update(extra)
    return env


def start_proxy(config: ProxyConfig) -> Proxy:
    app = create_app(config)
    return Proxy(serve_in_thread(app), app, config)
