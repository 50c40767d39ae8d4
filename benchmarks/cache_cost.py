"""Section F: what a conversation costs through the proxy once the provider caches prompt prefixes.

Long conversations are replayed as chats through the running proxy (served on loopback, real
embedding model) against the fake upstream, which caches prompt prefixes by OpenAI's rule (prefixes
of 1,024 tokens or more, in 128-token blocks) and reports `cached_tokens`. The client is the common
kind: it resends its whole history every call, with `X-Memory-Session` and `X-Memory-Budget`.
LoCoMo conversations are chats with speaker A as the user and speaker B as the assistant (the fake
answers each user turn with speaker B's next turn(s)).

The baseline, *resend everything*, is priced by the same cache rule on the same prompts the client
built, so both columns are comparable token for token. Effective input cost at a cache price ratio
r (cached input costs r of the normal price: 0.1 gpt-5 family, 0.25 gpt-4.1 and Gemini 2.5,
0.5 gpt-4o) is `uncached + r * cached`, reported relative to resending everything.

At the end of each conversation every scorable LoCoMo question (in file order) is asked through the
proxy two ways, and strict evidence recall is read off what the upstream received:

- *alone*: each question as the next turn after the conversation. The upstream answers it with an
  error, so the proxy stores nothing of it and every question meets the memory the conversation left;
  next to it, the library's fresh compile of the same question on the same stored session
  (`POST /memory/sessions/{id}/compile`);
- *in sequence*: one after another in the same chat, as any real chat goes on. The upstream answers
  each with a short fixed reply, which the client keeps in the history it resends, so the window
  fills with recent questions and answers. These requests are chat turns like the others and are
  priced with them (`cost`; `cost_conversation` prices the conversation alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memory.recall.tokens import get_counter
from testkit.harness import Proxy, config_for, serve_upstream, start_proxy
from testkit.prompt_cache import PromptCache
from testkit.script import Reply

from .common import MODEL, messages_text, progress
from .corpus import assistant_turn, code_windows, user_turn
from .locomo import Conversation, load_locomo
from .session50 import FIRST_ASSISTANT, FIRST_USER, NEEDLE_SOURCE, needle_snippet

__all__ = ["Step", "chat_steps", "coding_steps", "TurnCost", "ConversationCost", "CostResult", "run_cache_cost", "RATIOS", "BUDGETS",
           "CODING", "load_dumps"]

RATIOS = (0.1, 0.25, 0.5)
BUDGETS = (2000, 4000, 8000)
CODING = "coding-session"
QUESTION_REPLY = "Thanks, let me think about that."
SYSTEM = {"role": "system", "content": "You are a friendly, attentive conversation partner. Keep track of what the user tells you."}


@dataclass(frozen=True)
class Step:
    """One request of the replayed chat: the user's new message(s) and the assistant's answer."""

    users: tuple[str, ...]
    reply: str


def chat_steps(conv: Conversation) -> list[Step]:
    """LoCoMo turns as chat requests: consecutive user turns go in one request (separate messages),
    consecutive assistant turns are one reply."""
    steps: list[Step] = []
    users: list[str] = []
    replies: list[str] = []
    for turn in conv.turns:
        if turn.role == "user":
            if replies:
                steps.append(Step(tuple(users), "\n".join(replies)))
                users, replies = [], []
            users.append(turn.content)
        elif users:
            replies.append(turn.content)
        elif steps:  # an assistant turn right after a reply: part of that reply
            steps[-1] = Step(steps[-1].users, steps[-1].reply + "\n" + turn.content)
        else:  # the assistant speaks first: the user opened with a greeting
            users.append("Hi!")
            replies.append(turn.content)
    if users:
        steps.append(Step(tuple(users), "\n".join(replies) or "OK."))
    return steps


def coding_steps(turns: int = 50) -> list[Step]:
    """The 50-turn coding session as a chat: each user turn pastes a 50-line window of this
    project's source in a fenced block (memory stores it as a snippet) and asks about it."""
    steps = [Step((f"{FIRST_USER}\n\n```{NEEDLE_SOURCE}\n{needle_snippet()}\n```",), FIRST_ASSISTANT)]
    for window in code_windows(turns - 1):
        steps.append(Step((f"{user_turn(window)}\n\n```{window.source}\n{window.text}\n```",), assistant_turn(window)))
    return steps


