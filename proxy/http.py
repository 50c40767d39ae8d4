"""Small HTTP helpers shared by the route modules: bounded body reading and JSON/error responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory import POLICIES

from proxy.errors import InvalidRequestError, PayloadTooLargeError, ProxyError, envelope_for

__all__ = ["read_body", "json_response", "error_response", "bearer_value", "header_int", "session_header_of",
           "layout_policy", "MAX_SESSION_HEADER"]

MAX_SESSION_HEADER = 256


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing more than `max_bytes` (by Content-Length and by bytes read)."""
    declared = request.headers.get("content-length")
    if declared is not None and _is_decimal(declared) and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"request body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_decimal(value: str) -> bool:
    # str.isdigit() accepts "²" and other digits int() refuses, and int() refuses over 4300 digits.
    return 0 < len(value) <= 18 and value.isascii() and value.isdigit()


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # default=str: provider responses occasionally carry values (datetimes, enums) json can't encode.
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(exc: ProxyError, headers: dict[str, str] | None = None, path: str | None = None) -> Response:
    """The error response for `exc`, in the envelope of the API `path` belongs to (`envelope_for`)."""
    return json_response(envelope_for(path, exc), status=exc.status, headers=headers)


def bearer_value(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header value, or None."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def header_int(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not _is_decimal(value) or int(value) <= 0:
        raise InvalidRequestError(f"header {name} must be a positive integer", param=name)
    return int(value)


def session_header_of(request: Request) -> str | None:
    """The session the caller named with `X-Memory-Session`, if any (400 when malformed)."""
    value = request.headers.get("x-memory-session")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_SESSION_HEADER or any(ord(c) < 32 for c in value):
        raise InvalidRequestError(
            f"header X-Memory-Session must be 1..{MAX_SESSION_HEADER} printable characters", param="X-Memory-Session"
        )
    return value


def layout_policy(request: Request, default: str) -> str:
    """The layout policy for this request: `X-Memory-Layout-Policy`, else the configured one."""
    value = request.headers.get("x-memory-layout-policy", default).strip()
    if value not in POLICIES:
        raise InvalidRequestError(f"header X-Memory-Layout-Policy must be one of {sorted(POLICIES)}", param="X-Memory-Layout-Policy")
    return value
