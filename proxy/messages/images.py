"""What an Anthropic image block costs, by Anthropic's documented rule.

Anthropic bills an image at about width x height / 750 tokens, after scaling it down (aspect ratio
kept) until its long edge is at most 1,568 px and it costs at most about 1,600 tokens. The size of
base64 data is read from its PNG / JPEG / GIF / WebP header (`memory.recall.image_size`); an image
given by URL or file id, or whose header cannot be read, is counted at that 1,600-token maximum
(an estimate on the safe side: Anthropic fetches the image itself and the proxy never does).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from memory.recall.image_size import base64_image_size

__all__ = ["image_tokens", "size_tokens", "blocks_image_tokens", "MAX_IMAGE_TOKENS", "MAX_LONG_EDGE", "PIXELS_PER_TOKEN"]

PIXELS_PER_TOKEN = 750
MAX_LONG_EDGE = 1568
MAX_IMAGE_TOKENS = 1600


def size_tokens(width: int, height: int) -> int:
    """Tokens of a `width` x `height` image: scaled to a long edge of at most 1,568 px, then
    width x height / 750, at most 1,600."""
    scale = min(1.0, MAX_LONG_EDGE / max(width, height))
    return min(MAX_IMAGE_TOKENS, math.ceil(round(width * scale) * round(height * scale) / PIXELS_PER_TOKEN))


def image_tokens(block: dict[str, Any]) -> int:
    """Tokens of one `image` block (its size from base64 data, else the flat maximum)."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        size = base64_image_size(source["data"])
        if size is not None:
            return size_tokens(*size)
    return MAX_IMAGE_TOKENS


def _images(blocks: Any) -> Iterator[dict[str, Any]]:
    if isinstance(blocks, list):
        for block in blocks:
            if isinstance(block, dict):
                if block.get("type") == "image":
                    yield block
                elif block.get("type") == "tool_result":
                    yield from _images(block.get("content"))


def blocks_image_tokens(blocks: Any) -> int:
    """Tokens of every image in a content list, those inside tool results included."""
    return sum(image_tokens(b) for b in _images(blocks))
