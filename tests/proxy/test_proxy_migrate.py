"""`memory-runtime migrate --from FILE --to postgresql://...`: every session copied with all it holds,
counts verified, the same compiled prompts afterwards; running it again copies nothing twice,
resumes after a partial run, and never overwrites a session that changed in the target."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from memory import create_runtime
from memory.recall.embeddings import Embedder
from memory.turn.usage import Usage
from proxy.cli.main import main
from proxy.config import load_config
from proxy.access.identity import Identities, identity_secret
from testkit.raw_sql import run_sql

NAMES = ("alpha", "team/beta", "gamma", "delta")
QUESTIONS = ["what is the login timeout and which database did we pick?", "which region was asked about?", "hello?"]


async def _fill(path: Path, embedder: Embedder) -> None:
    async with create_runtime(storage_path=path, embedder=embedder) as runtime:
        alpha = runtime.session("alpha")
        await alpha.ingest({"type": "user_message", "payload": {"content": "Decision: database - PostgreSQL\nOpen: which region?"}})
        await alpha.ingest({"type": "file", "payload": {"source": "app/auth.py", "content": "def login(user):\n    timeout = 30\n"}})
        await alpha.ingest({"type": "file", "payload": {"source": "app/auth.py", "content": "def login(user):\n    timeout = 45\n"}})
        await alpha.observe(assistant_text="Decision: database - SQLite for now\nResolved: Q1\n```python\nprint('hello world')\n```")
        await alpha.compile(user_message=QUESTIONS[0], budget_tokens=120, remember=True)
        beta = runtime.session("team/beta")
        await beta.sync_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "next?"}])
        await runtime.session("gamma").ingest({"type": "snippet", "payload": {"source": "x.py", "content": "x = 1", "pinned": True}})
        # Turns as the proxy records them: frames, turn records with provider usage, a retry.
        delta = runtime.session("delta")
        history: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
        for i in range(5):
            asked = history + [{"role": "user", "content": f"Question {i}: " + "tell me about the cache layer " * 8}]
            plan = await delta.prepare_turn(asked, budget_tokens=260)
            reply = {"role": "assistant", "content": f"Answer {i}: the cache layer evicts after {i + 1} minutes."}
            # Responses API turns also keep the response id and the reply's items.
            await delta.commit_turn(plan, reply, Usage(prompt_tokens=200, cached_tokens=128 * (i % 2), completion_tokens=12),
                                    response_id=f"resp_{i}", items=[(f"msg_{i}", {"type": "message", "id": f"msg_{i}", "role": "assistant"})])
            history = asked + [reply]
        await delta.commit_turn(await delta.prepare_turn(history[:-1], budget_tokens=260), history[-1], Usage(prompt_tokens=200))
        for name in NAMES:
            await runtime.session(name).flush()


def _by_order(export: dict[str, Any]) -> dict[str, Any]:
    """An export with ids replaced by positions: the target allocates its own ids."""
    events = {e["id"]: i for i, e in enumerate(export["events"])}
    artifacts = {a["id"]: i for i, a in enumerate(export["artifacts"])}
    items = {s["id"]: i for i, s in enumerate(export["state_items"])}
    frames = {f["id"]: i for i, f in enumerate(export["frames"])}
    drop = {"id", "session_id", "created_at"}
    return {
        "events": [{**{k: v for k, v in e.items() if k not in drop}, "artifact_id": artifacts.get(e["artifact_id"]),
                    "parent_event_id": events.get(e["parent_event_id"])} for e in export["events"]],
        "artifacts": [{**{k: v for k, v in a.items() if k not in drop}, "previous_id": artifacts.get(a["previous_id"]),
                       "first_event_id": events.get(a["first_event_id"]), "last_event_id": events.get(a["last_event_id"])}
                      for a in export["artifacts"]],
        "state_items": [{**{k: v for k, v in s.items() if k not in drop}, "event_id": events.get(s["event_id"]),
                         "superseded_by": items.get(s["superseded_by"]), "source_events": [events[e] for e in s["source_events"]]}
                        for s in export["state_items"]],
        "transcript": [{**t, "session_id": None, "event_id": events.get(t["event_id"])} for t in export["transcript"]],
        "frames": [{k: v for k, v in f.items() if k not in drop} for f in export["frames"]],
        "turns": [{**{k: v for k, v in t.items() if k not in drop}, "frame_id": frames.get(t["frame_id"])} for t in export["turns"]],
        "responses": [{k: v for k, v in r.items() if k != "session_id"} for r in export["responses"]],
        "response_items": [{k: v for k, v in r.items() if k != "session_id"} for r in export["response_items"]],
    }


async def _snapshot(embedder: Embedder, **where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with create_runtime(embedder=embedder, **where) as runtime:
        for name in NAMES:
            session = runtime.session(name)
            compiled = [(await session.compile(user_message=q, budget_tokens=100)).messages for q in QUESTIONS]
            out[name] = (_by_order(await session.export()), compiled, await session.last_manifest(), await session.usage())
    return out


def _migrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["migrate", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


async def _fts_counters(pg_url: str) -> list[Any]:
    """Sessions whose BM25 counters, per-lexeme row counts or postings differ from what their chunks hold."""
    async with create_runtime(storage_url=pg_url, embedding_model="none") as runtime:
        store: Any = runtime.store
        return await store._rows(
            "SELECT s.id FROM sessions s WHERE s.fts_docs <> (SELECT count(*) FROM chunks c WHERE c.session_id = s.id) "
            "OR s.fts_tokens <> (SELECT coalesce(sum(doc_len), 0) FROM chunks c WHERE c.session_id = s.id) "
            "OR EXISTS (SELECT u.lexeme, count(*) FROM chunks c, unnest(c.tsv) AS u WHERE c.session_id = s.id AND left(u.lexeme, 1) <> '#' "
            "GROUP BY u.lexeme EXCEPT SELECT lexeme, docs FROM fts_terms WHERE session_id = s.id) "
            "OR EXISTS (SELECT 1 FROM fts_terms t WHERE t.session_id = s.id AND t.docs = 0) "
            "OR EXISTS ((SELECT u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u "
            "WHERE c.session_id = s.id AND left(u.lexeme, 1) <> '#') "
            "UNION ALL SELECT lexeme, chunk_id, tf, doc_len FROM fts_postings WHERE session_id = s.id "
            "EXCEPT ((SELECT u.lexeme, c.id, cardinality(u.positions), c.doc_len FROM chunks c, unnest(c.tsv) AS u "
            "WHERE c.session_id = s.id AND left(u.lexeme, 1) <> '#') "
            "INTERSECT SELECT lexeme, chunk_id, tf, doc_len FROM fts_postings WHERE session_id = s.id))")


def test_migrate_copies_everything_and_is_idempotent_and_resumable(
    tmp_path: Path, pg_url: str, real_embedder: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "memory.sqlite"
    asyncio.run(_fill(source, real_embedder))
    code, summary, err = _migrate(capsys, "--from", str(source), "--to", pg_url)
    assert code == 0, summary
    assert summary | {"conflicts": None} == {"sessions": 4, "copied": 4, "already_there": 0, "conflicts": None, "count_mismatches": [],
                                             "missing_vectors": 0, "verified": True}
    assert "4/4 sessions" in err
    before = asyncio.run(_snapshot(real_embedder, storage_path=str(source)))
    after = asyncio.run(_snapshot(real_embedder, storage_url=pg_url))
    assert len(before["delta"][0]["frames"]) >= 1 and len(before["delta"][0]["turns"]) == 6
    assert len(before["delta"][0]["responses"]) == len(before["delta"][0]["response_items"]) == 5
    assert after == before  # rows, state, transcript, frames, turns, usage, manifest, and the prompts compiled from them
    assert asyncio.run(_fts_counters(pg_url)) == []  # the full-text counters as the copied chunks hold them

    assert main(["sessions", "list", "--storage", pg_url]) == 0  # the CLI reads PostgreSQL by URL too
    assert sorted(s["id"] for s in json.loads(capsys.readouterr().out)) == sorted(NAMES)
    reports = []
    for storage in (str(source), pg_url):  # the cost report reads the same from either store
        assert main(["stats", "--json", "--storage", storage]) == 0
        overall = json.loads(capsys.readouterr().out)
        assert main(["stats", "--json", "--session", "delta", "--storage", storage]) == 0
        reports.append((overall, json.loads(capsys.readouterr().out)))
    assert reports[1] == reports[0] and reports[0][0]["totals"]["turns"] == 6

    # Again: nothing copied twice. Then a session lost in the target (a run cut short) comes back.
    code, summary, _ = _migrate(capsys, "--from", str(source), "--to", pg_url)
    assert (code, summary["copied"], summary["already_there"]) == (0, 0, 4)

    async def lose_and_change() -> None:
        async with create_runtime(storage_url=pg_url, embedding_model="none") as runtime:
            assert await runtime.delete_session("gamma")
            await runtime.session("team/beta").ingest({"type": "user_message", "payload": {"content": "written on PostgreSQL"}})

    asyncio.run(lose_and_change())
    code, summary, _ = _migrate(capsys, "--from", str(source), "--to", pg_url)
    assert code == 1  # the changed session is reported, never overwritten
    assert (summary["copied"], summary["already_there"], summary["conflicts"]) == (1, 2, ["team/beta"])
    again = asyncio.run(_snapshot(real_embedder, storage_url=pg_url))
    assert again["gamma"] == before["gamma"] and again["alpha"] == before["alpha"]
    assert again["team/beta"][0]["events"][-1]["content"] == "written on PostgreSQL"


def test_migrate_leaves_view_snapshots_behind(tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A view snapshot is derived and holds only at the generation it was taken at; the copy gives
    the session a new one, so the snapshot would never be read: it is not copied."""
    source = tmp_path / "memory.sqlite"

    async def fill() -> None:
        async with create_runtime(storage_path=source, embedding_model="none") as runtime:
            await runtime.session("s").ingest({"type": "user_message", "payload": {"content": "a snapshot of this"}})
            generation = (await runtime.store.high_water("s"))[2]
            async with runtime.store.transaction() as tx:
                assert await tx.save_view_snapshot("s", generation, "", "test", (1, 0, 1), b"view")

    asyncio.run(fill())
    code, summary, _ = _migrate(capsys, "--from", str(source), "--to", pg_url)
    assert (code, summary["copied"], summary["verified"]) == (0, 1, True)
    assert run_sql("sqlite", str(source), ["SELECT count(*) FROM view_snapshots"]) == [[(1,)]]
    assert run_sql("postgres", pg_url, ["SELECT count(*) FROM view_snapshots", "SELECT count(*) FROM events"]) == [[(0,)], [(1,)]]


def test_migrate_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--from", str(tmp_path / "x.sqlite")]) == 2  # no target anywhere
    assert "--to postgresql://" in capsys.readouterr().err
    code = main(["migrate", "--from", str(tmp_path / "missing.sqlite"), "--to", f"postgresql://u@/db?host={tmp_path}"])
    assert code == 1 and "no SQLite memory file" in capsys.readouterr().err


def test_identity_command_reads_the_secret_instances_share(pg_url: str, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-identity-test-key\n"))
    assert main(["identity", "--storage", pg_url]) == 2  # no proxy has run on this database: no secret yet
    assert "start the proxy once" in capsys.readouterr().err

    async def created() -> bytes:
        async with create_runtime(storage_url=pg_url, embedding_model="none") as runtime:
            return await identity_secret(load_config(env={"MEMORY_RUNTIME_STORAGE_URL": pg_url}), runtime.store)

    secret = asyncio.run(created())  # what the first proxy does at start
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-identity-test-key\n"))
    assert main(["identity", "--storage", pg_url]) == 0
    assert capsys.readouterr().out.strip() == Identities(secret).principal_for_key("sk-identity-test-key")
