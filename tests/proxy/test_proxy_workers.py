"""`memory-runtime serve --workers 3` on the SQLite default: three processes on one port and one file,
one session driven through all of them at once (README "Several worker processes").

Checked after the load, as for several instances on PostgreSQL (`test_proxy_multi_instance.py`): no
turn lost or stored twice, each reply right after its own question in one linear transcript in
commit order, state extracted once per line when its requests race, and an erase answered by one
worker seen by the others on their next touch. That the load did reach several workers is checked
too (their CPU time), so a run served by one process cannot pass for a run served by three."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.cli.main import build_parser
from testkit.harness import Upstream
from testkit.load import CLIENT_KEY, MODEL, run_load, verify
from testkit.processes import Server, child_cpu_seconds, start_proxy_process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker CPU is read from /proc")

WORKERS = 3
SESSION = "shared"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def served(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("workers")
    server = start_proxy_process(folder, upstream.url, workers=WORKERS)
    try:
        yield server
    finally:
        server.stop()
    assert server.process.returncode == 0, (folder / "proxy.log").read_text()  # every worker stopped cleanly


def _chat(server: Server, text: str, stream: bool = False) -> str:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
    headers = {"X-Memory-Session": SESSION, "X-Memory-Budget": "4000", **AUTH}
    response = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.text


def test_the_workers_are_processes_of_their_own(served: Server, tmp_path: Path) -> None:
    workers = [pid for pid, _ in child_cpu_seconds(served.process.pid).items()]
    assert len(workers) >= WORKERS  # the workers, and multiprocessing's resource tracker
    assert (Path(served.log).parent / "memory.sqlite-locks").exists()  # the sessions' lock file beside the database


def test_one_session_through_three_workers_at_once(served: Server) -> None:
    before = child_cpu_seconds(served.process.pid)
    # 12 clients, one session, streaming and not, 240 requests in all, on connections spread over the workers
    # (without the cross-process lock, concurrent commits overwrite each other's transcript positions: 330
    # of 600 entries were left in a run of 300 with the lock taken out).
    tally = asyncio.run(run_load(served.url, clients=12, sessions=1, seconds=120, max_requests=240, budget=64, session_prefix=SESSION))
    assert tally.errors == {} and len(tally.completed) == 240
    after = child_cpu_seconds(served.process.pid)
    busy = [pid for pid in after if after[pid] - before.get(pid, 0.0) > 0.2]
    assert len(busy) >= 2, (before, after)  # the load reached several processes
    session_id = f"{SESSION}-0"
    assert verify(served.url, tally.completed, [session_id]) == (0, 0)  # nothing lost, nothing twice
    export = httpx.get(served.url + f"/memory/sessions/{session_id}/export", headers=AUTH, timeout=30).json()
    by_id = {e["id"]: e for e in export["events"]}
    transcript = [by_id[t["event_id"]] for t in export["transcript"]]
    assert len(transcript) == 2 * len(tally.completed)
    for question, answer in zip(transcript[::2], transcript[1::2], strict=True):
        assert question["type"] == "user_message" and answer["type"] == "assistant_message"
        assert answer["content"] == "echo: " + question["content"]
    assert [t["event_id"] for t in export["transcript"]] == sorted(t["event_id"] for t in export["transcript"])


def test_state_from_racing_workers_and_an_erase_seen_by_all(served: Server, upstream: Upstream) -> None:
    subjects = [f"topic{i}" for i in range(6)]

    def decide(i: int) -> str:
        return _chat(served, f"Decision ({subjects[i]}): option {i} for {subjects[i]}", stream=i % 2 == 0)

    with ThreadPoolExecutor(len(subjects)) as pool:  # six decisions racing, each on a connection of its own
        list(pool.map(decide, range(len(subjects))))
    _chat(served, "Decision (topic0): option 99 replaces option 0")
    info = httpx.get(served.url + f"/memory/sessions/{SESSION}", headers=AUTH, timeout=30).json()
    decisions = {d["subject"]: d["text"] for d in info["state"]["decisions"]}
    assert sorted(decisions) == subjects and decisions["topic0"] == "option 99 replaces option 0"
    export = httpx.get(served.url + f"/memory/sessions/{SESSION}/export", headers=AUTH, timeout=30).json()
    assert sorted(d["id"] for d in export["state"]["decisions"]) == sorted(f"D{n}" for n in range(1, 8))  # no label taken twice

    # Every worker that served the session has a view of it. Erase it through whichever answers, then
    # ask on fresh connections (each may land on any worker): nothing erased reaches a prompt.
    assert httpx.delete(served.url + f"/memory/sessions/{SESSION}", headers=AUTH, timeout=30).json()["deleted"] is True
    for n in range(2 * WORKERS):
        _chat(served, f"fresh start {n}: which options did we pick?", stream=n % 2 == 0)
        forwarded = json.dumps(upstream.fake.last_chat().json()["messages"])
        assert "option" not in forwarded.replace("which options did we pick", ""), forwarded


def test_the_readme_section_command_is_one_serve_accepts() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Several worker processes on one machine") : readme.index("## Benchmarks")]
    (command,) = [line.strip() for line in section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines() if line.strip()]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.workers) == ("serve", 2)
    assert "tests/proxy/test_proxy_workers.py" in section and "memory/store/locks.py" in section


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(served: Server) -> None:
    tracker_and_workers = child_cpu_seconds(served.process.pid)
    victim = max(tracker_and_workers, key=lambda pid: tracker_and_workers[pid])  # a worker (the tracker does next to nothing)
    os.kill(victim, signal.SIGKILL)  # no clean exit: whatever it held, the kernel releases
    deadline = time.monotonic() + 120
    while set(child_cpu_seconds(served.process.pid)) == set(tracker_and_workers) - {victim} or victim in child_cpu_seconds(served.process.pid):
        assert time.monotonic() < deadline, "no worker started in place of the killed one"
        assert served.process.poll() is None, "serve stopped instead of replacing the worker"
        time.sleep(0.05)  # poll interval, bounded by the deadline above
    for n in range(2 * WORKERS):  # fresh connections: whichever worker takes them answers
        assert json.loads(_chat(served, f"after the kill {n}"))["choices"][0]["message"]["content"] == f"echo: after the kill {n}"
