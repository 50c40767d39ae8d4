"""Structured logs: one JSON object per line, carrying the id of the request being served.

Each HTTP request gets an id: the client's `X-Request-Id` when it is a short token, otherwise a new
one. It comes back in the `X-Memory-Request-Id` response header, and in `X-Request-Id` unless the
response carries the provider's own `x-request-id` (OpenAI's SDKs read that one as the id of the
call, for the provider's support), and is stamped on every record logged while
that request is served (a ContextVar, so concurrent requests never mix; streamed bodies run in child
tasks, which inherit it). The proxy never logs message content or keys. At `log_level: debug`,
libraries log what they send (litellm and openai their request bodies, aiosqlite its SQL
parameters), which is message content; their debug records are dropped unless `log_content: true`
says so as well, because a log outlives an erase. `log_file` is created readable by its owner only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timezone

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID", "RequestIdMiddleware", "JsonFormatter", "RequestIdFilter", "ContentFilter", "configure_logging", "adopt_loggers",
           "LITELLM_LOGGERS", "open_private"]

REQUEST_ID: ContextVar[str | None] = ContextVar("memory_runtime_request_id", default=None)
HEADER = b"x-request-id"
OWN_HEADER = b"x-memory-request-id"
_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
# Libraries that install their own plain-text handlers; their records go through ours instead.
# Loggers that attach their own stderr handlers when their package is imported.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_OWN_HANDLERS = (*LITELLM_LOGGERS, "uvicorn", "uvicorn.error", "uvicorn.access")
# Loggers whose debug records never carry message content: ours, and uvicorn's connection events.
_CONTENT_FREE = ("memory_runtime", "memory", "uvicorn")


class RequestIdMiddleware:
    """Pure ASGI (streaming untouched): sets REQUEST_ID for the request and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER, b"")
        request_id = sent.decode("ascii") if _TOKEN.fullmatch(sent) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != OWN_HEADER]
                own = [(OWN_HEADER, request_id.encode("ascii"))]
                if not any(k.lower() == HEADER for k, _ in headers):
                    own.append((HEADER, request_id.encode("ascii")))
                message = {**message, "headers": [*headers, *own]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class ContentFilter(logging.Filter):
    """Drops debug records of libraries that may log message content (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        return any(record.name == n or record.name.startswith(n + ".") for n in _CONTENT_FREE)


def open_private(path: str) -> int:
    """Open `path` for appending, created 0600 (an existing file is made 0600 too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage().strip(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_content: bool = False, log_file: str | None = None) -> None:
    """Send every log record (ours, uvicorn's, litellm's, warnings) to stderr, or to `log_file`,
    as JSON lines; library debug records only with `log_content`."""
    stream = os.fdopen(open_private(log_file), "a", buffering=1, encoding="utf-8") if log_file else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    if not log_content:
        handler.addFilter(ContentFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    adopt_loggers(_OWN_HANDLERS)
    logging.captureWarnings(True)


def adopt_loggers(names: Iterable[str]) -> None:
    """Drop the handlers these loggers brought along and let their records reach the root's, so
    they come out as our JSON lines. Called again for litellm after it is imported at start-up."""
    for name in names:
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
