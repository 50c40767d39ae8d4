"""The replay behind section H: real coding-agent tool loops through the running proxy (issue 18).

Every trajectory (`agent_traces`) is replayed as the agent sent it: before step i, the whole
message list `messages[:i]` with the `bash` tool declared, to a real `memory-runtime serve` process
(default configuration and embedding model) with `X-Memory-Session` (one session per trajectory and
budget) and `X-Memory-Budget`, in front of the strict fake upstream (it rejects what OpenAI rejects
and caches prompt prefixes by OpenAI's rule); the fake answers with the agent's recorded step i.
The same request also goes straight to the fake, right before or after (the order alternates),
under its own key: its usage is *resending everything* priced by the same cache rule, and the pair
gives the proxy's added latency. What the fake received from the proxy is scored for identifier
recall (`agent_metrics`), next to the clearing window computed on the same step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from memory.recall.tokens import get_counter
from testkit.harness import serve_upstream
from testkit.processes import await_litellm, start_proxy_process
from testkit.prompt_cache import PromptCache
from testkit.script import Reply, ToolCall
from testkit.upstream import FakeUpstream

from .agent_metrics import carried, clearing_window, identifiers, message_texts, needs_by_step, prompt_lines
from .agent_traces import BASH_TOOL, Trajectory
from .common import MODEL, progress

__all__ = ["BUDGETS", "StepRecord", "AgentsRun", "run_agents", "run_jobs", "reply_of", "save_run", "load_run", "load_journal"]

BUDGETS = (8000, 16000, 32000)
PROXY_KEY = "sk-bench-agents-through-the-proxy"
TOOLS = [BASH_TOOL]


@dataclass(frozen=True)
class StepRecord:
    """One request of one trajectory at one budget."""

    trajectory: str
    split: str
    budget: int
    step: int
    sent: int  # resending everything: the agent's own prompt, as the provider counts it
    sent_cached: int
    forwarded: int  # the prompt the proxy forwarded, as the provider counts it
    cached: int
    status: int  # the proxy's answer (400: the strict fake rejected what the proxy forwarded)
    mode: str  # X-Memory-Mode
    direct_ms: float
    proxy_ms: float
    needed: int  # identifiers the step needs from earlier outputs
    carried: int  # ... that the forwarded prompt carried with their context
    window: int  # the clearing window's prompt, as the provider counts it
    window_cached: int
    window_carried: int
    window_over: bool  # the latest output alone put the clearing window over the budget
    named: int = -1  # needed identifiers the forwarded prompt holds anywhere, context or not (-1: not recorded)


@dataclass(frozen=True)
class AgentsRun:
    budgets: tuple[int, ...]
    trajectories: tuple[tuple[str, str, int], ...]  # (name, split, steps replayed)
    steps: tuple[StepRecord, ...]
    embedding_model: str
    seconds: float


def reply_of(message: dict[str, Any]) -> Reply:
    """The fake's answer: the agent's recorded step, its tool-call arguments byte for byte."""
    calls = tuple(ToolCall(c["function"]["name"], {}, id=c["id"], raw_arguments=c["function"]["arguments"])
                  for c in message.get("tool_calls") or [])
    return Reply(text=message.get("content"), tool_calls=calls)


def _usage(response: httpx.Response) -> tuple[int, int]:
    usage = response.json()["usage"]
    return int(usage["prompt_tokens"]), int(usage["prompt_tokens_details"]["cached_tokens"])


class _Replay:
    """One trajectory at one budget: the proxy session, the direct caller, the clearing window."""

    def __init__(self, http: httpx.Client, fake: FakeUpstream, upstream_url: str, proxy_url: str, trajectory: Trajectory,
                 budget: int) -> None:
        self.http, self.fake, self.trajectory, self.budget = http, fake, trajectory, budget
        session = f"agents-{trajectory.name}-b{budget}"
        self.proxy_url = proxy_url + "/v1/chat/completions"
        self.direct_url = upstream_url + "/v1/chat/completions"
        self.proxy_headers = {"Authorization": f"Bearer {PROXY_KEY}", "X-Memory-Session": session, "X-Memory-Budget": str(budget)}
        # Its own key: its own prompt-cache namespace, as if the agent called the provider itself.
        self.direct_headers = {"Authorization": f"Bearer sk-bench-agents-direct-{session}"}
        self.window_cache = PromptCache()
        self.counter = get_counter(MODEL)

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str], reply: Reply) -> tuple[float, httpx.Response]:
        """(milliseconds, response). Once more when the server closed the kept-alive connection as
        the request went out (uvicorn drops idle connections after 5 s; a loaded machine gets there)."""
        for attempt in (1, 2):
            self.fake.enqueue(reply)
            start = time.perf_counter()
            try:
                response = self.http.post(url, json=body, headers=headers)
            except httpx.RemoteProtocolError:
                if attempt == 2:
                    raise
                continue
            finally:
                self.fake.discard_replies()
            return (time.perf_counter() - start) * 1000.0, response
        raise AssertionError("unreachable")

    def step(self, i: int, sizes: Sequence[int], needs: Any) -> StepRecord:
        messages = list(self.trajectory.messages[:i])
        body = {"model": MODEL, "messages": messages, "tools": TOOLS}
        reply = reply_of(self.trajectory.messages[i])
        timed: dict[str, tuple[float, httpx.Response]] = {}
        order = ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")
        for path in order:
            url, headers = (self.direct_url, self.direct_headers) if path == "direct" else (self.proxy_url, self.proxy_headers)
            timed[path] = self._post(url, body, headers, reply)
        direct_ms, direct = timed["direct"]
        proxy_ms, through = timed["proxy"]
        if direct.status_code != 200:
            raise RuntimeError(f"{self.trajectory.name} step {i}: the fake rejected the agent's own request: {direct.text[:300]}")
        seen = [r for r in self.fake.take_requests() if r.headers.get("authorization") == self.proxy_headers["Authorization"]]
        forwarded_messages: list[dict[str, Any]] = (seen[-1].json().get("messages") or []) if seen else []
        if through.status_code == 200:
            forwarded, cached = _usage(through)
        else:  # rejected (or failed): what went up still counts as sent, none of it cached
            forwarded, cached = (len(self.fake.cache.render(forwarded_messages, TOOLS)), 0) if seen else (0, 0)
        sent, sent_cached = _usage(direct)
        window = clearing_window(messages, self.budget, self.counter, sizes[:i])
        window_hit = self.window_cache.lookup("window", self.window_cache.render(window, TOOLS))
        window_over = self.counter.messages_tokens([]) + sum(self.counter.message_tokens(m) for m in window) > self.budget
        step_needs = needs.get(i)
        needed = len(step_needs.needed) if step_needs else 0
        return StepRecord(
            self.trajectory.name, self.trajectory.split, self.budget, i, sent, sent_cached, forwarded, cached, through.status_code,
            through.headers.get("x-memory-mode", ""), direct_ms, proxy_ms, needed,
            carried(step_needs, prompt_lines(forwarded_messages)) if needed else 0,
            window_hit.prompt_tokens, window_hit.cached_tokens,
            carried(step_needs, prompt_lines(window)) if needed else 0, window_over,
            len(set(step_needs.needed) & identifiers("\n".join(t for m in forwarded_messages for t in message_texts(m)))) if needed else 0,
        )


def _warm_up(http: httpx.Client, fake: FakeUpstream, upstream_url: str, proxy_url: str) -> None:
    """One small exchange each way before the replay (not measured): the first request of a fresh
    proxy pays its start-up (connections, tokenizer), which is no step's cost."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "warm-up"}], "tools": TOOLS}
    for url, headers in ((upstream_url, {"Authorization": "Bearer sk-bench-agents-warm-up"}),
                         (proxy_url, {"Authorization": f"Bearer {PROXY_KEY}", "X-Memory-Session": "agents-warm-up"})):
        fake.enqueue(Reply(text="ready"))
        http.post(url + "/v1/chat/completions", json=body, headers=headers).raise_for_status()
    await_litellm(http, proxy_url, PROXY_KEY)
    fake.take_requests()
    fake.cache.reset()


