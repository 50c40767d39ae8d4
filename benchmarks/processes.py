"""Servers the overhead benchmark starts as child processes: a free loopback port, start, poll a
health path with a deadline (no fixed sleeps), stop by the child's own pid."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Server", "free_port", "start_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(name: str, cmd: Sequence[str], port: int, health: str, log: Path, cwd: Path,
                 env: Mapping[str, str] | None = None, deadline_s: float = 120.0) -> Server:
    """Start `cmd` (which must listen on 127.0.0.1:`port`) and wait until `health` answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env else None)
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    end = time.monotonic() + deadline_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up (code {process.returncode}); see {log}")
            try:
                if client.get(server.url + health).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                server.stop()
                raise RuntimeError(f"{name} not healthy within {deadline_s:.0f}s; see {log}")
            time.sleep(0.05)  # poll interval, bounded by the deadline above
