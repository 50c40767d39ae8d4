"""The README's proxy section matches the code: every endpoint it lists exists, the defaults it
states are the defaults, and the environment variables it names are the ones the config reads."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from starlette.routing import Route

from proxy.app import create_app
from proxy.cli import build_parser
from proxy.config import ProxyConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## The proxy") :]


def test_listed_memory_endpoints_exist() -> None:
    app = create_app(ProxyConfig())
    routes = [(r.path, r.methods or set()) for r in app.routes if isinstance(r, Route)]
    listed = re.findall(r"`(GET|POST|DELETE) (/[^`]+)`", SECTION)
    assert len(listed) >= 8
    for method, path in listed:
        template = path.replace("{id}", "{session_id}")
        assert any(p == template and method in m for p, m in routes), f"{method} {path} not routed"


def test_stated_defaults_and_env_names() -> None:
    defaults = ProxyConfig()
    assert f"127.0.0.1:{defaults.server.port}" in SECTION
    assert f"`{defaults.storage_path}`" in SECTION
    assert f"budget {defaults.budget_tokens}" in SECTION
    env = {name: "1234" if "PORT" in name or "BUDGET" in name else "http://x/v1beta" if "GEMINI" in name
           else "postgresql://u@db/memory" if "STORAGE_URL" in name else "/tmp/x"
           for name in re.findall(r"`((?:MEMORY_RUNTIME|OPENAI|GEMINI)_[A-Z_]+)`", SECTION)}
    assert {"MEMORY_RUNTIME_PORT", "OPENAI_BASE_URL", "GEMINI_API_BASE", "OPENAI_API_KEY"} <= set(env)
    changed = load_config(env=env)
    assert changed != load_config(env={})
    assert changed.server.port == 1234 and changed.upstreams.gemini.api_base == "http://x/v1beta"


def test_quick_start_commands_are_intact() -> None:
    assert "python3 scripts/dev.py serve" in README
    assert "python3 scripts/dev.py test" in README


def test_several_instances_section_runs_as_written() -> None:
    """Every command of "Running several instances" is one the tools accept, and the local server
    it starts really serves the URL it prints (the multi-instance test runs `serve` on such a URL)."""
    section = README[README.index("## Running several instances") : README.index("## Benchmarks")]
    commands = [line.split("#")[0].strip().rstrip("&").strip() for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines()]
    commands = [c for c in commands if c]
    cli = [shlex.split(c)[1:] for c in commands if c.startswith(".venv/bin/memory-runtime ")]
    assert [c[0] for c in cli] == ["migrate", "serve", "serve", "serve"]
    for args in cli:
        build_parser().parse_args(args)
    dev = [shlex.split(c)[2:] for c in commands if c.startswith("python3 scripts/dev.py ")]
    assert dev == [["postgres", "start"], ["postgres", "stop"]]
    assert any(c.startswith("export MEMORY_RUNTIME_STORAGE_URL=") for c in commands)
    # Not under pytest's tmp_path, which other pytest runs prune (see tests/conftest.py).
    folder = Path(tempfile.mkdtemp(prefix="memory-runtime-readme-pg-")) / "pgdata"
    run = [sys.executable, "-m", "testkit.pg"]
    started = subprocess.run([*run, "start", "--dir", str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        assert load_config(env={"MEMORY_RUNTIME_STORAGE_URL": url}).storage_url == url
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stopped = subprocess.run([*run, "stop", "--dir", str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    shutil.rmtree(folder.parent, ignore_errors=True)
