"""The one exception hierarchy of the `proxy` package, and the OpenAI error envelope.

    ProxyError                      base; HTTP 500, type "server_error"
    ├── ConfigError                 the configuration file or environment is unusable (startup only)
    ├── InvalidRequestError         400 "invalid_request_error": malformed JSON, missing/wrong fields
    │   ├── PayloadTooLargeError    413: body, message count or a message above the configured limits
    │   └── UnsupportedMediaError   415: a body that is not JSON where JSON is required
    ├── AccessDeniedError           401 "authentication_error": missing or wrong X-Memory-Access-Token,
    │                               or a web page that would spend the proxy's own key
    ├── MissingKeyError             401 "invalid_request_error": no provider key in the request nor in the
    │                               proxy's environment (OpenAI's own words; nothing is forwarded)
    ├── ForbiddenError              403 "permission_error": a Host or Origin that is not allowed
    ├── NotFoundError               404 "not_found_error": unknown route or memory session
    ├── MemoryUnavailableError      503 "server_error": the memory store cannot keep what it is given
    └── UpstreamError               the upstream answered with an error or could not be reached; keeps
                                    the upstream's HTTP status (502 when there was no answer, 504 on
                                    timeout) and, when it sent one, its error type and code

Every error that leaves the proxy is rendered by `envelope_for(path, exc)`, chosen by class, never by
message text, in the envelope of the API the path belongs to: Anthropic's
(`{"type": "error", "error": {"type", "message"}}`, `anthropic_envelope`) on `/v1/messages` and
below it, OpenAI's (`envelope`) everywhere else. The guard, the app's handlers and the routes all
ask that one rule, so a 401, 403, 413 or 415 on Claude Code's route reads as Anthropic's.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

# What OpenAI answers a request without a key (401, type invalid_request_error, code null).
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth "
    "(i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API "
    "from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys."
)

__all__ = [
    "ProxyError",
    "ConfigError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "UnsupportedMediaError",
    "AccessDeniedError",
    "MissingKeyError",
    "ForbiddenError",
    "NotFoundError",
    "MemoryUnavailableError",
    "UpstreamError",
    "envelope",
    "anthropic_envelope",
    "envelope_for",
    "is_anthropic_path",
    "ANTHROPIC_TYPES",
]


class ProxyError(Exception):
    """Base class of every error the proxy raises on purpose."""

    status: int = 500
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ConfigError(ProxyError):
    """The configuration is unusable; raised before the server starts."""


class InvalidRequestError(ProxyError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLargeError(InvalidRequestError):
    status = 413


class UnsupportedMediaError(InvalidRequestError):
    status = 415


class AccessDeniedError(ProxyError):
    status = 401
    type = "authentication_error"


class MissingKeyError(ProxyError):
    status = 401
    type = "invalid_request_error"

    def __init__(self) -> None:
        super().__init__(NO_KEY_MESSAGE)


class ForbiddenError(ProxyError):
    status = 403
    type = "permission_error"


class NotFoundError(ProxyError):
    status = 404
    type = "not_found_error"


class MemoryUnavailableError(ProxyError):
    status = 503


class UpstreamError(ProxyError):
    """An upstream failure, carrying the upstream's status so the client sees what it would have seen."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status if 400 <= status <= 599 else 502
        self.type = type or ("invalid_request_error" if 400 <= self.status < 500 else "upstream_error")
        # The provider's response headers a client reads (x-request-id, x-ratelimit-*), passed back.
        self.headers: dict[str, str] = {}


def envelope(exc: ProxyError) -> dict[str, Any]:
    """The OpenAI error body for `exc`: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}


# Anthropic's error types, by the HTTP status it sends them with.
_ANTHROPIC_BY_STATUS = MappingProxyType({400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                                         529: "overloaded_error"})
ANTHROPIC_TYPES = frozenset(_ANTHROPIC_BY_STATUS.values()) | {"timeout_error", "billing_error"}
_ANTHROPIC_PREFIX = "/v1/messages"


def is_anthropic_path(path: str | None) -> bool:
    """Whether `path` belongs to Anthropic's Messages API (`/v1/messages` and below it)."""
    return path is not None and (path == _ANTHROPIC_PREFIX or path.startswith(_ANTHROPIC_PREFIX + "/"))


def _anthropic_type(exc: ProxyError) -> str:
    if isinstance(exc, UpstreamError):
        if exc.type in ANTHROPIC_TYPES:
            return exc.type
        return _ANTHROPIC_BY_STATUS.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    for cls, kind in ((PayloadTooLargeError, "request_too_large"), (UnsupportedMediaError, "invalid_request_error"),
                      (InvalidRequestError, _ANTHROPIC_BY_STATUS.get(exc.status, "invalid_request_error")),
                      (AccessDeniedError, "authentication_error"), (MissingKeyError, "authentication_error"),
                      (ForbiddenError, "permission_error"), (NotFoundError, "not_found_error")):
        if isinstance(exc, cls):
            return kind
    return "api_error"


def anthropic_envelope(exc: ProxyError) -> dict[str, Any]:
    """Anthropic's error body for `exc`: `{"type": "error", "error": {"type", "message"}}`."""
    return {"type": "error", "error": {"type": _anthropic_type(exc), "message": exc.message}}


def envelope_for(path: str | None, exc: ProxyError) -> dict[str, Any]:
    """The error body for `exc` on a request to `path`: Anthropic's on its routes, else OpenAI's."""
    return anthropic_envelope(exc) if is_anthropic_path(path) else envelope(exc)
