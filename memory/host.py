"""`SessionHost`: what a `Session` needs from the runtime that owns it.

A session is a handle on one conversation; the runtime owns what sessions share (the store, the
session views, the embedding queue, the memos). The session reaches it through this protocol, so
`memory.session` never imports `memory.runtime` (which creates sessions): the two modules stay in
one direction, runtime -> session -> host.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

import numpy as np

from memory.recall.index import SessionView
from memory.recall.memo import MessageMemo
from memory.recall.retrieval import RankOptions
from memory.recall.tokens import TiktokenCounter
from memory.store.protocol import Store
from memory.turn.compact import CompactMemo
from memory.turn.fixed import FixedAnchors, FixedPolicy
from memory.turn.transcripts import TranscriptCache

__all__ = ["SessionHost"]


class SessionHost(Protocol):
    """The runtime as its sessions see it (`memory.runtime.Runtime` implements it)."""

    store: Store
    store_images: bool
    rank_options: RankOptions
    memo: MessageMemo
    compact_memo: CompactMemo
    transcripts: TranscriptCache
    fixed_anchors: FixedAnchors
    fixed_policy: FixedPolicy

    @property
    def embeds(self) -> bool: ...

    @property
    def compile_embed_limit(self) -> int | None: ...

    async def open(self) -> None: ...

    def busy(self) -> AbstractAsyncContextManager[None]: ...

    def tokens_for(self, counter: TiktokenCounter) -> TiktokenCounter: ...

    async def view(self, session_id: str, query: str | None = None, embed_limit: int | None = ...,
                   wait: bool = True) -> tuple[SessionView, np.ndarray | None]: ...

    async def loaded_view(self, session_id: str) -> SessionView: ...

    async def embed_for(self, session_id: str, view: SessionView, query: str | None, embed_limit: int | None = ...,
                        wait: bool = True) -> np.ndarray | None: ...

    def embed_soon(self, session_id: str) -> None: ...
