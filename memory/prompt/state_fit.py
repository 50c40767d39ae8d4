"""The state block (decisions, constraints, open questions, glossary) fitted to a token share of
the prompt: active items in order while they fit, an item larger than the whole share shortened
rather than the reason the block is left out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memory.prompt.state import render_state_block
from memory.records import StateItem
from memory.recall.tokens import TiktokenCounter

__all__ = ["state_message"]


def state_message(items: list[StateItem], counter: TiktokenCounter, cap: int) -> tuple[dict[str, Any] | None, list[StateItem], int]:
    """The state block's system message within `cap` tokens (None when no item fits), the items it
    holds, and its tokens."""
    active = [i for i in items if i.status == "active"]
    used: list[StateItem] = []
    msg: dict[str, Any] | None = None
    tokens = 0
    for item in active:
        trial = render_state_block(used + [item])
        cost = counter.message_tokens({"role": "system", "content": trial})
        if cost > cap and not used:
            # An item larger than the whole share (a long one-line message) is shortened, never
            # the reason the block is skipped.
            item = _shortened(item, counter, cap)
            trial = render_state_block([item])
            cost = counter.message_tokens({"role": "system", "content": trial})
        if cost > cap:
            continue
        used.append(item)
        msg, tokens = {"role": "system", "content": trial}, cost
    return msg, used, tokens


def _shortened(item: StateItem, counter: TiktokenCounter, cap: int) -> StateItem:
    """`item` with its text cut (at a word, with an ellipsis) so the block of it alone fits `cap`."""
    text = item.text
    while text and counter.message_tokens({"role": "system", "content": render_state_block([replace(item, text=text + " …")])}) > cap:
        text = text[: max(0, min(len(text) - 1, int(len(text) * 0.8)))].rsplit(" ", 1)[0]
    return replace(item, text=text + " …") if text else item
