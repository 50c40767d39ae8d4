"""The README's proxy section matches the code: every endpoint it lists exists, the defaults it
states are the defaults, and the environment variables it names are the ones the config reads. Its
quick-start commands do what it says: `serve` brings up a working proxy, `test` is what CI runs, and
the set-up they share installs every extra."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import psycopg
import pytest
from starlette.routing import Route

from proxy.app import create_app
from proxy.cli.main import build_parser
from proxy.config import ProxyConfig, load_config
from testkit.harness import Upstream
from testkit.processes import clean_env, free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## The proxy") :]


def test_listed_memory_endpoints_exist() -> None:
    app = create_app(ProxyConfig())
    routes = [(r.path, r.methods or set()) for r in app.routes if isinstance(r, Route)]
    listed = re.findall(r"`(GET|POST|DELETE) (/[^`]+)`", SECTION)
    assert len(listed) >= 8
    for method, path in listed:
        template = path.split("?")[0].replace("{id}", "{session_id:path}")
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


def _quick_start_commands() -> list[str]:
    quick = README[README.index("## Quick start") : README.index("## The library")]
    return [line for block in re.findall(r"```bash\n(.*?)```", quick, re.S) for line in block.splitlines() if line.strip()]


def _dev_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "scripts" / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_start_serve_command_serves_a_working_proxy(upstream: Upstream, tmp_path: Path) -> None:
    serve = [c for c in _quick_start_commands() if " serve" in c]
    assert serve == ["python3 scripts/dev.py serve"]
    port = free_port()
    env = {**clean_env(), "OPENAI_BASE_URL": upstream.url + "/v1", "MEMORY_RUNTIME_STORAGE_PATH": str(tmp_path / "m.sqlite"),
           "MEMORY_RUNTIME_EMBEDDING_MODEL": "none"}
    served = start_server("dev.py serve", [*shlex.split(serve[0]), "--port", str(port)], port, "/healthz", tmp_path / "serve.log", ROOT, env)
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="sk-docs-test", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "quick start?"}])
        assert reply.choices[0].message.content == "echo: quick start?"
    finally:
        served.stop()


def test_quick_start_test_command_is_what_ci_runs_and_runs_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    test = [c for c in _quick_start_commands() if " test" in c]
    assert test == ["python3 scripts/dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == f"exec {test[0]}"
    dev = _dev_script()
    ran: list[tuple[list[str], Any]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(dev, "setup", lambda: None)
    monkeypatch.setattr(dev.subprocess, "run", lambda args, **kw: ran.append((args, kw.get("cwd"))) or Done())
    assert dev.main([*shlex.split(test[0])[2:], "-q"]) == 0
    assert ran == [([str(dev.BIN / "python"), "-m", "mypy"], dev.ROOT), ([str(dev.BIN / "python"), "-m", "pytest", "-q"], dev.ROOT)]


def test_the_test_command_fails_on_type_errors_and_still_runs_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = _dev_script()
    ran: list[str] = []

    class Done:
        def __init__(self, args: list[str]) -> None:
            ran.append(args[2])
            self.returncode = 1 if args[2] == "mypy" else 0

    monkeypatch.setattr(dev, "setup", lambda: None)
    monkeypatch.setattr(dev.subprocess, "run", lambda args, **kw: Done(args))
    assert dev.main(["test"]) == 1
    assert ran == ["mypy", "pytest"]
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert mypy["strict"] is True and set(mypy["files"]) == {"memory", "proxy"}


def _resolved_extra(project: dict[str, Any], extra: str) -> set[str]:
    """Every requirement name an extra pulls in, following `memory-runtime[...]` self-references."""
    names: set[str] = {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    for dep in project["optional-dependencies"][extra]:
        if dep.startswith(project["name"] + "["):
            for inner in dep[dep.index("[") + 1 : dep.index("]")].split(","):
                names |= _resolved_extra(project, inner.strip())
        else:
            names.add(re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower())
    return names


def test_the_set_up_the_commands_share_installs_every_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dev = _dev_script()
    commands: list[tuple[str, ...]] = []
    monkeypatch.setattr(dev, "STAMP", tmp_path / "stamp")  # as on a fresh machine
    monkeypatch.setattr(dev, "_run", lambda *cmd: commands.append(tuple(str(c) for c in cmd)))
    dev.setup()
    installs = [c[c.index("install") + 1 :] for c in commands if "install" in c]
    assert ("-e", ".[test]") in installs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    everything = set().union(*(_resolved_extra(project, extra) for extra in project["optional-dependencies"]))
    assert _resolved_extra(project, "test") == everything


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
