"""The `memory-runtime` CLI: sessions commands against a storage file, and `serve` as a real process
started with the documented config file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from memory import create_runtime
from memory.recall.embeddings import DEFAULT_MODEL, load_embedder
from proxy.cli.main import main
from testkit.harness import Upstream
from testkit.processes import clean_env, free_port, start_server

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


def test_provision_model_assembles_a_working_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # the command provisions inside the active environment
    assert main(["provision-model"]) == 0
    folder = Path(capsys.readouterr().out.strip().removeprefix("embedding model ready at "))
    assert folder.is_relative_to(tmp_path) and (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file()
    embedder = load_embedder(DEFAULT_MODEL, folder)
    assert embedder is not None and embedder.embed(["is this a model?"]).shape == (1, 384)


def test_serve_runs_the_proxy_with_the_example_config_on_the_given_host_and_port(upstream: Upstream, tmp_path: Path) -> None:
    port = free_port()
    env = {**clean_env(), "OPENAI_BASE_URL": upstream.url + "/v1", "MEMORY_RUNTIME_STORAGE_PATH": str(tmp_path / "served.sqlite"),
           "MEMORY_RUNTIME_EMBEDDING_MODEL": "none"}
    cli = Path(sys.executable).parent / "memory-runtime"
    cmd = [str(cli), "serve", "--config", str(ROOT / "config.example.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    served = start_server("memory-runtime serve", cmd, port, "/healthz", tmp_path / "serve.log", tmp_path, env, deadline_s=60)
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key="sk-cli-test", default_headers={"X-Memory-Session": "cli-served"}, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "served?"}])
        assert reply.choices[0].message.content == "echo: served?"
        sessions = httpx.get(served.url + "/memory/sessions", headers={"Authorization": "Bearer sk-cli-test"}).json()["data"]
        assert [s["id"] for s in sessions] == ["cli-served"]
    finally:
        served.stop()
    assert served.process.returncode == 0
    assert served.log.read_text().startswith(f"memory-runtime proxy on http://127.0.0.1:{port}/v1")


@pytest.mark.parametrize("storage_arg", ["{tmp}/a-file/under/it.sqlite", "{tmp}/folder", "postgresql://nobody@127.0.0.1:1/none"])
def test_a_storage_that_cannot_open_is_one_line_not_a_traceback(storage_arg: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder").chmod(0o755)
    assert main(["sessions", "list", "--storage", storage_arg.format(tmp=tmp_path)]) == 1
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755  # a folder named as the database keeps its mode
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("memory: embeddings are OFF")]
    assert len(err) == 1 and err[0].startswith("memory-runtime: cannot open memory store"), err
    assert "Traceback" not in err[0]


def test_serve_stops_at_a_misspelt_key_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget_token: 2000\n")
    cli = Path(sys.executable).parent / "memory-runtime"
    done = subprocess.run([str(cli), "serve", "--config", str(cfg), "--port", str(free_port())], capture_output=True, text=True,
                          timeout=120, env={**clean_env(), "MEMORY_RUNTIME_EMBEDDING_MODEL": "none"}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "memory-runtime: unknown config key 'budget_token' (did you mean 'budget_tokens'?)"


@pytest.mark.parametrize("argv,message", [
    (["--workers", "0"], "memory-runtime: server.workers must be from 1 to 64: 0"),
    (["--workers", "2", "--config", "{cfg}"], "memory-runtime: server.workers > 1 needs a storage file or storage_url"),
])
def test_serve_refuses_workers_it_cannot_run(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "memory.yaml"
    cfg.write_text("storage_path: ':memory:'\nembedding: {model: none}\n")
    assert main(["serve", "--port", str(free_port()), *[a.format(cfg=cfg) for a in argv]]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
