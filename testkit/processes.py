"""Servers run as child processes: a free loopback port, start, poll a health path with a deadline
(no fixed sleeps), stop by the child's own pid. `start_upstream_process` and
`start_proxy_process` start the fake upstream and `memory-runtime serve` this way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from .serve import is_ready

__all__ = ["Server", "free_port", "start_server", "clean_env", "start_upstream_process", "start_proxy_process", "await_litellm", "REPO_ROOT",
           "child_cpu_seconds"]

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        """Graceful stop, then SIGKILL after 60 s (a graceful exit on a busy machine can take more
        than a few seconds, and a test may check it was graceful). SIGINT (Ctrl-C), not SIGTERM:
        uvicorn re-raises the signal it caught once it has shut down, and a SIGTERM exit reads as a
        crash (-15)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash tests)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def start_server(name: str, cmd: Sequence[str], port: int, health: str, log: Path, cwd: Path,
                 env: Mapping[str, str] | None = None, deadline_s: float = 120.0) -> Server:
    """Start `cmd` (which must listen on 127.0.0.1:`port`) and wait until `health` answers 200
    (and, for the proxy, its embedding model has loaded: `testkit.serve.is_ready`)."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env else None)
    server = Server(name, f"http://127.0.0.1:{port}", process, log)
    end = time.monotonic() + deadline_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up (code {process.returncode}); see {log}")
            try:
                if is_ready(client.get(server.url + health)):
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                server.stop()
                raise RuntimeError(f"{name} not healthy within {deadline_s:.0f}s; see {log}")
            time.sleep(0.05)  # poll interval, bounded by the deadline above


def clean_env() -> dict[str, str]:
    """This process's environment without MEMORY_RUNTIME_/OPENAI_/GEMINI_ variables, so a child
    server is configured only by what its caller passes."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MEMORY_RUNTIME_", "OPENAI_", "GEMINI_"))}


def start_upstream_process(folder: Path, latency_ms: float = 0.0, chunk_chars: int = 7) -> Server:
    """`python -m testkit.upstream_server` on a free port, logging to `folder/upstream.log`."""
    def start(port: int) -> Server:
        cmd = [sys.executable, "-m", "testkit.upstream_server", "--port", str(port), "--latency-ms", str(latency_ms),
               "--chunk-chars", str(chunk_chars)]
        return start_server("fake upstream", cmd, port, "/healthz", folder / "upstream.log", REPO_ROOT, clean_env(), 60.0)

    return _on_a_free_port(start, folder / "upstream.log")


def start_proxy_process(folder: Path, upstream_url: str, *, embedding_model: str | None = "none", budget_tokens: int | None = None,
                        port: int | None = None, log_level: str = "warning", env: Mapping[str, str] | None = None,
                        health: str = "/healthz", deadline_s: float = 60.0, workers: int = 1) -> Server:
    """`memory-runtime serve` on a fresh port (or `port`), storing in `folder/memory.sqlite`,
    configured by `folder/proxy.yaml` (no upstream retries; `embedding_model=None` keeps the
    default model), logging to `folder/proxy.log`, with `env` added to a clean environment that
    holds fallback provider keys (a proxy with no key at all answers keyless requests with 401);
    ready when `health` answers 200 (/healthz also needs memory to be usable). `workers`: `server.workers`
    (answered by whichever worker accepts the connection)."""
    settings: dict[str, Any] = {
        "storage_path": str(folder / "memory.sqlite"),
        "log_level": log_level,
        "upstreams": {"retries": 0, "openai": {"api_base": upstream_url + "/v1"}, "gemini": {"api_base": upstream_url + "/v1beta"}},
    }
    if embedding_model is not None:
        settings["embedding"] = {"model": embedding_model}
    if budget_tokens is not None:
        settings["budget_tokens"] = budget_tokens
    if workers != 1:
        settings["server"] = {"workers": workers}
    config = folder / "proxy.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    keys = {"OPENAI_API_KEY": "sk-" + "process-fallback-key-3b9e", "GEMINI_API_KEY": "AIza" + "-process-fallback-key-6d1f"}

    def start(port: int) -> Server:
        cmd = [sys.executable, "-m", "proxy.cli.main", "serve", "--config", str(config), "--port", str(port)]
        return start_server("memory-runtime proxy", cmd, port, health, folder / "proxy.log", REPO_ROOT,
                            {**clean_env(), **keys, **(env or {})}, deadline_s)

    return start(port) if port else _on_a_free_port(start, folder / "proxy.log")


def _on_a_free_port(start: Callable[[int], Server], log: Path, attempts: int = 3) -> Server:
    """`start(port)` on a port `free_port` found; again on another when the child could not bind
    it (something else took the port between `free_port` closing it and the child binding it)."""
    for attempt in range(attempts):
        try:
            return start(free_port())
        except RuntimeError:
            taken = log.exists() and "address already in use" in log.read_text(encoding="utf-8", errors="replace").lower()
            if not taken or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def await_litellm(http: httpx.Client, proxy_url: str, key: str) -> None:
    """One Gemini chat through the proxy, answered once litellm's import is done: a proxy started
    here has a Gemini key, so it imports litellm in a worker thread after start-up (only Gemini
    goes through it), and a benchmark's measured requests should not share the CPU with that. The
    fake answers it with its default echo."""
    body = {"model": "gemini-2.0-flash", "messages": [{"role": "user", "content": "warm-up"}]}
    http.post(proxy_url + "/v1/chat/completions", json=body,
              headers={"Authorization": f"Bearer {key}", "X-Memory-Session": "warm-up-litellm"}).raise_for_status()


def child_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each child process of `pid` has used so far, by child pid (Linux
    /proc): which of `serve --workers N`'s processes did work (the spawn resource tracker is one of
    them, and stays near zero)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    used: dict[int, float] = {}
    for child in map(int, children):
        try:
            fields = Path(f"/proc/{child}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # exited meanwhile
        used[child] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: fields 14 and 15 of stat
    return used
