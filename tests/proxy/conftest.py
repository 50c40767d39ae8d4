"""Fixtures for the proxy tests: a fake upstream and the real proxy app, both served by uvicorn on
loopback in background threads. Both are module-scoped (start-up, and the embedding model load when
a module asks for it, are paid once per module); the fake's script and recordings reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.app import create_app
from proxy.config import ProxyConfig, load_config
from proxy.services import Services
from tests.fakes.server import ServedApp, serve_in_thread
from tests.fakes.upstream import FakeUpstream

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

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    fake = FakeUpstream()
    served = serve_in_thread(fake.app(), lifespan="off")
    yield Upstream(fake, served)
    served.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").fake.reset()


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


@pytest.fixture(scope="module")
def proxy_factory(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """Start extra proxies with their own storage and settings (stopped at module end)."""
    started: list[Proxy] = []

    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> Proxy:
        folder = tmp_path_factory.mktemp("proxy")
        cfg_file = folder / "config.yaml"
        cfg_file.write_text(yaml_text)
        config = load_config(cfg_file, env=proxy_env(upstream, folder / "memory.sqlite", **env))
        proxy = start_proxy(config)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.served.stop()


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    """The module's default proxy: no retries, lexical-only memory, budget 4000."""
    return proxy_factory()
