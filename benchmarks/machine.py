"""What the numbers were measured on: machine, software versions, load, git commit."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass
from importlib import metadata

from .corpus import REPO_ROOT

__all__ = ["Machine", "describe_machine", "load_average"]

PACKAGES = ("memory-runtime", "fastembed", "onnxruntime", "tiktoken", "numpy", "aiosqlite", "litellm", "starlette",
            "uvicorn", "httpx", "matplotlib")


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gb: float
    os: str
    python: str
    sqlite: str
    packages: dict[str, str]
    commit: str


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head} (uncommitted changes present)" if dirty else head


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def describe_machine() -> Machine:
    return Machine(
        cpu=_cpu_model(), cores=os.cpu_count() or 0, memory_gb=_memory_gb(), os=platform.platform(),
        python=platform.python_version(), sqlite=sqlite3.sqlite_version, packages={p: _version(p) for p in PACKAGES},
        commit=_commit(),
    )
