"""`memory-runtime stats` (totals and per-session cost, as tables or JSON), `sessions export` of
every session as JSON lines, and the progress bar the long commands draw on stderr."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from memory import Usage, create_runtime
from proxy.cli.main import main
from proxy.cli.progress import ProgressBar


async def _turns(path: Path) -> None:
    async with create_runtime(storage_path=path, embedding_model="none") as runtime:
        for sid, words, cached in (("stats-big", 120, 1024), ("stats-small", 10, 0)):
            session = runtime.session(sid)
            history: list[dict[str, str]] = []
            for i in range(3):
                history.append({"role": "user", "content": f"question {i} " + "word " * words})
                plan = await session.prepare_turn(history, 4000, "gpt-4o-mini")
                await session.commit_turn(plan, {"role": "assistant", "content": f"answer {i}"},
                                          Usage(prompt_tokens=plan.result.tokens, completion_tokens=5, cached_tokens=cached * i))
                history.append({"role": "assistant", "content": f"answer {i}"})
        await runtime.session("stats-idle").sync_messages([{"role": "user", "content": "nothing forwarded"}])


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    path = tmp_path / "stats.sqlite"
    asyncio.run(_turns(path))
    return path


def test_stats_as_json_and_as_tables(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json", "--storage", str(storage)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sessions"] == 3
    assert [s["session_id"] for s in report["by_session"]] == ["stats-big", "stats-small"]
    big = report["by_session"][0]
    assert big["turns"] == 3 and big["cached_tokens"] == 1024 * 3 and big["completion_tokens"] == 15
    assert report["totals"]["turns"] == 6 and report["totals"]["cached_tokens"] == 3072
    assert report["totals"]["forwarded_tokens"] == sum(s["forwarded_tokens"] for s in report["by_session"])
    assert main(["stats", "--storage", str(storage)]) == 0
    text = capsys.readouterr().out
    assert "sessions stored        3" in text and f"served from cache      {3072:,}" in text
    row = next(line for line in text.splitlines() if line.startswith("stats-big"))
    assert row.split()[1:3] == ["3", f"{big['sent_tokens']:,}"]
    assert main(["stats", "--session", "stats-big", "--storage", str(storage)]) == 0
    per_turn = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit() and "  " in line]
    assert [cols[0] for cols in per_turn] == ["1", "2", "3"]
    assert main(["stats", "--session", "no-such", "--storage", str(storage)]) == 1
    assert main(["stats", "--limit", "0", "--storage", str(storage)]) == 2


async def _give_owners(path: Path) -> None:
    async with create_runtime(storage_path=path, embedding_model="none") as runtime:
        assert await runtime.rename_session("stats-big", "k_alpha/stats-big")
        assert await runtime.rename_session("stats-small", "t_beta/stats-small")


def test_stats_of_one_owner(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_give_owners(storage))
    assert main(["stats", "--json", "--owner", "k_alpha", "--storage", str(storage)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sessions"] == 1 and [s["session_id"] for s in report["by_session"]] == ["k_alpha/stats-big"]
    assert report["totals"]["turns"] == 3 and report["totals"]["cached_tokens"] == 3072
    assert main(["stats", "--json", "--owner", "k_alph", "--storage", str(storage)]) == 0  # a whole principal, not a prefix of one
    assert json.loads(capsys.readouterr().out)["sessions"] == 0
    assert main(["stats", "--json", "--storage", str(storage)]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"] == 3
    for bad in (["--owner", "k_alpha/x"], ["--owner", ""], ["--owner", "k_alpha", "--session", "k_alpha/stats-big"]):
        assert main(["stats", *bad, "--storage", str(storage)]) == 2


def test_export_of_every_session_is_json_lines_with_a_progress_bar(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "export", "--storage", str(storage)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(x["session_id"] for x in lines) == ["stats-big", "stats-idle", "stats-small"]
    assert all(x["events"] for x in lines)
    assert "exporting [" in captured.err and "3/3 sessions" in captured.err and "exported 3 sessions" in captured.err


def test_provisioning_draws_its_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.cli.main.provision_default_model",
                        lambda progress: [progress(n, 7, f"step {n}") for n in range(1, 8)] and tmp_path)
    assert main(["provision-model"]) == 0
    err = capsys.readouterr().err
    assert "7/7 steps" in err and "step 7" in err


def test_the_progress_bar_redraws_on_a_terminal_and_logs_tenths_elsewhere() -> None:
    log = io.StringIO()
    with ProgressBar("copying", 100, "sessions", stream=log) as bar:
        for n in range(1, 101):
            bar.update(n, f"s{n}")
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and "1/100" in lines[0] and lines[-1].startswith("copying [" + "#" * 30 + "] 100/100 sessions") and lines[-1].endswith("s100")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    with ProgressBar("copying", 4, stream=tty) as bar:
        for n in range(1, 5):
            bar.advance()
    assert tty.getvalue().count("\r") == 4 and tty.getvalue().endswith("\n") and "4/4" in tty.getvalue()
