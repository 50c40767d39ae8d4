"""`memory-runtime serve --workers N`: N processes answering on one listening socket, one memory.

The parent prepares the storage once (opens it, so migrations run before any worker starts, and
creates the caller-identity secret), binds the socket, then starts N workers with multiprocessing's
spawn (a fresh interpreter each: nothing of the parent's event loop or threads is inherited) and
hands each the socket; the kernel spreads incoming connections over the processes accepting on it.
Each worker builds its own app (`create_app(config)`): its own store connection, session views and
embedding model. Requests for one session may reach several workers at once: the store's session
lock serialises them (SQLite: `memory.store.locks.FileSessionLocks`; PostgreSQL: advisory locks).

The parent only supervises: SIGINT / SIGTERM stop every worker (uvicorn's graceful shutdown), and a
worker that dies is started again (its session locks died with it), unless its slot's workers keep
dying soon after they start, which restarting would only repeat (a port taken, a broken config):
then the others are stopped and `serve` exits 1.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from memory import create_runtime

from proxy.access.identity import identity_secret
from proxy.app import create_app
from proxy.config import ProxyConfig
from proxy.errors import ConfigError
from proxy.logs import configure_logging

__all__ = ["serve_workers", "bind_socket", "run_worker"]

log = logging.getLogger("proxy")
# A worker that exits this soon after it started may have failed its start-up; QUICK_FAILURES such
# exits in a row in one slot mean it did, and starting it again would only repeat.
START_UP_S = 30.0
QUICK_FAILURES = 3
_spawn = multiprocessing.get_context("spawn")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for `host`:`port`, created with IPPROTO_TCP explicitly (uvicorn sets
    TCP_NODELAY only on sockets whose proto says TCP; without it a keep-alive request waits ~40 ms)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


async def _prepare(config: ProxyConfig) -> None:
    """Open the storage once, so the workers find it migrated, and create the identity secret."""
    async with create_runtime(storage_path=config.storage_path, storage_url=config.storage_url, embedding_model="none") as runtime:
        await identity_secret(config, runtime.store, create=True)


def run_worker(config: ProxyConfig, sock: socket.socket) -> None:
    """One worker: the proxy app served by uvicorn on the inherited socket (runs in the child)."""
    os.umask(0o077)
    configure_logging(config.log_level, config.log_content, config.log_file)
    uvicorn_config = uvicorn.Config(create_app(config), log_level=config.log_level, access_log=False, log_config=None)
    uvicorn.Server(uvicorn_config).run(sockets=[sock])


def serve_workers(config: ProxyConfig, workers: int) -> int:
    """Serve with `workers` processes until SIGINT / SIGTERM; the exit status."""
    if config.storage_url is None and config.storage_path == ":memory:":
        raise ConfigError("server.workers > 1 needs a storage file or storage_url: an in-memory store cannot be shared")
    asyncio.run(_prepare(config))
    sock = bind_socket(config.server.host, config.server.port)
    running: dict[int, tuple[BaseProcess, float]] = {}
    quick_failures = dict.fromkeys(range(workers), 0)
    stopping = False

    def start(slot: int) -> None:
        process = _spawn.Process(target=run_worker, args=(config, sock), name=f"memory-runtime worker {slot}", daemon=False)
        process.start()
        running[slot] = (process, time.monotonic())

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process, _started in running.values():
            if process.is_alive() and process.pid is not None:
                # SIGTERM whatever came in: a second SIGINT (a terminal's Ctrl-C reaches the workers
                # too) would make uvicorn skip its graceful shutdown.
                os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for slot in range(workers):
            start(slot)
        while running:
            wait([p.sentinel for p, _ in running.values()])
            for slot, (process, started) in list(running.items()):
                if process.is_alive():
                    continue
                del running[slot]
                if stopping:
                    continue
                quick_failures[slot] = quick_failures[slot] + 1 if time.monotonic() - started < START_UP_S else 0
                if quick_failures[slot] >= QUICK_FAILURES:
                    log.error("memory-runtime: worker %d exited %d times in a row soon after starting (status %s); stopping",
                              slot, QUICK_FAILURES, process.exitcode)
                    failed = True
                    stop(signal.SIGTERM, None)
                else:
                    log.error("memory-runtime: worker %d exited (status %s); starting another", slot, process.exitcode)
                    start(slot)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for process, _ in running.values():
            process.join(10)
            if process.is_alive():
                process.kill()
        sock.close()
    return 1 if failed else 0