def run_agents(trajectories: Sequence[Trajectory], folder: Path, budgets: Sequence[int] = BUDGETS, max_steps: int | None = None,
               embedding_model: str | None = None, show_progress: bool = True) -> AgentsRun:
    """Replay `trajectories` (their first `max_steps` steps, or all) at each budget through one
    `memory-runtime serve` process (`embedding_model=None`: the default model) in front of one fake."""
    return run_jobs([(t, b) for t in trajectories for b in budgets], folder, max_steps, embedding_model, show_progress)


def run_jobs(jobs: Sequence[tuple[Trajectory, int]], folder: Path, max_steps: int | None = None, embedding_model: str | None = None,
             show_progress: bool = True, journal: Path | None = None) -> AgentsRun:
    """Replay each (trajectory, budget) of `jobs`, in order, through one `serve` process in front
    of one fake; every pair is its own session. `journal`: a JSON-lines file that gets each pair's
    step records as soon as the pair is done (a run cut short keeps what it finished)."""
    started = time.perf_counter()
    upstream = serve_upstream(FakeUpstream(keep_requests=True))
    records: list[StepRecord] = []
    replayed: dict[str, tuple[str, str, int]] = {}
    counter = get_counter(MODEL)
    try:
        # A shared machine under load can take minutes to start a process that loads the model.
        proxy = start_proxy_process(folder, upstream.url, embedding_model=embedding_model, deadline_s=300.0)
        try:
            with httpx.Client(timeout=300.0) as http:
                _warm_up(http, upstream.fake, upstream.url, proxy.url)
                for trajectory, budget in jobs:
                    needs = needs_by_step(trajectory.messages)
                    sizes = [counter.message_tokens(m) for m in trajectory.messages]
                    steps = [i for i in trajectory.steps() if trajectory.is_step(i)][:max_steps]
                    replayed[trajectory.name] = (trajectory.name, trajectory.split, len(steps))
                    replay = _Replay(http, upstream.fake, upstream.url, proxy.url, trajectory, budget)
                    done = [replay.step(i, sizes, needs) for i in progress(steps, f"{trajectory.name} @{budget:,}", enabled=show_progress)]
                    records += done
                    if journal is not None:
                        with journal.open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"trajectory": [trajectory.name, trajectory.split, len(steps)],
                                                 "steps": [asdict(r) for r in done]}) + "\n")
                    upstream.fake.cache.reset()  # its namespaces were this replay's alone: free them
        finally:
            proxy.stop()
    finally:
        upstream.served.stop()
    budgets = tuple(dict.fromkeys(b for _, b in jobs))
    return AgentsRun(budgets, tuple(replayed.values()), tuple(records), embedding_model or "sentence-transformers/all-MiniLM-L6-v2",
                     time.perf_counter() - started)


