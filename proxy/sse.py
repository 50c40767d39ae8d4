"""Server-sent events, encoding only: pure functions, no transport.

Decoding is not ours to do: litellm decodes the providers' streams, and clients decode ours. The
test-suite checks what we encode with the official openai client's own decoder.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["encode_data", "DONE"]

DONE = b"data: [DONE]\n\n"


def encode_data(payload: Any) -> bytes:
    """One `data:` event carrying `payload` as compact JSON (JSON never contains a raw newline)."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"