@dataclass(frozen=True)
class TurnCost:
    sent: int  # the client's prompt (provider tokens)
    sent_cached: int  # what resending everything gets from the cache
    forwarded: int  # the prompt the proxy forwarded (provider tokens)
    cached: int  # its cached part, as the provider reported it
    mode: str
    question: bool = False  # a question asked in sequence after the conversation


@dataclass
class ConversationCost:
    name: str
    budget: int
    policy: str
    turns: list[TurnCost] = field(default_factory=list)
    questions: int = 0
    proxy_hits: int = 0  # questions asked alone whose evidence all reached the upstream through the proxy
    fresh_hits: int = 0  # ... and in the library's fresh compile
    sequential_hits: int = 0  # questions asked in sequence whose evidence all reached the upstream


@dataclass(frozen=True)
class CostResult:
    conversations: tuple[ConversationCost, ...]
    ratios: tuple[float, ...] = RATIOS

    def select(self, budget: int, names: Sequence[str] | None = None, policy: str = "cache") -> list[ConversationCost]:
        return [c for c in self.conversations if c.budget == budget and c.policy == policy and (names is None or c.name in names)]

    def summary(self, budget: int, names: Sequence[str] | None = None, policy: str = "cache") -> dict[str, Any]:
        convs = self.select(budget, names, policy)
        turns = [t for c in convs for t in c.turns]
        sent = sum(t.sent for t in turns)
        sent_cached = sum(t.sent_cached for t in turns)
        forwarded = sum(t.forwarded for t in turns)
        cached = sum(t.cached for t in turns)
        questions = sum(c.questions for c in convs)

        def cost(r: float, only_conversation: bool = False) -> float:
            part = [t for t in turns if not (only_conversation and t.question)]
            base = sum((t.sent - t.sent_cached) + r * t.sent_cached for t in part)
            return sum((t.forwarded - t.cached) + r * t.cached for t in part) / base if base else float("nan")

        return {
            "budget": budget, "policy": policy, "conversations": len(convs), "turns": len(turns),
            "raw_vs_resend": forwarded / sent if sent else float("nan"),
            "resend_cached_share": sent_cached / sent if sent else float("nan"),
            "cached_share": cached / forwarded if forwarded else float("nan"),
            "cost": {str(r): cost(r) for r in self.ratios},
            "cost_conversation": {str(r): cost(r, True) for r in self.ratios},
            "rebases": sum(1 for t in turns if t.mode in ("rebased", "compiled")),
            "questions": questions,
            "recall_proxy": sum(c.proxy_hits for c in convs) / questions if questions else float("nan"),
            "recall_fresh": sum(c.fresh_hits for c in convs) / questions if questions else float("nan"),
            "recall_sequential": sum(c.sequential_hits for c in convs) / questions if questions else float("nan"),
        }


def _count(cache: PromptCache, messages: list[dict[str, Any]]) -> int:
    return len(cache.render(messages))


def _found(text: str, evidence: list[str], question: Any) -> bool:
    return all(c in text for c in evidence) and len(evidence) == len(question.evidence)


