"""Security: API keys never reach any file the proxy writes; structured logs with a request id and
no message content; non-loopback binds need a token; sessions never see each other's text; erase
really erases (file bytes checked); secrets in content are redacted and listed in the manifest."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.cli.main import main as cli_main
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from testkit.processes import Server, start_proxy_process
from tests.hardening.inproc import running

MODEL = "gpt-4o-mini"
REAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CALLER_KEY = "sk-caller-hardening-4f9a2c7e1b3d5f60"
ENV_KEY = "sk-envfallback-hardening-8c1d3e5f7a9b"
GEMINI_CALLER_KEY = "AIza" + "CallerHardening0123456789abcdefghijk"  # built, so no key-shaped literal is committed
GEMINI_ENV_KEY = "AIza" + "EnvHardening9876543210zyxwvutsrqpon"
AUTH_KEYS = (CALLER_KEY, ENV_KEY, GEMINI_CALLER_KEY, GEMINI_ENV_KEY)
PASTED_SECRET = "sk-proj-PastedHardeningSecret0123456789abcdefXYZ"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _hits(folder: Path, needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in _files_under(folder):
        data = path.read_bytes()
        found += [f"{needle} in {path.name}" for needle in needles if needle.encode() in data]
    return found


def _chat(http: httpx.Client, text: str, *, model: str = MODEL, stream: bool = False, key: str | None = CALLER_KEY, session: str | None = None,
          extra: dict[str, str] | None = None) -> httpx.Response:
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **({"X-Memory-Session": session} if session else {}), **(extra or {})}
    return http.post("/v1/chat/completions", json={"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}, headers=headers)


# ---- keys ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debug_proxy(faulty: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path_factory.mktemp("keyscan")
    env = {"OPENAI_API_KEY": ENV_KEY, "GEMINI_API_KEY": GEMINI_ENV_KEY}
    proxy = start_proxy_process(folder, faulty.url, log_level="debug", env=env)
    yield proxy, folder
    proxy.stop()


def test_api_keys_are_never_written_to_db_wal_logs_or_exports(debug_proxy: tuple[Server, Path], faulty: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    proxy, folder = debug_proxy
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        for stream in (False, True):
            assert _chat(http, f"my key is {PASTED_SECRET}, keep it safe", stream=stream, session="keys").status_code == 200
            assert _chat(http, "no key on this one", stream=stream, key=None, session="keys-env").status_code == 200
            assert _chat(http, "gemini please", model="gemini-2.0-flash", stream=stream, key=GEMINI_CALLER_KEY, session="keys-gem").status_code == 200
            assert _chat(http, "gemini env key", model="gemini-2.0-flash", stream=stream, key=None, session="keys-gem-env").status_code == 200
        assert _chat(http, "upstream says no", model="status-401", session="keys").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {CALLER_KEY}"}).status_code == 200
        # Memory is scoped by caller: each session is exported as the key that made it.
        for session, key in (("keys", CALLER_KEY), ("keys-env", None), ("keys-gem", GEMINI_CALLER_KEY), ("keys-gem-env", None)):
            export = http.get(f"/memory/sessions/{session}/export", headers={"Authorization": f"Bearer {key}"} if key else {})
            assert export.status_code == 200
            (folder / f"export-{session}.json").write_bytes(export.content)
    # The keys really went upstream (so the scan below is meaningful), the right one to each place.
    sent = [r.headers.get("authorization", "") + r.headers.get("x-goog-api-key", "") for r in faulty.fake.requests]
    assert all(any(key in s for s in sent) for key in AUTH_KEYS), sent
    assert cli_main(["sessions", "list", "--storage", str(folder / "memory.sqlite")]) == 0
    owned = [s["id"] for s in json.loads(capsys.readouterr().out) if s["id"].endswith("/keys")]
    assert len(owned) == 1 and owned[0].startswith("k_")  # the operator sees the owner: a keyed hash, not the key
    assert cli_main(["sessions", "export", owned[0], "--storage", str(folder / "memory.sqlite")]) == 0
    (folder / "cli-export.json").write_text(capsys.readouterr().out)
    assert "[REDACTED:openai_key]" in (folder / "cli-export.json").read_text()

    assert (folder / "memory.sqlite-wal").stat().st_size > 0  # scanned while the WAL still holds pages
    assert _hits(folder, AUTH_KEYS) == []
    stored = [p for p in _files_under(folder) if p.name != "proxy.log"]  # debug logs may show content, by design
    assert [p.name for p in stored if PASTED_SECRET.encode() in p.read_bytes()] == []
    assert any(b"keep it safe" in p.read_bytes() for p in stored)  # the scan does see plain text
    proxy.stop()  # checkpoint and close, then scan what is left on disk once more
    assert _hits(folder, AUTH_KEYS) == []


# ---- logs ---------------------------------------------------------------------------------------


def test_logs_are_json_lines_with_request_ids_and_no_message_content(faulty: Upstream, tmp_path: Path) -> None:
    proxy = start_proxy_process(tmp_path, faulty.url, log_level="info")
    canary = "qzxlogcanary4471"
    try:
        with httpx.Client(base_url=proxy.url, timeout=30) as http:
            ok = _chat(http, f"hello {canary}", extra={"X-Request-Id": "client-chosen.id-1"})
            broken = _chat(http, f"stream {canary}", model="reset-2", stream=True)  # logs a warning
            failed_open = _chat(http, f"nul \u0000 {canary}")  # memory refuses NUL: fails open, logs a warning
            weird = _chat(http, "x", extra={"X-Request-Id": "not a token\t!"})
    finally:
        proxy.stop()
    # The proxy's own id: X-Memory-Request-Id always (X-Request-Id carries the provider's when it sent one).
    assert ok.headers["x-memory-request-id"] == "client-chosen.id-1"
    assert len(weird.headers["x-memory-request-id"]) == 32 and weird.headers["x-memory-request-id"] != "not a token\t!"
    assert failed_open.headers["x-memory-error"]
    lines = proxy.log.read_text().splitlines()
    assert lines[0].startswith("memory-runtime proxy on")  # the CLI's banner on stdout
    records = [json.loads(line) for line in lines[1:]]
    assert all(set(r) >= {"ts", "level", "logger", "message", "request_id"} for r in records)
    warnings = {r["request_id"]: r["message"] for r in records if r["level"] == "warning" and r["request_id"]}
    assert broken.headers["x-memory-request-id"] in warnings and failed_open.headers["x-memory-request-id"] in warnings
    assert canary not in proxy.log.read_text()
    assert _hits(tmp_path, (canary,)) == [f"{canary} in memory.sqlite"]  # stored, so the log really could have shown it


# ---- bind -----------------------------------------------------------------------------------------


def test_serve_refuses_a_non_loopback_bind_without_an_access_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage_path: {tmp_path / 'm.sqlite'}\nembedding: {{model: none}}\n")
    assert cli_main(["serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "access_token" in capsys.readouterr().err
    assert not (tmp_path / "m.sqlite").exists()  # refused before anything opened


# ---- isolation ----------------------------------------------------------------------------------

SESSIONS = 16


def _codeword(k: int) -> str:
    return f"qzcode{k:03d}vx"


def others(k: int) -> list[str]:
    return [_codeword(j) for j in range(SESSIONS) if j != k]


async def test_compiles_never_include_another_sessions_text(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    config = proxy_config(MEMORY_RUNTIME_EMBEDDING_MODEL=REAL_MODEL)
    async with running(config) as r:
        histories: dict[int, list[dict[str, Any]]] = {}
        for turn in range(3):
            for k in range(SESSIONS):
                history = histories.setdefault(k, [])
                history.append({"role": "user", "content": f"Team notes, part {turn}: the deploy codeword is {_codeword(k)}; rotate it weekly and keep the release train on Tuesdays."})
                response = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": history}, headers={"X-Memory-Session": f"iso-{k}", "X-Memory-Budget": "90"})
                assert response.status_code == 200 and "x-memory-error" not in response.headers
                history.append(response.json()["choices"][0]["message"])
                sent = faulty.fake.last_chat().body.decode()
                assert not [w for w in others(k) if w in sent], f"session {k} was sent another session's text"
        for k in range(SESSIONS):
            dry = await r.http.post(f"/memory/sessions/iso-{k}/compile", json={"user_message": "what is the deploy codeword of the team?", "budget_tokens": 400})
            assert dry.status_code == 200
            text = json.dumps(dry.json())
            assert _codeword(k) in text
            assert not [w for w in others(k) if w in text]
            manifest = (await r.http.get(f"/memory/sessions/iso-{k}/manifest")).text
            assert not [w for w in others(k) if w in manifest]


# ---- erase --------------------------------------------------------------------------------------

ERASE_TOKENS = ("qzerasetok1", "qzerasetok2", "qzerasetok3", "qzerasetok4")
KEEP_TOKEN = "qzkeeptoken9"


def _storage_hits(db: Path, needles: tuple[str, ...]) -> list[str]:
    return _hits(db.parent, needles)




@pytest.mark.parametrize("embedding_model", ["none", REAL_MODEL], ids=["lexical", "vectors"])
async def test_delete_endpoint_and_cli_erase_rows_index_vectors_and_file_bytes(
    proxy_config: Callable[..., ProxyConfig], capsys: pytest.CaptureFixture[str], embedding_model: str
) -> None:
    config = proxy_config(MEMORY_RUNTIME_EMBEDDING_MODEL=embedding_model)
    db = Path(config.storage_path)
    erase_msgs = [
        f"Decision: we use {ERASE_TOKENS[0]} for storage.",
        f"Here is the code:\n```python\ndef {ERASE_TOKENS[1]}():\n    return '{ERASE_TOKENS[2]}'\n```",
        f"Constraint: never mention {ERASE_TOKENS[3]} to customers.",
    ]
    async with running(config) as r:
        for session, texts in (("erase-me", erase_msgs), ("keep-me", [f"Decision: keep {KEEP_TOKEN} around.", "Thanks, that is all for now."])):
            history: list[dict[str, Any]] = []
            for text in texts:
                history.append({"role": "user", "content": text})
                response = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": history}, headers={"X-Memory-Session": session, "X-Memory-Budget": "60"})
                assert response.status_code == 200 and "x-memory-error" not in response.headers
                history.append(response.json()["choices"][0]["message"])
        # Vectors come from the background (a request embeds its question alone), which keeps embedding
        # the other session meanwhile: poll, bounded, for vectors of text only the erased session holds,
        # and check those (a total count races with the background).
        only_erased = (
            "SELECT DISTINCT e.content_hash FROM embeddings e JOIN chunks c ON c.content_hash = e.content_hash"
            " WHERE c.session_id = 'local/erase-me' AND e.content_hash NOT IN"
            " (SELECT content_hash FROM chunks WHERE session_id <> 'local/erase-me')"
        )
        deadline = time.monotonic() + 60
        while True:
            with closing(sqlite3.connect(db)) as raw:
                erased_vectors = [h for (h,) in raw.execute(only_erased)]
            if erased_vectors or embedding_model == "none" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert bool(erased_vectors) == (embedding_model != "none")
        assert _storage_hits(db, ERASE_TOKENS) != []  # visible before the erase
        deleted = await r.http.delete("/memory/sessions/erase-me")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True, deleted.text
        assert (await r.http.get("/memory/sessions/erase-me/export")).status_code == 404
        assert _storage_hits(db, ERASE_TOKENS) == []  # db, -wal and -shm, while the app still runs
        with closing(sqlite3.connect(db)) as raw:
            tables = [t for (t,) in raw.execute("SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
                                                  "WHERE m.type = 'table' AND p.name = 'session_id'")]
            assert all(raw.execute(f"SELECT count(*) FROM {t} WHERE session_id = 'local/erase-me'").fetchone()[0] == 0 for t in tables)
            assert raw.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (ERASE_TOKENS[0],)).fetchone()[0] == 0
            orphans = raw.execute("SELECT count(*) FROM embeddings WHERE content_hash NOT IN (SELECT content_hash FROM chunks)").fetchone()[0]
            assert orphans == 0
            for content_hash in erased_vectors:
                assert raw.execute("SELECT count(*) FROM embeddings WHERE content_hash = ?", (content_hash,)).fetchone()[0] == 0
        assert _storage_hits(db, (KEEP_TOKEN,)) != []  # the other session is untouched (and the scan can see text)
    assert _storage_hits(db, ERASE_TOKENS) == []
    # The CLI is the operator's: it names sessions by storage id (these were made with no key: "local").
    assert await asyncio.to_thread(cli_main, ["sessions", "delete", "local/keep-me", "--storage", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": "local/keep-me", "deleted": True}
    assert _storage_hits(db, (KEEP_TOKEN,)) == []


# ---- redaction ----------------------------------------------------------------------------------


async def test_secrets_in_content_are_redacted_and_listed_in_the_manifest(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    aws = "AKIA" + "HARDENINGTEST0X9"  # AKIA + 16 upper-case letters or digits
    async with running(proxy_config()) as r:
        history: list[dict[str, Any]] = [{"role": "user", "content": f"deploy with {PASTED_SECRET} and {aws} please"}]
        first = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": history}, headers={"X-Memory-Session": "redact"})
        history += [first.json()["choices"][0]["message"], {"role": "user", "content": "what did I ask you to deploy with? " + "context " * 40}]
        second = await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": history}, headers={"X-Memory-Session": "redact", "X-Memory-Budget": "120"})
        assert second.status_code == 200 and "x-memory-error" not in second.headers
        manifest = (await r.http.get("/memory/sessions/redact/manifest")).json()
        export = (await r.http.get("/memory/sessions/redact/export")).text
    assert manifest["redactions"].get("openai_key", 0) >= 1 and manifest["redactions"].get("aws_access_key", 0) >= 1
    sent_history = faulty.fake.last_chat().body.decode()
    assert "[REDACTED:openai_key]" in sent_history and PASTED_SECRET not in sent_history  # memory never re-sends it
    assert PASTED_SECRET not in export and aws not in export and "[REDACTED:aws_access_key]" in export
