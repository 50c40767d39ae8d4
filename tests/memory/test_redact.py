from __future__ import annotations

import pytest

from memory import create_runtime
from memory.ingest.redact import redact, redacted

OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
GOOGLE = "AIza" + "SyD-abcdefghijklmnopqrstuvwxyz01234"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234567890abcdef\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "text,kind",
    [(f"key is {OPENAI} ok", "openai_key"), (f"gemini {GOOGLE}", "google_api_key"), (PEM, "private_key"),
     ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"), ("ghp_" + "x" * 36, "github_token"),
     ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456", "bearer_token"),
     ('DB_PASSWORD="hunter2hunter2"', "secret_assignment"),
     ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt")],
)
def test_shapes_are_redacted(text, kind):
    clean, found = redact(text)
    assert f"[REDACTED:{kind}]" in clean and found[kind] >= 1


def test_plain_text_untouched():
    text = "The password policy requires 12 characters; tokens expire hourly."
    assert redact(text) == (text, {})


async def test_secrets_never_stored_and_listed_in_manifest(tmp_path):
    path = tmp_path / "r.sqlite"
    async with create_runtime(storage_path=path, embedding_model="none") as rt:
        session = rt.session("s")
        msgs = [{"role": "user", "content": f"my key is {OPENAI}, keep it safe"}, {"role": "assistant", "content": "noted"}]
        await session.sync_messages(msgs)
        # Resending the same history matches the stored prefix (hashes are of what the client sent).
        assert (await session.sync_messages(msgs)).stored == 0
        await session.ingest({"type": "tool_output", "payload": {"source": "env", "content": f"GEMINI_API_KEY={GOOGLE}\n{PEM}"}})
        result = await session.compile(user_message="what key did I give you?", budget_tokens=4000)
        assert result.manifest["redactions"].get("openai_key") == 1
        assert OPENAI not in str(result.messages)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (OPENAI, GOOGLE, "MIIEowIBAAKCAQEA"):
        assert secret.encode() not in raw


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
HEX32 = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    "text,kind,secret",
    [
        ("short test key sk-abc123def456 here", "openai_key", "sk-abc123def456"),
        (f"my aws secret is {AWS_SECRET} ok", "aws_secret_key", AWS_SECRET),
        (f"AKIAIOSFODNN7EXAMPLE,{AWS_SECRET}", "aws_secret_key", AWS_SECRET),
        ("DATABASE_URL=postgres://admin:S3cretPass@db.internal:5432/app", "url_password", "S3cretPass"),
        ("clone https://user:pw12345@example.com/repo.git", "url_password", "pw12345"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "basic_credentials", "dXNlcjpwYXNzd29yZA=="),
        (f"the azure key is {HEX32}", "azure_key", HEX32),
        (f"api-key {HEX32}", "azure_key", HEX32),
        ("https://maps.example/staticmap?size=1x1&sig=abcdefgh12345&x=1", "url_secret", "abcdefgh12345"),
        ("https://x.example/img.png?token=t0k3nvalue99", "url_secret", "t0k3nvalue99"),
    ],
)
def test_context_shapes_are_redacted(text: str, kind: str, secret: str) -> None:
    clean, found = redact(text)
    assert secret not in clean and found[kind] == 1, clean


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",  # a git sha: hex, no upper case
        f"request id {HEX32} in the log",  # 32 hex with no key nearby
        "a basic understanding of things",
        "we use sk-learn for that",
        "ThisIsAVeryLongCamelCaseIdentifierNam12 is a name",  # 40 mixed characters, no AWS context
        "https://example.com/search?q=secret+plans&page=2",
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert redact(text) == (text, {})


async def test_every_stored_field_is_redacted(tmp_path):
    path = tmp_path / "fields.sqlite"
    short, url_key = "sk-abc123def456", GOOGLE
    messages = [
        {"role": "user", "name": f"bot-{short}", "metadata": {"deploy": f"postgres://app:Pa55word9@db/x", "nested": [OPENAI]},
         "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": f"https://img.example/a.png?key={url_key}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{short}", "type": "function", "function": {"name": "run", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": f"call_{short}", "content": "done"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo" + url_key}}]},
    ]
    async with create_runtime(storage_path=path, embedding_model="none") as rt:
        await rt.session("s").sync_messages(messages)
        export = await rt.session("s").export()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (short, url_key, "Pa55word9", OPENAI):
        assert secret.encode() not in raw.replace(("iVBORw0KGgo" + url_key).encode(), b""), secret
    tool_call = export["events"][1]["payload"]["tool_calls"][0]["id"]
    assert tool_call == export["events"][2]["payload"]["tool_call_id"]  # a redacted id still pairs its call and result
    assert ("iVBORw0KGgo" + url_key) in str(export["events"][3]["payload"])  # a data: URL payload is an image, kept as is


def test_redacted_is_redact_text_remembered() -> None:
    from_scratch = "deploy with api_key = 'sk-live-0123456789abcdefABCDEF' please"
    assert redacted(from_scratch) == redact(from_scratch)[0]
    assert "sk-live-0123456789abcdefABCDEF" not in redacted(from_scratch)
    assert redacted(from_scratch) is redacted(from_scratch)  # the second answer is the remembered one
    assert redacted("") == ""
