"""Erasing sessions from PostgreSQL: their rows (cascade; their full-text entries live in them) and
the vectors no other session uses, inside the caller's transaction. Every query on every instance
stops seeing them at commit; (auto)vacuum reclaims the space later."""

from __future__ import annotations

from collections.abc import Sequence

from memory.store.postgres.tx import PgTx

__all__ = ["erase_sessions"]


async def erase_sessions(tx: PgTx, session_ids: Sequence[str]) -> list[str]:
    """Delete every row of these sessions and the vectors nobody else uses; returns the ids that
    existed, in id order. The sessions' rows stay locked until commit."""
    ids = list(dict.fromkeys(session_ids))
    found = [str(r[0]) for r in await tx._rows("SELECT id FROM sessions WHERE id = ANY(?) ORDER BY id FOR UPDATE", (ids,))]
    if found:
        await tx._exec("DELETE FROM embeddings e WHERE e.content_hash IN (SELECT content_hash FROM chunks WHERE session_id = ANY(?)) "
                       "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = e.content_hash AND c.session_id <> ALL(?))",
                       (found, found))
        await tx._exec("DELETE FROM sessions WHERE id = ANY(?)", (found,))
    return found
