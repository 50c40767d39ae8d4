"""Serve an ASGI app with uvicorn on a loopback socket in a background thread, for tests.

The socket is bound before uvicorn starts (so the port is known without races) and created with
IPPROTO_TCP explicitly: uvicorn only sets TCP_NODELAY on sockets whose proto says TCP, and without
it every keep-alive request waits ~40 ms on Nagle + delayed ACK. Readiness is polled on a health
path with a deadline (`is_ready`: for the proxy, until its embedding model has loaded); nothing
sleeps a fixed time.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import uvicorn

__all__ = ["ServedApp", "serve_in_thread", "is_ready"]


def is_ready(response: httpx.Response) -> bool:
    """A health answer of a server ready for tests: 200, and (for the proxy) its embedding model
    loaded: tests and benchmarks measure the proxy as it runs once started, not its first seconds."""
    return response.status_code == 200 and "loading" not in response.text


@dataclass
class ServedApp:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def serve_in_thread(
    app: Any, health_path: str = "/healthz", lifespan: Literal["auto", "on", "off"] = "on", deadline_s: float = 120.0
) -> ServedApp:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    # h11, not uvicorn's pick: with httptools installed (the proxy extra) a header byte h11 lets
    # through (a control character) is answered by the server itself, in plain text, before any
    # app sees it; the fakes and in-thread apps behave the same whatever is installed.
    config = uvicorn.Config(app, http="h11", log_level="warning", lifespan=lifespan, access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    end = time.monotonic() + deadline_s
    with httpx.Client(timeout=1.0) as client:
        while True:
            if not thread.is_alive():
                raise RuntimeError("test server thread died during start-up")
            try:
                if is_ready(client.get(url + health_path)):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                server.should_exit = True
                raise RuntimeError(f"test server at {url} not healthy within {deadline_s}s")
            time.sleep(0.01)  # poll interval, bounded by the deadline above
    return ServedApp(url=url, server=server, thread=thread, sock=sock)