def save_run(run: AgentsRun, meta: dict[str, Any], path: Path) -> None:
    """The run's step records and how it was made, as JSON (to render the section again later)."""
    payload = {"meta": meta, "budgets": list(run.budgets), "trajectories": [list(t) for t in run.trajectories],
               "embedding_model": run.embedding_model, "seconds": run.seconds, "steps": [asdict(s) for s in run.steps]}
    path.write_text(json.dumps(payload) + "\n", encoding="utf-8")


def load_run(path: Path) -> tuple[AgentsRun, dict[str, Any]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    run = AgentsRun(tuple(raw["budgets"]), tuple((str(n), str(s), int(k)) for n, s, k in raw["trajectories"]),
                    tuple(StepRecord(**s) for s in raw["steps"]), raw["embedding_model"], float(raw["seconds"]))
    return run, raw["meta"]


def load_journal(folder: Path) -> tuple[AgentsRun, dict[str, Any]]:
    """The pairs a journalled run finished so far (`folder/meta.json` and `folder/*.jsonl`)."""
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    trajectories: dict[str, tuple[str, str, int]] = {}
    steps: list[StepRecord] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            name, split, n = entry["trajectory"]
            trajectories[name] = (str(name), str(split), int(n))
            steps += [StepRecord(**s) for s in entry["steps"]]
    budgets = tuple(sorted({s.budget for s in steps}))
    steps.sort(key=lambda s: (s.budget, s.trajectory, s.step))
    last = max((p.stat().st_mtime for p in folder.glob("*.jsonl")), default=float(meta["started"]))
    meta = {**meta, "journal": True}
    return AgentsRun(budgets, tuple(sorted(trajectories.values())), tuple(steps), meta["embedding_model"], last - float(meta["started"])), meta
