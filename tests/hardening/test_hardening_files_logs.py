"""What lands on disk: database, WAL, identity secret and log file are the owner's alone (0600);
debug logs carry no message content unless `log_content` is switched on as well; every stored
string of a message is redacted (extra fields, names, ids, URLs); and a host name that merely
starts with "127." is not loopback."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from testkit.processes import start_proxy_process
from proxy.cli.main import main as cli_main
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from tests.hardening.inproc import running

MODEL = "gpt-4o-mini"
KEY = "sk-files-logs-caller-" + "9" * 24
CANARY = "qzdebugcanary5521"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("log_content", [False, True], ids=["debug", "debug+content"])
def test_debug_logs_hold_content_only_with_the_second_switch_and_files_are_private(faulty: Upstream, tmp_path: Path, log_content: bool) -> None:
    own_log = tmp_path / "own.log"
    env = {"MEMORY_RUNTIME_LOG_FILE": str(own_log), "MEMORY_RUNTIME_LOG_CONTENT": "true" if log_content else "false"}
    proxy = start_proxy_process(tmp_path, faulty.url, log_level="debug", env=env)
    try:
        with httpx.Client(base_url=proxy.url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
            for stream in (False, True):
                body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": f"remember {CANARY} please"}]}
                answered = http.post("/v1/chat/completions", json=body, headers={"X-Memory-Session": "logged"})
                assert answered.status_code == 200 and "x-memory-error" not in answered.headers, answered.headers
            erased = http.delete("/memory/sessions/logged")
            assert erased.status_code == 200, (erased.text, proxy.log.read_text()[-2000:])
        db = tmp_path / "memory.sqlite"
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.identity"), own_log):
            assert _mode(path) == 0o600, path
    finally:
        proxy.stop()
    logged = own_log.read_text()
    assert '"level": "debug"' in logged  # it really logged at debug level
    assert (CANARY in logged) is log_content  # content only with log_content, and then even after the erase
    assert CANARY not in proxy.log.read_text()  # nothing went to stderr either
    assert KEY not in logged


def test_a_name_starting_with_127_is_not_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage_path: {tmp_path / 'm.sqlite'}\nembedding: {{model: none}}\n")
    assert cli_main(["serve", "--config", str(cfg), "--host", "127.attacker.example", "--port", "1"]) == 2
    assert "access_token" in capsys.readouterr().err
    assert not (tmp_path / "m.sqlite").exists()


async def test_extra_message_fields_names_ids_and_urls_are_redacted_through_the_proxy(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    google = "AIza" + "SyRedactThroughProxy0123456789abcdefg"
    short = "sk-abc123proxy456"
    messages = [
        {"role": "user", "name": f"user-{short}", "metadata": {"db": "postgres://app:Pr0xyPass1@db/x"},
         "content": [{"type": "text", "text": "see image"}, {"type": "image_url", "image_url": {"url": f"https://img.example/a.png?key={google}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{short}", "type": "function", "function": {"name": "run", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": f"call_{short}", "content": "done"},
        {"role": "user", "content": "and now?"},
    ]
    async with running(proxy_config()) as r:
        response = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages},
                                     headers={"Authorization": f"Bearer {KEY}", "X-Memory-Session": "fields"})
        assert response.status_code == 200 and "x-memory-error" not in response.headers
        export = (await r.http.get("/memory/sessions/fields/export", headers={"Authorization": f"Bearer {KEY}"})).text
    assert faulty.fake.last_chat().json()["messages"][0]["name"] == f"user-{short}"  # forwarded as sent: redaction is for storage
    for secret in (google, short, "Pr0xyPass1"):
        assert secret not in export
    assert "[REDACTED:google_api_key]" in export and "[REDACTED:url_password]" in export
