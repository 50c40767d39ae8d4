"""The memory side of one chat request: resolve the session, store what is new, compile, observe.

Fail open: any exception from a memory call (not only `MemoryRuntimeError`; a bug in memory must not
take the user's call down either) turns into "forward the original request unmodified" plus a short
reason for the `X-Memory-Error` header. Requests of one session are serialised by a per-session lock
held over sync + compile + sync, and again over observe; different sessions never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from memory import Runtime, get_counter
from memory import errors as memory_errors

__all__ = ["SessionLocks", "Prepared", "prepare", "record_reply", "split_tail", "drop_orphan_tool_messages", "new_session_id"]

log = logging.getLogger("memory_runtime.context")
_SYSTEM_ROLES = frozenset({"system", "developer"})


def new_session_id() -> str:
    return f"sess_{uuid.uuid4().hex}"


@dataclass
class SessionLocks:
    """One asyncio.Lock per session id, dropped when nobody holds or waits on it."""

    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _users: dict[str, int] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        self._users[session_id] = self._users.get(session_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[session_id] -= 1
            if self._users[session_id] == 0:
                del self._users[session_id]
                del self._locks[session_id]

    def __len__(self) -> int:
        return len(self._locks)


@dataclass(frozen=True)
class Prepared:
    """What to forward for one request, and what to report in the X-Memory-* headers."""

    session_id: str
    messages: list[dict[str, Any]]
    original_tokens: int
    compiled_tokens: int
    items: int
    compiled: bool
    error: str | None = None

    def headers(self) -> dict[str, str]:
        out = {
            "X-Memory-Session": self.session_id,
            "X-Memory-Original-Tokens": str(self.original_tokens),
            "X-Memory-Compiled-Tokens": str(self.compiled_tokens),
            "X-Memory-Items": str(self.items),
        }
        if self.error:
            out["X-Memory-Error"] = self.error
        return out


def split_tail(messages: list[dict[str, Any]]) -> int:
    """Index where the live tail starts: the last user message; without one, the last message, moved
    back over tool results so they stay with the assistant message that called them."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    start = len(messages) - 1
    while start > 0 and messages[start].get("role") in ("tool", "function"):
        start -= 1
    return start


def drop_orphan_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI rejects a tool message that answers no preceding tool call, and an assistant tool call
    left without an answer. A compiled prompt must never contain either; this is the last guard."""
    answered: set[str] = {str(m.get("tool_call_id")) for m in messages if m.get("role") == "tool"}
    out: list[dict[str, Any]] = []
    open_calls: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            ids = [str(c.get("id")) for c in m["tool_calls"] if isinstance(c, dict)]
            if not all(i in answered for i in ids):
                log.warning("dropping an assistant tool call without its results from a compiled prompt")
                if m.get("content"):
                    out.append({k: v for k, v in m.items() if k != "tool_calls"})
                continue
            open_calls.update(ids)
        elif role == "tool":
            if str(m.get("tool_call_id")) not in open_calls:
                log.warning("dropping an orphan tool message from a compiled prompt")
                continue
        out.append(m)
    return out


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def prepare(
    runtime: Runtime,
    locks: SessionLocks,
    messages: list[dict[str, Any]],
    model: str,
    budget: int,
    session_header: str | None,
    scope: str,
    new_id: Callable[[], str] = new_session_id,
) -> Prepared:
    """Resolve, sync, compile and sync again; never raises (memory failures fail open). `new_id`
    names a session the request does not name and no stored transcript matches."""
    try:
        original_tokens = get_counter(model).messages_tokens(messages)
    except Exception as exc:  # counting is part of memory: fail open like the rest
        return Prepared(session_header or new_id(), messages, 0, 0, len(messages), False, _reason(exc))
    session_id = session_header
    if session_id is None:
        try:
            session_id = await runtime.resolve_session(messages, scope=scope) or new_id()
        except Exception as exc:
            log.warning("memory failed to resolve a session; forwarding unmodified: %s", _reason(exc))
            return Prepared(new_id(), messages, original_tokens, original_tokens, len(messages), False, _reason(exc))
    try:
        async with locks.hold(session_id):
            session = runtime.session(session_id)
            if original_tokens <= budget:
                await session.sync_messages(messages, scope=scope)
                return Prepared(session_id, messages, original_tokens, original_tokens, len(messages), False)
            cut = split_tail(messages)
            history, tail = messages[:cut], messages[cut:]
            system = [m for m in history if m.get("role") in _SYSTEM_ROLES]
            await session.sync_messages(history, scope=scope)
            result = await session.compile(
                user_message=tail, budget_tokens=budget, model=model, system=system or None, remember=True
            )
            await session.sync_messages(messages, scope=scope)
    except memory_errors.MemoryRuntimeError as exc:
        log.warning("memory failed; forwarding unmodified: %s", _reason(exc))
        return Prepared(session_id, messages, original_tokens, original_tokens, len(messages), False, _reason(exc))
    except Exception as exc:
        log.exception("unexpected memory failure; forwarding unmodified")
        return Prepared(session_id, messages, original_tokens, original_tokens, len(messages), False, _reason(exc))
    compiled = drop_orphan_tool_messages(list(result.messages))
    tokens = result.tokens if len(compiled) == len(result.messages) else get_counter(model).messages_tokens(compiled)
    return Prepared(session_id, compiled, original_tokens, tokens, result.items_included, True)


async def record_reply(runtime: Runtime, locks: SessionLocks, session_id: str, message: dict[str, Any]) -> str | None:
    """Store the assistant's reply; returns an error reason instead of raising."""
    try:
        async with locks.hold(session_id):
            await runtime.session(session_id).observe(message=message)
        return None
    except Exception as exc:
        log.warning("memory failed to store a reply: %s", _reason(exc))
        return _reason(exc)
