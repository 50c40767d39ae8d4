"""The memory side of one chat request: plan the prompt before the call, record the turn after it.

`prepare` resolves the session, stores the history the request brings, and lays the prompt out
(`Session.prepare_turn`); `commit` records the live tail, the reply and the provider's usage once
the call succeeded (`Session.commit_turn`). A call that fails is never committed, so it leaves
nothing behind. Fail open: any exception from memory (not only `MemoryRuntimeError`: a bug in
memory must not take the user's call down either) turns into "forward the original request
unmodified" plus a short reason for the `X-Memory-Error` header. Serialisation per session is the
store's session lock, taken inside memory; nothing here holds a lock across the upstream call.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memory import Budget, LayoutPolicy, Runtime, TurnPlan, Usage, get_counter
from memory.turn.compact import Rewrite
from memory import errors as memory_errors
from proxy.budget import HEADER as BUDGET_HEADER, budget_header

__all__ = ["Prepared", "prepare", "commit", "new_session_id"]

log = logging.getLogger("memory_runtime.context")


def new_session_id() -> str:
    return f"sess_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Prepared:
    """What to forward for one request, and what to report in the X-Memory-* headers."""

    session_id: str
    messages: list[dict[str, Any]]
    original_tokens: int
    compiled_tokens: int
    items: int
    plan: TurnPlan | None = None
    error: str | None = None
    budget: Budget | None = None  # the budget that applied (`proxy.budget`)

    @property
    def mode(self) -> str:
        return self.plan.mode if self.plan is not None else "unmodified"

    def headers(self) -> dict[str, str]:
        out = {
            "X-Memory-Session": self.session_id,
            "X-Memory-Original-Tokens": str(self.original_tokens),
            "X-Memory-Compiled-Tokens": str(self.compiled_tokens),
            "X-Memory-Items": str(self.items),
            "X-Memory-Mode": self.mode,
        }
        if self.budget is not None:
            out[BUDGET_HEADER] = budget_header(self.budget)
        if self.error:
            out["X-Memory-Error"] = self.error
        return out


def _reason(exc: BaseException) -> str:
    # A header value: ASCII, and no trailing space where the cut falls (h11 refuses one, a 500).
    text = " ".join(str(exc).encode("ascii", "replace").decode("ascii").split())[:160].rstrip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _unmodified(session_id: str, messages: list[dict[str, Any]], model: str, reason: str, budget: Budget | None = None) -> Prepared:
    try:
        # Off the event loop: a large history takes tiktoken a good fraction of a second.
        tokens = await asyncio.to_thread(get_counter(model).messages_tokens, messages)
    except Exception:  # counting is part of memory: fail open like the rest
        tokens = 0
    return Prepared(session_id, messages, tokens, tokens, len(messages), None, reason, budget)


async def prepare(runtime: Runtime, messages: list[dict[str, Any]], model: str, budget: Budget, session_header: str | None,
                  scope: str, new_id: Callable[[], str] = new_session_id, policy: LayoutPolicy | str = "cache", resume_at: int | None = None,
                  rewrite: Rewrite | None = None, tools: list[dict[str, Any]] | None = None) -> Prepared:
    """Resolve the session and plan the prompt; never raises (memory failures fail open). `new_id`
    names a session the request does not name and no stored transcript matches. `resume_at`: the
    messages continue the named session's transcript from that position; `rewrite` puts a compacted
    message back in the route's wire form; `tools`: the request's tool definitions (part of the
    app's fixed part, with its system messages); `budget`: from `proxy.budget.request_budget`."""
    session_id = session_header
    if session_id is None:
        try:
            session_id = await runtime.resolve_session(messages, scope=scope) or new_id()
        except Exception as exc:
            log.warning("memory failed to resolve a session; forwarding unmodified: %s", _reason(exc))
            return await _unmodified(new_id(), messages, model, _reason(exc), budget)
    try:
        plan = await runtime.session(session_id).prepare_turn(
            messages, budget, model, scope=scope, named=session_header is not None, policy=policy, resume_at=resume_at, rewrite=rewrite,
            tools=tools)
    except memory_errors.MemoryRuntimeError as exc:
        log.warning("memory failed; forwarding unmodified: %s", _reason(exc))
        return await _unmodified(session_id, messages, model, _reason(exc), budget)
    except Exception as exc:
        log.exception("unexpected memory failure; forwarding unmodified")
        return await _unmodified(session_id, messages, model, _reason(exc), budget)
    forwarded = plan.messages
    if plan.mode == "over_budget":
        log.warning("memory: session %s is over budget by %d tokens (budget %d, laid out in %d): the system message(s) and the live turn "
                    "alone exceed it", session_id, plan.layout.manifest.get("over_budget_by", 0), budget.tokens, plan.budget)
    # The plan counted what the client sent (each resent message once, from memory's cache); with
    # `resume_at` that is the whole chain the id stands for, which the provider would read.
    if resume_at is None and plan.mode == "full_history" and plan.carries_history:
        # Everything fits and the client sent the whole conversation: forward it exactly as sent.
        forwarded = messages
    return Prepared(session_id, forwarded, plan.sent_tokens, plan.result.tokens, plan.result.items_included, plan, None, budget)


async def commit(runtime: Runtime, prepared: Prepared, reply: dict[str, Any] | None, usage: dict[str, Any] | None,
                 response_id: str | None = None, items: list[tuple[str, dict[str, Any]]] | None = None) -> str | None:
    """Record a successful call; returns an error reason instead of raising."""
    if prepared.plan is None:
        return None
    try:
        await runtime.session(prepared.session_id).commit_turn(prepared.plan, reply, Usage.from_openai(usage), response_id=response_id,
                                                               items=items or ())
        return None
    except Exception as exc:
        log.warning("memory failed to store a turn: %s", _reason(exc))
        return _reason(exc)