def _replay(http: httpx.Client, name: str, budget: int, policy: str, steps: list[Step], conv: Conversation | None,
            fake: Any, alone: bool = True, misses: list[dict[str, Any]] | None = None, fresh: bool = True) -> ConversationCost:
    session = f"{name}-b{budget}-{policy}"
    headers = {"X-Memory-Session": session, "X-Memory-Budget": str(budget), "X-Memory-Layout-Policy": policy,
               "Authorization": "Bearer sk-bench-cost"}
    resend = PromptCache()
    out = ConversationCost(name, budget, policy)
    history: list[dict[str, Any]] = [SYSTEM]

    def turn(users: Sequence[str], reply: str, question: bool) -> str:
        history.extend({"role": "user", "content": text} for text in users)
        fake.enqueue(Reply(text=reply))
        response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": history}, headers=headers)
        response.raise_for_status()
        usage = response.json()["usage"]
        hit = resend.lookup(session, resend.render(history))
        out.turns.append(TurnCost(hit.prompt_tokens, hit.cached_tokens, usage["prompt_tokens"],
                                  usage["prompt_tokens_details"]["cached_tokens"], response.headers["x-memory-mode"], question))
        history.append({"role": "assistant", "content": reply})
        return messages_text(fake.last_chat().json()["messages"])

    for step in steps:
        turn(step.users, step.reply, False)
    if conv is None:
        return out
    index = conv.turn_index()
    out.questions = len(conv.questions)
    for question in conv.questions if alone or fresh else ():  # alone: nothing of the question is stored
        evidence = [index[e].content for e in question.resolved]
        if alone:
            fake.enqueue(Reply(error_status=503, error_message="benchmark: the question is measured, not answered"))
            asked = history + [{"role": "user", "content": question.text}]
            response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": asked}, headers=headers)
            assert response.status_code == 503, response.text
            out.proxy_hits += _found(messages_text(fake.last_chat().json()["messages"]), evidence, question)
        if not fresh:
            continue
        compiled = http.post(f"/memory/sessions/{session}/compile", json={"user_message": question.text, "budget_tokens": budget, "model": MODEL},
                          headers={"Authorization": headers["Authorization"], "Content-Type": "application/json"})
        compiled.raise_for_status()
        out.fresh_hits += _found(messages_text(compiled.json()["messages"]), evidence, question)
    auth = {"Authorization": headers["Authorization"], "Content-Type": "application/json"}
    for number, question in enumerate(conv.questions):  # in sequence: each question and its reply join the chat
        evidence = [index[e].content for e in question.resolved]
        hit = _found(text := turn([question.text], QUESTION_REPLY, True), evidence, question)
        out.sequential_hits += hit
        if misses is not None and not hit:
            misses.append(_miss(http, session, auth, budget, number, question, evidence, text, out.turns[-1].mode))
    return out


def _miss(http: httpx.Client, session: str, auth: dict[str, str], budget: int, number: int, question: Any, evidence: list[str],
          forwarded: str, mode: str) -> dict[str, Any]:
    """Why a question asked in sequence missed its evidence: the layout's own account (its mode, the
    need it measured, the parts' tokens, the dropped items) next to a fresh compile of the same
    question on the session as it stands (recent questions and replies stored): evidence that the
    fresh compile finds was lost by the layout; evidence it misses too was ranked out."""
    shown = http.get(f"/memory/sessions/{session}/manifest", headers=auth).json()
    manifest = shown.get("manifest", shown)
    fresh = http.post(f"/memory/sessions/{session}/compile", json={"user_message": question.text, "budget_tokens": budget, "model": MODEL},
                      headers=auth).json()
    fresh_text = messages_text(fresh["messages"])
    return {
        "session": session, "number": number, "question": question.text, "mode": mode, "need": manifest.get("need"),
        "totals": manifest.get("totals"), "evidence": list(question.resolved), "unresolved": len(evidence) != len(question.evidence),
        "missing": [e for e, text in zip(question.resolved, evidence) if text not in forwarded],
        "fresh_now_missing": [e for e, text in zip(question.resolved, evidence) if text not in fresh_text],
        "dropped": [(d.get("turn"), d.get("reason"), d.get("score")) for d in manifest.get("dropped", [])[:8]],
        "included_evidence": [(i.get("turn"), i.get("part"), i.get("score")) for i in manifest.get("included", [])
                              if i.get("reason") in ("retrieved", "pinned")],
    }


