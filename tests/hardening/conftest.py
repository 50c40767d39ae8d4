"""Fixtures for the hardening tests: the shared fake upstream (whose fault modes are chosen by model
name, see `testkit.faults`), in-process proxies for fast fuzzing, and loopback-served proxies for
the tests that need real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.config import ProxyConfig
from testkit.harness import Proxy, Upstream, config_for, serve_upstream, start_proxy


@pytest.fixture(scope="module")
def faulty() -> Iterator[Upstream]:
    served = serve_upstream()
    yield served
    served.served.stop()


@pytest.fixture(autouse=True)
def _fresh_faulty(request: pytest.FixtureRequest) -> None:
    if "faulty" in request.fixturenames:
        request.getfixturevalue("faulty").fake.reset()


@pytest.fixture(scope="module")
def served_proxy(faulty: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """Start proxies over loopback HTTP (uvicorn in a thread), each with its own storage file."""
    started: list[Proxy] = []

    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> Proxy:
        folder: Path = tmp_path_factory.mktemp("hardening")
        proxy = start_proxy(config_for(faulty, folder, yaml_text, fallback_keys=True, **env))
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.served.stop()


@pytest.fixture
def proxy_config(faulty: Upstream, tmp_path: Path) -> Callable[..., ProxyConfig]:
    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> ProxyConfig:
        return config_for(faulty, tmp_path, yaml_text, fallback_keys=True, **env)

    return make
