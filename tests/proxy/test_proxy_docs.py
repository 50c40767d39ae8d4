"""The README's proxy section matches the code: every endpoint it lists exists, the defaults it
states are the defaults, and the environment variables it names are the ones the config reads."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from proxy.app import create_app
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
        template = path.split("?")[0].replace("{id}", "{session_id:path}")
        assert any(p == template and method in m for p, m in routes), f"{method} {path} not routed"


def test_stated_defaults_and_env_names() -> None:
    defaults = ProxyConfig()
    assert f"127.0.0.1:{defaults.server.port}" in SECTION
    assert f"`{defaults.storage_path}`" in SECTION
    assert f"budget {defaults.budget_tokens}" in SECTION
    env = {name: "1234" if "PORT" in name or "BUDGET" in name else "http://x/v1beta" if "GEMINI" in name else "/tmp/x"
           for name in re.findall(r"`((?:MEMORY_RUNTIME|OPENAI|GEMINI)_[A-Z_]+)`", SECTION)}
    assert {"MEMORY_RUNTIME_PORT", "OPENAI_BASE_URL", "GEMINI_API_BASE", "OPENAI_API_KEY"} <= set(env)
    changed = load_config(env=env)
    assert changed != load_config(env={})
    assert changed.server.port == 1234 and changed.upstreams.gemini.api_base == "http://x/v1beta"


def test_quick_start_commands_are_intact() -> None:
    assert "python3 scripts/dev.py serve" in README
    assert "python3 scripts/dev.py test" in README