def run_cache_cost(conversations: Sequence[Conversation], folder: Path, budgets: Sequence[int] = BUDGETS, ask: bool = True,
                   embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2", policies: Sequence[tuple[str, Sequence[int]]] = (),
                   coding_turns: int = 50, show_progress: bool = True, alone: bool = True,
                   misses: list[dict[str, Any]] | None = None, fresh: bool = True) -> CostResult:
    """Replay the coding session and `conversations` at each budget through one proxy (one
    database: identical texts are embedded once) and price every forwarded prompt by the cache
    rule. `policies` adds runs of other layout policies at the budgets given."""
    upstream = serve_upstream()
    config = config_for(upstream, folder, "upstreams: {retries: 0}\n", MEMORY_RUNTIME_EMBEDDING_MODEL=embedding_model)
    proxy = start_proxy(config)
    runs = [("cache", tuple(budgets)), *[(name, tuple(b)) for name, b in policies]]
    results: list[ConversationCost] = []
    try:
        with httpx.Client(base_url=proxy.url, timeout=300) as http:
            if coding_turns:
                steps = coding_steps(coding_turns)
                for policy, policy_budgets in runs:
                    for budget in policy_budgets:
                        results.append(_replay(http, CODING, budget, policy, steps, None, upstream.fake))
                        upstream.fake.reset()
            for conv in progress(list(conversations), "cache-cost conversations", enabled=show_progress):
                steps = chat_steps(conv)
                for policy, policy_budgets in runs:
                    for budget in policy_budgets:
                        results.append(_replay(http, conv.sample_id, budget, policy, steps, conv if ask else None, upstream.fake,
                                               alone, misses, fresh))
                        upstream.fake.reset()
    finally:
        proxy.served.stop()
        upstream.served.stop()
    return CostResult(tuple(results))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.cache_cost [--conversations 1-5] [--budgets 4000] [--no-questions]`, for tuning."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--locomo", default=str(Path(__file__).resolve().parents[2] / "shared/data/locomo/locomo10.json"))
    parser.add_argument("--conversations", default="1-5", help="1-based range of LoCoMo conversations")
    parser.add_argument("--budgets", default="4000")
    parser.add_argument("--no-questions", action="store_true")
    parser.add_argument("--policy", default="cache")
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--sequence-only", action="store_true", help="tuning: ask the questions in sequence only (no alone, no fresh)")
    parser.add_argument("--with-fresh", action="store_true", help="with --sequence-only: the fresh compile of each question after the conversation too")
    parser.add_argument("--dump", help="write every priced turn and the recall counts to this JSON file (runs split across processes add up)")
    parser.add_argument("--misses", help="write each question missed in sequence, with the layout's account of it, to this JSONL file")
    args = parser.parse_args(argv)
    misses: list[dict[str, Any]] | None = [] if args.misses else None
    first, _, last = args.conversations.partition("-")
    convs = load_locomo(Path(args.locomo))[int(first) - 1 : int(last or first)]
    budgets = [int(b) for b in args.budgets.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        result = run_cache_cost(convs, Path(tmp), budgets if args.policy == "cache" else (), ask=not args.no_questions,
                                embedding_model=args.embedding_model, coding_turns=0,
                                policies=() if args.policy == "cache" else ((args.policy, budgets),), alone=not args.sequence_only,
                                misses=misses, fresh=not args.sequence_only or args.with_fresh)
    if args.misses and misses is not None:
        Path(args.misses).write_text("".join(json.dumps(m) + "\n" for m in misses))
    if args.dump:
        Path(args.dump).write_text(json.dumps([asdict(c) for c in result.conversations]))
    for budget in budgets:
        print(json.dumps(result.summary(budget, policy=args.policy)))
    return 0


def load_dumps(paths: Sequence[Path]) -> CostResult:
    """The runs that `--dump` wrote, as one result (conversations split across processes)."""
    convs = [ConversationCost(**{**c, "turns": [TurnCost(**t) for t in c["turns"]]}) for p in paths for c in json.loads(p.read_text())]
    return CostResult(tuple(convs))


if __name__ == "__main__":
    raise SystemExit(main())
