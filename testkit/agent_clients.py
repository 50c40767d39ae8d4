"""Coding-agent CLIs for the test-suite, installed by `scripts/dev.py` (never by hand): the Codex
CLI (npm `@openai/codex`, a native binary, in `.venv/node`) and aider (`aider-chat`, in its own
virtualenv `.venv/aider`). Each runs with HOME in a temporary folder, pointed at a loopback proxy,
with its update checks, analytics and network tools off, so a test never waits on the internet.
A missing client fails loudly: the set-up installs them."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .processes import REPO_ROOT, clean_env

__all__ = ["CODEX", "AIDER", "Codex", "Aider"]

CODEX = REPO_ROOT / ".venv" / "node" / "node_modules" / ".bin" / "codex"
AIDER = REPO_ROOT / ".venv" / "aider" / "bin" / "aider"
_SETUP = "run `python3 scripts/dev.py setup`"


def _checked(binary: Path, what: str) -> Path:
    if not binary.exists():
        raise RuntimeError(f"{what} is not installed at {binary}: {_SETUP}")
    return binary


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stdout[-1500:]}\n{done.stderr[-2500:]}")
    return done


@dataclass
class Codex:
    """`codex exec` with a custom Responses API provider at `base_url` (the proxy), its key in
    MEMPROXY_KEY, config in `home/.codex/config.toml`, working in `home/work`."""

    home: Path
    base_url: str
    api_key: str
    model: str = "gpt-4o-mini"

    def __post_init__(self) -> None:
        _checked(CODEX, "the Codex CLI")
        (self.home / ".codex").mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        # Keys as the Codex configuration reference names them; `--strict-config` refuses unknown ones.
        (self.home / ".codex" / "config.toml").write_text(
            f'model = "{self.model}"\n'
            'model_provider = "memproxy"\n'
            "check_for_update_on_startup = false\n"
            'web_search = "disabled"\n'
            "[model_providers.memproxy]\n"
            'name = "memory-runtime proxy"\n'
            f"base_url = {json.dumps(self.base_url)}\n"
            'env_key = "MEMPROXY_KEY"\n'
            'wire_api = "responses"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n"
            "[analytics]\n"
            "enabled = false\n"
            # The curated plugin marketplace is synced from the internet at start-up otherwise.
            "[features]\n"
            "plugins = false\n"
            "remote_plugin = false\n"
            "plugin_sharing = false\n"
            "apps = false\n"
        )

    @property
    def work(self) -> Path:
        return self.home / "work"

    def exec(self, prompt: str, resume: bool = False, timeout_s: float = 180.0, sandbox: str = "read-only") -> str:
        """One `codex exec` turn (`resume`: `codex exec resume --last`, continuing the last session);
        returns what Codex printed. `sandbox`: "workspace-write" lets its commands edit `work`."""
        args = [str(CODEX), "exec", "--strict-config", "--skip-git-repo-check", "-s", sandbox]
        args += ["resume", "--last", prompt] if resume else [prompt]
        env = {**clean_env(), "HOME": str(self.home), "CODEX_HOME": str(self.home / ".codex"), "MEMPROXY_KEY": self.api_key}
        return _run(args, self.work, env, timeout_s).stdout


@dataclass
class Aider:
    """`aider --message` runs against an OpenAI-compatible `base_url` (the proxy), editing the files
    in `home/work`, restoring its chat history from the previous run as a user of `--message` does."""

    home: Path
    base_url: str
    api_key: str
    model: str = "gpt-4o-mini"
    # Headers aider sends with every call (`extra_params.extra_headers` of its model settings).
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        _checked(AIDER, "aider")
        self.work.mkdir(parents=True, exist_ok=True)
        # Model metadata given locally, so aider does not fetch litellm's price list from the internet.
        self.metadata = self.home / "model-metadata.json"
        self.metadata.write_text(json.dumps({self.model: {
            "max_input_tokens": 128000, "max_output_tokens": 16384, "input_cost_per_token": 1.5e-7,
            "output_cost_per_token": 6e-7, "litellm_provider": "openai", "mode": "chat"}}))
        # A settings entry replaces aider's own settings for the model (those of its
        # model-settings.yml for gpt-4o-mini are repeated): written only to add headers.
        self.settings: Path | None = None
        if self.headers:
            self.settings = self.home / "model-settings.json"  # YAML, written as JSON (a subset of it)
            self.settings.write_text(json.dumps([{"name": self.model, "weak_model_name": self.model, "lazy": True, "reminder": "sys",
                                                  "extra_params": {"extra_headers": self.headers}}]))

    @property
    def work(self) -> Path:
        return self.home / "work"

    def message(self, text: str, *files: str, timeout_s: float = 180.0) -> str:
        args = [str(AIDER), "--model", self.model, "--openai-api-base", self.base_url, "--model-metadata-file", str(self.metadata),
                *(["--model-settings-file", str(self.settings)] if self.settings else []),
                "--no-check-update", "--analytics-disable", "--no-show-release-notes", "--no-gitignore", "--yes-always",
                "--no-git", "--no-pretty", "--no-fancy-input", "--no-detect-urls", "--no-suggest-shell-commands",
                "--no-show-model-warnings", "--restore-chat-history", "--message", text, *files]
        env = {**clean_env(), "HOME": str(self.home), "OPENAI_API_KEY": self.api_key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        return _run(args, self.work, env, timeout_s).stdout
