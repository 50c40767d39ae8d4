"""Issue 21 item 8: what is stored as it came, and the option not to store images.

By default (the policy the README states) a data URL's base64 payload and a reasoning item's
`encrypted_content` are stored verbatim: redaction cannot read an image, and ciphertext must go back
byte for byte. With `store_images: false` nothing of an image reaches the database files, the
provider still gets the images of the request it answers, and a client that resends the image
still continues its conversation."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from memory.ingest.images import NOTE
from proxy.config import ProxyConfig
from testkit.harness import Upstream
from tests.hardening.inproc import Running, running

MODEL = "gpt-4o-mini"
KEY = {"Authorization": "Bearer sk-images-caller-" + "4" * 24}
# An "image" whose bytes carry a recognisable token: a secret shown in a screenshot, say.
PAYLOAD = base64.b64encode(b"\x89PNG fake image bytes qzscreenshotsecret " * 8).decode()
DATA_URL = f"data:image/png;base64,{PAYLOAD}"
LINK = "https://images.example/qzlinkedimage.png"


def _files_contain(db: Path, needle: str) -> bool:
    return any(needle.encode() in p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}},
                                         {"type": "image_url", "image_url": {"url": LINK}}]}


async def _chat(r: Running, messages: list[dict[str, Any]]) -> httpx.Response:
    return await r.http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages}, headers={**KEY, "X-Memory-Session": "pics"})


async def test_images_and_ciphertext_are_stored_verbatim_by_default(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    config = proxy_config()
    assert config.store_images is True
    async with running(config) as r:
        assert (await _chat(r, [_user("what is in this picture?")])).status_code == 200
        reasoning = {"type": "reasoning", "id": "rs_verbatim", "summary": [], "encrypted_content": "gAAAAB-qzciphertext-sk-" + "x" * 30}
        answered = await r.http.post("/v1/responses", headers={**KEY, "X-Memory-Session": "ciphers"},
                                     json={"model": MODEL, "input": [{"role": "user", "content": "hi"}, reasoning,
                                                                      {"role": "user", "content": "go on"}]})
        assert answered.status_code == 200, answered.text
    db = Path(config.storage_path)
    assert _files_contain(db, PAYLOAD) and _files_contain(db, LINK)
    assert _files_contain(db, reasoning["encrypted_content"])  # ciphertext must come back byte for byte


async def test_with_store_images_off_no_image_reaches_the_database(proxy_config: Callable[..., ProxyConfig], faulty: Upstream) -> None:
    config = proxy_config("upstreams: {retries: 0}\nstore_images: false\n")
    assert config.store_images is False
    async with running(config) as r:
        first = await _chat(r, [_user("what is in this picture? qzfirstquestion")])
        assert first.status_code == 200 and "x-memory-error" not in first.headers
        sent = faulty.fake.last_chat().body.decode()
        assert PAYLOAD in sent and LINK in sent  # the provider still sees the request's images
        history = [_user("what is in this picture? qzfirstquestion"), first.json()["choices"][0]["message"],
                   {"role": "user", "content": "and the colours?"}]
        second = await _chat(r, history)
        assert second.status_code == 200 and "x-memory-error" not in second.headers
        responses = await r.http.post("/v1/responses", headers={**KEY, "X-Memory-Session": "pics-responses"},
                                      json={"model": MODEL, "input": [{"role": "user", "content": [
                                          {"type": "input_text", "text": "describe qzresponsesimage"},
                                          {"type": "input_image", "image_url": DATA_URL}]}]})
        assert responses.status_code == 200, responses.text
        assert PAYLOAD in faulty.fake.last_response_request().body.decode()
        exported = (await r.http.get("/memory/sessions/pics/export", headers=KEY)).json()
        texts = [e["content"] for e in exported["events"]]
        assert "qzfirstquestion" in " ".join(texts) and "and the colours?" in texts  # one conversation, continued
        listed = (await r.http.get("/memory/sessions", headers=KEY)).json()["data"]
        assert sorted(s["id"] for s in listed) == ["pics", "pics-responses"]
        parts = [p for e in exported["events"] for p in e["payload"].get("parts", [])]
        assert {"type": "text", "text": NOTE} in parts
    db = Path(config.storage_path)
    assert not _files_contain(db, PAYLOAD) and not _files_contain(db, LINK)
    assert _files_contain(db, "qzresponsesimage")  # the text around the images is stored


def test_the_environment_turns_image_storage_off(proxy_config: Callable[..., ProxyConfig]) -> None:
    assert proxy_config(MEMORY_RUNTIME_STORE_IMAGES="false").store_images is False
