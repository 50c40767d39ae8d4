"""Fixtures for the hardening tests: the shared fake upstream (plus a slow/cancellable stream mode,
see `slow_upstream`), in-process proxies for fast fuzzing, and loopback-served proxies for the
tests that need real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.config import ProxyConfig
from tests.fakes.harness import Proxy, start_proxy
from tests.fakes.server import serve_in_thread
from tests.hardening.slow_upstream import FaultyUpstream, config_for


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream()
    fake.served = serve_in_thread(fake.app(), lifespan="off")
    yield fake
    fake.served.stop()


@pytest.fixture(autouse=True)
def _fresh_faulty(request: pytest.FixtureRequest) -> None:
    if "faulty" in request.fixturenames:
        request.getfixturevalue("faulty").reset()


@pytest.fixture(scope="module")
def served_proxy(faulty: FaultyUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """Start proxies over loopback HTTP (uvicorn in a thread), each with its own storage file."""
    started: list[Proxy] = []

    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> Proxy:
        folder: Path = tmp_path_factory.mktemp("hardening")
        proxy = start_proxy(config_for(faulty, folder, yaml_text, **env))
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.served.stop()


@pytest.fixture
def proxy_config(faulty: FaultyUpstream, tmp_path: Path) -> Callable[..., ProxyConfig]:
    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> ProxyConfig:
        return config_for(faulty, tmp_path, yaml_text, **env)

    return make
