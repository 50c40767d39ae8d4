"""The `memory-runtime` CLI: sessions commands against a storage file, and `serve` as a real process
started with the documented config file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from memory import create_runtime
from proxy.cli import build_parser, main
from tests.fakes.harness import Upstream

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    path = tmp_path / "cli.sqlite"

    async def fill() -> None:
        async with create_runtime(storage_path=path, embedding_model="none") as runtime:
            await runtime.session("cli-one").sync_messages([{"role": "user", "content": "Decision: ship on Friday"}])
            await runtime.session("cli-two").sync_messages([{"role": "user", "content": "hello"}])

    asyncio.run(fill())
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(list(args))
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else None)


def test_sessions_list_show_export_delete(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = _run(capsys, "sessions", "list", "--storage", str(storage))
    assert code == 0 and sorted(s["id"] for s in listed) == ["cli-one", "cli-two"]
    code, shown = _run(capsys, "sessions", "show", "cli-one", "--storage", str(storage))
    assert code == 0 and shown["state"]["decisions"][0]["text"].startswith("ship on Friday")
    code, exported = _run(capsys, "sessions", "export", "cli-one", "--storage", str(storage))
    assert code == 0 and exported["events"][0]["content"] == "Decision: ship on Friday"
    code, deleted = _run(capsys, "sessions", "delete", "cli-one", "--storage", str(storage))
    assert code == 0 and deleted == {"id": "cli-one", "deleted": True}
    assert _run(capsys, "sessions", "show", "cli-one", "--storage", str(storage))[0] == 1
    assert _run(capsys, "sessions", "delete", "cli-one", "--storage", str(storage))[0] == 1
    assert _run(capsys, "sessions", "show", "--storage", str(storage))[0] == 2
    assert b"ship on Friday" not in storage.read_bytes()


def test_sessions_use_the_config_storage_path(storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage_path: {storage}\n")
    code, listed = _run(capsys, "sessions", "list", "--config", str(cfg))
    assert code == 0 and len(listed) == 2


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget_tokens: -5\n")
    assert main(["sessions", "list", "--config", str(cfg)]) == 2
    assert "budget_tokens" in capsys.readouterr().err


def test_parser_keeps_provision_model_and_serve_flags() -> None:
    parser = build_parser()
    assert parser.parse_args(["provision-model"]).func.__name__ == "_provision"
    args = parser.parse_args(["serve", "--config", "x.yaml", "--host", "127.0.0.1", "--port", "9999"])
    assert (args.config, args.host, args.port) == ("x.yaml", "127.0.0.1", 9999)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_the_proxy_with_the_example_config(upstream: Upstream, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORY_RUNTIME_", "OPENAI_", "GEMINI_"))}
    env.update(
        OPENAI_BASE_URL=upstream.url + "/v1",
        MEMORY_RUNTIME_STORAGE_PATH=str(tmp_path / "served.sqlite"),
        MEMORY_RUNTIME_EMBEDDING_MODEL="none",
    )
    cli = Path(sys.executable).parent / "memory-runtime"
    proc = subprocess.Popen(
        [str(cli), "serve", "--config", str(ROOT / "config.example.yaml"), "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.05)  # poll interval, bounded by the deadline
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli-test", default_headers={"X-Memory-Session": "cli-served"}, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "served?"}])
        assert reply.choices[0].message.content == "echo: served?"
        sessions = httpx.get(f"http://127.0.0.1:{port}/memory/sessions", headers={"Authorization": "Bearer sk-cli-test"}).json()["data"]
        assert [s["id"] for s in sessions] == ["cli-served"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
