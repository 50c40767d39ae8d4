"""A stored frame's rules (`memory.prompt.layout` says what a frame is): whether it serves a
request, and which units its base already shows."""

from __future__ import annotations

from collections.abc import Callable

from memory.records import FrameRecord

__all__ = ["base_keys", "frame_serves"]


def frame_serves(frame: FrameRecord, end: int, anchor: Callable[[int], str], budget: int, encoding: str) -> bool:
    """A stored frame serves a request made for the same budget and encoding whose conversation
    (`end` messages before the live tail; `anchor(n)`: the chain hash of its first n) still begins
    with the messages the frame was anchored to. The one rule: the turn planner picks a frame with
    it and the layout lays the prompt out on it only while it holds."""
    return (frame.encoding == encoding and frame.budget == budget and frame.window_start <= end
            and frame.anchor == anchor(frame.window_start))


def base_keys(frame: FrameRecord) -> set[str]:
    """Units whose evidence the frame's base already shows."""
    keys: set[str] = set()
    for item in frame.items:
        if item.get("part") == "base":
            if item.get("event_id"):
                keys.add(f"e{item['event_id']}")
            elif item.get("artifact_id"):
                keys.add(f"a{item['artifact_id']}")
    return keys
