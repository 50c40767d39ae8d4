"""What ingest stores beside the messages: the pair probes, each message with the one before it
(across writes too), attached to both; none without an embedding model."""

from __future__ import annotations

from pathlib import Path

from memory.ingest.ingest import PAIR_CHARS
from memory.runtime import Runtime
from testkit.embedders import HashEmbedder
from testkit.raw_sql import run_sql

PROBES = ("SELECT p.text, c.text FROM chunks p JOIN chunks c ON c.id = p.parent_id "
          "WHERE p.session_id = 's' AND p.parent_id IS NOT NULL ORDER BY p.id, c.id")


def _event(role: str, text: str) -> dict[str, object]:
    return {"type": f"{role}_message", "payload": {"content": text}}


async def test_each_message_is_probed_with_the_one_before_it_across_writes(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    async with Runtime(path, embedder=HashEmbedder()) as rt:
        session = rt.session("s")
        await session.ingest_many([_event("user", "did you go to the support group?"), _event("assistant", "yes, last Tuesday!"),
                                   _event("user", "how was it?")])
        await session.ingest_many([_event("assistant", "x" * (PAIR_CHARS + 50)), _event("assistant", "and one more thing")])
    rows = run_sql("sqlite", str(path), [PROBES])[0]
    first = "did you go to the support group?\nyes, last Tuesday!"
    second = "yes, last Tuesday!\nhow was it?"
    third = "how was it?\n" + "x" * PAIR_CHARS  # the second write's first message pairs with the stored one
    fourth = "x" * PAIR_CHARS + "\nand one more thing"
    assert rows == [(first, "did you go to the support group?"), (first, "yes, last Tuesday!"),
                    (second, "yes, last Tuesday!"), (second, "how was it?"),
                    (third, "how was it?"), (third, "x" * (PAIR_CHARS + 50)),
                    (fourth, "x" * (PAIR_CHARS + 50)), (fourth, "and one more thing")]


async def test_no_pair_probes_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    async with Runtime(path, embedding_model="none") as rt:
        await rt.session("s").ingest_many([_event("user", "a question"), _event("assistant", "an answer")])
    assert run_sql("sqlite", str(path), [PROBES])[0] == []
