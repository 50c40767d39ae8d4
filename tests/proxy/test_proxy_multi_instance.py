"""Several instances, one memory: three `memory-runtime serve` processes on one PostgreSQL database
(the README's "Running several instances"), one session driven through all of them at once.

Checked after the load: no turn lost or stored twice, each reply right after its own question in
one linear transcript, the same answers from every instance, state extracted once per line even
when its requests race, an erase through one instance seen by the others on their next touch
(their in-process views included: nothing erased reaches a prompt), and a Responses API chain with
`store: false` hopping between instances. A caller's key names the same caller on every instance:
the identity secret lives in the shared database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from testkit.harness import Upstream
from testkit.load import CLIENT_KEY, MODEL, run_load, verify
from testkit.processes import Server, start_proxy_process

INSTANCES = 3
SESSION = "shared"


@pytest.fixture(scope="module")
def instances(upstream: Upstream, pg_module_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    folders = [tmp_path_factory.mktemp(f"instance{i}") for i in range(INSTANCES)]

    def start(folder: Path) -> Server:
        return start_proxy_process(folder, upstream.url, env={"MEMORY_RUNTIME_STORAGE_URL": pg_module_url})

    with ThreadPoolExecutor(INSTANCES) as pool:  # start-up (litellm import) in parallel
        servers = list(pool.map(start, folders))
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}  # the load's key: one caller, the same on every instance


def _get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, headers=AUTH, timeout=30)


def _chat(server: Server, text: str, budget: int = 4000, stream: bool = False) -> str:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}
    headers = {"X-Memory-Session": SESSION, "X-Memory-Budget": str(budget), **AUTH}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.text


def test_one_session_through_three_instances_at_once(instances: list[Server], upstream: Upstream) -> None:
    urls = [s.url for s in instances]
    # 12 clients, 4 per instance, one session, streaming and not, 72 requests in all.
    tally = asyncio.run(run_load(urls, clients=12, sessions=1, seconds=120, max_requests=72, budget=64, session_prefix=SESSION))
    assert tally.errors == {} and len(tally.completed) == 72
    assert {e.stream for e in tally.completed} == {True, False}
    session_id = f"{SESSION}-0"
    for server in instances:
        assert verify(server.url, tally.completed, [session_id]) == (0, 0)  # nothing lost, nothing twice
    exports = [_get(s, f"/memory/sessions/{session_id}/export").json() for s in instances]
    assert exports[1]["events"] == exports[0]["events"] == exports[2]["events"]
    events = exports[0]["events"]
    by_id = {e["id"]: e for e in events}
    # One linear transcript: every exchange is its question then its answer, in commit order.
    transcript = [by_id[t["event_id"]] for t in exports[0]["transcript"]]
    assert len(transcript) == 2 * len(tally.completed)
    for question, answer in zip(transcript[::2], transcript[1::2], strict=True):
        assert question["type"] == "user_message" and answer["type"] == "assistant_message"
        assert answer["content"] == "echo: " + question["content"]
    assert [t["event_id"] for t in exports[0]["transcript"]] == sorted(t["event_id"] for t in exports[0]["transcript"])


def test_state_from_racing_instances_and_erase_seen_everywhere(instances: list[Server], upstream: Upstream) -> None:
    subjects = [f"topic{i}" for i in range(6)]

    def decide(i: int) -> str:
        return _chat(instances[i % INSTANCES], f"Decision ({subjects[i]}): option {i} for {subjects[i]}", stream=i % 2 == 0)

    with ThreadPoolExecutor(len(subjects)) as pool:  # six decisions racing through three instances
        list(pool.map(decide, range(len(subjects))))
    _chat(instances[1], "Decision (topic0): option 99 replaces option 0")
    infos = [_get(s, f"/memory/sessions/{SESSION}").json() for s in instances]
    assert infos[0]["state"] == infos[1]["state"] == infos[2]["state"]
    decisions = {d["subject"]: d["text"] for d in infos[2]["state"]["decisions"]}
    assert sorted(decisions) == subjects and decisions["topic0"] == "option 99 replaces option 0"
    labels = [d["id"] for d in _get(instances[0], f"/memory/sessions/{SESSION}/export").json()["state"]["decisions"]]
    assert sorted(labels) == sorted(f"D{n}" for n in range(1, 8))  # each label once: no two instances raced to the same one

    # Every instance has a view of the session now. Erase it through the first one.
    assert httpx.delete(instances[0].url + f"/memory/sessions/{SESSION}", headers=AUTH, timeout=30).json()["deleted"] is True
    for server in instances[1:]:
        assert _get(server, f"/memory/sessions/{SESSION}").status_code == 404
        assert _get(server, f"/memory/sessions/{SESSION}/export").status_code == 404
        assert SESSION not in [s["id"] for s in _get(server, "/memory/sessions").json()["data"]]
    for n, server in enumerate(instances[1:]):
        _chat(server, f"fresh start {n}: which options did we pick?", budget=4000, stream=n == 0)
        forwarded = json.dumps(upstream.fake.last_chat().json()["messages"])
        assert "option" not in forwarded.replace("which options did we pick", ""), forwarded


def test_a_responses_chain_and_its_items_hop_between_instances(instances: list[Server], upstream: Upstream) -> None:
    """Response ids and items live in the shared database: a `previous_response_id` chain with
    `store: false` (the provider keeps nothing) continues on whichever instance the next request
    reaches, and an `item_reference` to a reply another instance stored is resolved from memory."""
    clients = [openai.OpenAI(base_url=s.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60) for s in instances]
    first = clients[0].responses.create(model=MODEL, input="Constraint: the code word is heliotrope.", store=False)
    previous = first.id
    for i in range(1, 5):
        client = clients[i % INSTANCES]
        if i % 2:
            with client.responses.create(model=MODEL, input=f"step {i}", previous_response_id=previous, store=False, stream=True) as events:
                (done,) = [e for e in events if e.type == "response.completed"]
            previous = done.response.id
        else:
            previous = client.responses.create(model=MODEL, input=f"step {i}", previous_response_id=previous, store=False).id
    last = clients[2].responses.create(model=MODEL, previous_response_id=previous, store=False, input=[
        {"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "which code word?"}])
    sent = upstream.fake.last_response_request().json()
    # The fake stored nothing (store: false): an id or a reference gone upstream would have been refused.
    assert "previous_response_id" not in sent and not any(i.get("type") == "item_reference" for i in sent["input"])
    users = [i["content"] for i in sent["input"] if i.get("role") == "user"]
    assert users == ["Constraint: the code word is heliotrope.", "step 1", "step 2", "step 3", "step 4", "which code word?"]
    assert any(i.get("id") == first.output[0].id for i in sent["input"])  # the referenced reply, from memory
    assert last.output_text == "echo: which code word?"
