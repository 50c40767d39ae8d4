"""memory-runtime: a local-first context runtime for LLM apps.

    from memory import create_runtime
    async with create_runtime(storage_path="./.memory.sqlite") as runtime:
        session = runtime.session("session-id")
        await session.ingest({"type": "user_message", "payload": {"content": "..."}})
        result = await session.compile(user_message="...", budget_tokens=2000, model="gpt-4o-mini")
        await session.observe(assistant_text="...")
"""

from __future__ import annotations

from memory import errors
from memory.prompt.compiler import CompileResult
from memory.recall.embeddings import DEFAULT_MODEL, Embedder
from memory.errors import (
    EmbeddingModelError,
    InvalidArgumentError,
    InvalidEventError,
    InvalidInputError,
    MemoryRuntimeError,
    SessionNotFoundError,
    StorageError,
)
from memory.prompt.policy import POLICIES, LayoutPolicy
from memory.records import SessionSummary
from memory.runtime import Runtime, create_runtime
from memory.session import Session, SyncResult
from memory.recall.tokens import TokenCounter, get_counter
from memory.turn.room import Budget
from memory.turn.turns import TurnPlan
from memory.turn.usage import Usage

__all__ = [
    "create_runtime",
    "Runtime",
    "Session",
    "SyncResult",
    "TurnPlan",
    "Budget",
    "LayoutPolicy",
    "POLICIES",
    "Usage",
    "CompileResult",
    "SessionSummary",
    "Embedder",
    "TokenCounter",
    "get_counter",
    "DEFAULT_MODEL",
    "errors",
    "MemoryRuntimeError",
    "InvalidInputError",
    "InvalidEventError",
    "InvalidArgumentError",
    "SessionNotFoundError",
    "StorageError",
    "EmbeddingModelError",
]
