"""Fixtures for the proxy tests: a fake upstream and the real proxy app, both served by uvicorn on
loopback in background threads. Both are module-scoped (start-up, and the embedding model load when
a module asks for it, are paid once per module); the fake's script and recordings reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit.harness import Proxy, Upstream, config_for, serve_upstream, start_proxy
from testkit.pg import PgServer

# The end-to-end modules run once per store: their proxy fixtures take `params=STORES`.
STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    served = serve_upstream()
    yield served
    served.served.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").fake.reset()


@pytest.fixture(scope="module")
def proxy_factory(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proxy]]:
    """Start extra proxies with their own storage and settings (stopped at module end)."""
    started: list[Proxy] = []

    def make(yaml_text: str = "upstreams: {retries: 0}\n", **env: str) -> Proxy:
        proxy = start_proxy(config_for(upstream, tmp_path_factory.mktemp("proxy"), yaml_text, fallback_keys=True, **env))
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.served.stop()


@pytest.fixture(scope="module")
def proxy(proxy_factory: Callable[..., Proxy]) -> Proxy:
    """The module's default proxy: no retries, lexical-only memory, budget 4000."""
    return proxy_factory()


@pytest.fixture(scope="module")
def pg_module_url(pg_server: PgServer) -> Iterator[str]:
    """A database for the proxies of one test module."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for a proxy on the store named by `request.param` (see STORES)."""
    if request.param == "postgres":
        return {"MEMORY_RUNTIME_STORAGE_URL": request.getfixturevalue("pg_module_url")}
    return {}
