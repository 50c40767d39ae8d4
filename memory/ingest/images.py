"""Images left out of what is stored, for a runtime told not to keep them (`store_images=False`).

An image is not text: redaction cannot read a secret shown in a screenshot, so by default an image
(its data URL or its link) is stored as it came, like a reasoning item's `encrypted_content`. A
runtime created with `store_images=False` stores a short text note in place of every image part
(chat's `image_url`, the Responses API's `input_image`) and of a generated image's data: the
provider still gets the images of the request being answered, but a later prompt that memory
rebuilds from what it stored reads the note. The transcript keeps the hash of the message as sent,
so a client that resends the image still matches its conversation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memory.ingest.events import Event

__all__ = ["NOTE", "without_images", "event_without_images"]

NOTE = "[image not stored]"
# Content-part type -> the text part that replaces it, in the same API's shape.
_IMAGE_PARTS = {"image_url": "text", "input_image": "input_text", "image": "text"}


def without_images(value: Any) -> Any:
    """`value` (a JSON-like message, item or part list) with every image part replaced by a text
    note and a generated image's data dropped; everything else as it was."""
    if isinstance(value, list):
        return [without_images(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if isinstance(kind, str) and kind in _IMAGE_PARTS:
        return {"type": _IMAGE_PARTS[kind], "text": NOTE}
    if kind == "image_generation_call" and isinstance(value.get("result"), str):
        return {**value, "result": NOTE}
    return {k: without_images(v) for k, v in value.items()}


def event_without_images(event: Event) -> Event:
    """`event` with the images of its content parts and fields left out."""
    extra = {k: (without_images(v) if k in ("parts", "meta") else v) for k, v in event.extra.items()}
    return event if extra == event.extra else replace(event, extra=extra)
