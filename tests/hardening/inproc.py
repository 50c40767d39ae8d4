"""An app built by `create_app`, run in process: its lifespan entered on the current event loop and
an httpx client speaking ASGI to it. For tests that need to reach into the running app's memory
(its store connection) from the test's own loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiosqlite
import httpx
from starlette.applications import Starlette

from memory import Runtime
from memory.store.sqlite.store import SqliteStore
from proxy.app import create_app
from proxy.config import ProxyConfig

__all__ = ["Running", "running"]


@dataclass
class Running:
    app: Starlette
    http: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        found: Runtime = self.app.state.services.runtime
        return found

    @property
    def connection(self) -> aiosqlite.Connection:
        """The store's own SQLite connection, for injecting faults (PRAGMAs) into it."""
        store = self.runtime.store
        assert isinstance(store, SqliteStore)
        return store.db


@asynccontextmanager
async def running(config: ProxyConfig, wait_for_model: bool = True) -> AsyncIterator[Running]:
    """The app started; by default once its embedding model (loading in the background) is ready."""
    app = create_app(config)
    async with app.router.lifespan_context(app):
        if wait_for_model:
            await app.state.services.runtime.wait_for_model()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as http:
            yield Running(app, http)
