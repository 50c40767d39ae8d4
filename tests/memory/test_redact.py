from __future__ import annotations

import pytest

from memory import create_runtime
from memory.redact import redact

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
