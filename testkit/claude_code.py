"""The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed by `scripts/dev.py` into
`.venv/node`), run non-interactively (`claude -p`) against a loopback proxy only.

Its environment is built from nothing but what it needs: PATH, a HOME of the caller's (a fresh
temporary folder, so no user settings, credentials or history leak in or out), ANTHROPIC_BASE_URL
and ANTHROPIC_API_KEY, and its documented switches that turn off everything but the model calls:
DISABLE_AUTOUPDATER, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, DISABLE_TELEMETRY,
DISABLE_ERROR_REPORTING. Extra request headers (a session name) go through its
ANTHROPIC_CUSTOM_HEADERS.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .processes import REPO_ROOT

__all__ = ["CLAUDE", "ClaudeCode"]

CLAUDE = REPO_ROOT / ".venv" / "node" / "node_modules" / ".bin" / "claude"


@dataclass(frozen=True)
class ClaudeCode:
    """`claude -p` with a HOME and a working folder of its own, talking to `base_url`."""

    base_url: str
    api_key: str
    home: Path
    workdir: Path
    headers: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "ANTHROPIC_BASE_URL": self.base_url,
               "ANTHROPIC_API_KEY": self.api_key, "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}
        if self.headers:
            env["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return env

    def ask(self, prompt: str, *, resume: bool = False, timeout_s: float = 180.0, allowed: tuple[str, ...] = ()) -> str:
        """One turn: `claude -p [--continue] PROMPT`; returns what it printed. Raises with its
        output when it fails (a missing CLI fails loudly: the set-up installs it). `allowed`: tools
        it may run without asking (`--allowedTools`, edits accepted), e.g. ("Bash", "Edit")."""
        if not CLAUDE.exists():
            raise RuntimeError(f"Claude Code is not installed at {CLAUDE}: run `python3 scripts/dev.py setup`")
        granted = ["--permission-mode", "acceptEdits", "--allowedTools", *allowed, "--"] if allowed else []
        args = [str(CLAUDE), "-p", *(["--continue"] if resume else []), *granted, prompt]
        done = subprocess.run(args, env=self.env(), cwd=self.workdir, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"claude -p failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
        return done.stdout
