"""Optional expiry of sessions (`retention:` in the config), run by the app in the background.

A sweep erases sessions not updated for `session_ttl_days`, and, per caller, all but the
`max_sessions_per_caller` most recently updated ones (a caller's sessions share the storage-id
namespace `<principal>/`, so one caller filling its quota never evicts another's memory). It runs
when the app starts and every `sweep_interval_seconds`; with neither limit set it never runs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from memory import MemoryRuntimeError, Runtime

from proxy.config import RetentionConfig

__all__ = ["Sweeper", "sweep"]

log = logging.getLogger("memory_runtime.retention")
DAY_SECONDS = 86_400.0


async def sweep(runtime: Runtime, retention: RetentionConfig, now: float | None = None) -> list[str]:
    """Erase what the retention settings say has expired; returns the erased storage ids."""
    if retention.session_ttl_days is None and retention.max_sessions_per_caller is None:
        return []
    now = time.time() if now is None else now
    before = None if retention.session_ttl_days is None else now - retention.session_ttl_days * DAY_SECONDS
    return await runtime.expire_sessions(before, retention.max_sessions_per_caller)


class Sweeper:
    """The background task that calls `sweep` on a schedule; started and stopped by the lifespan."""

    def __init__(self, runtime: Runtime, retention: RetentionConfig) -> None:
        self._runtime = runtime
        self._retention = retention
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._retention.session_ttl_days is None and self._retention.max_sessions_per_caller is None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                erased = await sweep(self._runtime, self._retention)
                if erased:
                    log.info("retention: erased %d expired sessions", len(erased))
            except MemoryRuntimeError as exc:
                log.warning("retention sweep failed (retried at the next interval): %s", exc)
            await asyncio.sleep(self._retention.sweep_interval_seconds)  # the schedule itself, not a wait for a server
