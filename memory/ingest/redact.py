"""Redaction of secrets in ingested text, before anything is stored.

Strings shaped like provider keys, access tokens and private keys are replaced by a marker such as
`[REDACTED:openai_key]`. The marker keeps the kind, so a later compile can say (in its manifest)
that the model saw a redacted secret, and the surrounding text still reads sensibly.

Some shapes are only secrets in context, and are redacted only there: a 40-character AWS secret
access key near "aws", "secret" or an access key id; 32 hex digits (Azure keys) near "azure", "key"
or "subscription" (a bare MD5 or request id is left alone); `Basic` credentials that decode to
`user:password`. Every string of a stored message is redacted, its extra fields, names, ids and
URLs included; only the base64 payload of a `data:` URL and a reasoning item's `encrypted_content`
are left as they are (an image, ciphertext: not text).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = ["redact", "redacted", "redact_value", "count_markers", "MARKER"]

MARKER = re.compile(r"\[REDACTED:([a-z_]+)\]")
# Ciphertext, never text a person wrote (like a data: URL's payload): a Responses API reasoning
# item's `encrypted_content` must come back byte for byte or the provider refuses it.
_CIPHERTEXT_KEYS = frozenset({"encrypted_content"})

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)")),
    # (?<![A-Za-z0-9]) rather than \b: a key glued to an id ("call_sk-...") is still a key.
    ("anthropic_key", re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai_key", re.compile(r"(?<![A-Za-z0-9])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    # Short and test keys ("sk-abc123def456"): at least 8 characters, one of them a digit, so
    # words such as "sk-learn" stay.
    ("openai_key", re.compile(r"(?<![A-Za-z0-9])sk-(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{8,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("slack_token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("stripe_key", re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("bearer_token", re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/=-]{20,}")),
]
# key = value assignments whose name says "secret"; only the value is replaced.
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z0-9_.-]*(?:api[_-]?key|secret|password|passwd|access[_-]?token|auth[_-]?token|private[_-]?key)[A-Za-z0-9_.-]*)"
    r"(\s*[:=]\s*|\s*=>\s*)([\"']?)([^\s\"',;]{8,})\3"
)


# The password of a URL's user info: postgres://user:PASS@host, https://u:p@example.com.
# Secrets in a URL's query (?key=..., &api_key=..., &sig=...); only the value is replaced.
_URL_SECRET = re.compile(
    r"(?i)([?&](?:key|api[_-]?key|apikey|token|access[_-]?token|auth|sig|signature|password|secret|client[_-]?secret)=)"
    r"(?!\[REDACTED:)([^&#\s\"'\]]{6,})"
)
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@\[\]]+:)([^\s/@]+)(@)")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_CONTEXT = re.compile(r"(?i)aws|secret|AKIA|ASIA|REDACTED:aws_access_key")
_HEX32 = re.compile(r"(?<![0-9A-Fa-f])[0-9a-fA-F]{32}(?![0-9A-Fa-f])")
_HEX_CONTEXT = re.compile(r"(?i)azure|api[-_ ]?key|subscription|ocp-apim|\bkey\b")
_BASIC = re.compile(r"(?i)(?<=\bbasic )[A-Za-z0-9+/]{8,}={0,2}")
_CONTEXT_CHARS = 80


def _in_context(pattern: re.Pattern[str], context: re.Pattern[str], kind: str, found: Counter[str]) -> Callable[[str], str]:
    """A substitution that redacts a `pattern` match only when `context` appears shortly before it."""

    def apply(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            if not context.search(text, max(0, match.start() - _CONTEXT_CHARS), match.start()):
                return match.group(0)
            found[kind] += 1
            return f"[REDACTED:{kind}]"

        return pattern.sub(one, text)

    return apply


def _basic_credentials(text: str, found: Counter[str]) -> str:
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return token
        if ":" not in decoded or not decoded.isprintable():
            return token
        found["basic_credentials"] += 1
        return "[REDACTED:basic_credentials]"

    return _BASIC.sub(one, text)


def redact(text: str) -> tuple[str, Counter[str]]:
    """Return `text` with secrets replaced, and how many of each kind were found."""
    found: Counter[str] = Counter()
    if not text:
        return text, found
    for kind, pattern in _PATTERNS:
        text, n = pattern.subn(f"[REDACTED:{kind}]", text)
        if n:
            found[kind] += n
    text, n = _URL_PASSWORD.subn(lambda m: f"{m.group(1)}[REDACTED:url_password]{m.group(3)}", text)
    if n:
        found["url_password"] += n
    text, n = _URL_SECRET.subn(lambda m: f"{m.group(1)}[REDACTED:url_secret]", text)
    if n:
        found["url_secret"] += n
    text = _basic_credentials(text, found)
    text = _in_context(_AWS_SECRET, _AWS_CONTEXT, "aws_secret_key", found)(text)
    text = _in_context(_HEX32, _HEX_CONTEXT, "azure_key", found)(text)

    def _assignment(match: re.Match[str]) -> str:
        if MARKER.fullmatch(match.group(4)) or match.group(4).startswith("[REDACTED:"):
            return match.group(0)
        found["secret_assignment"] += 1
        return f"{match.group(1)}{match.group(2)}{match.group(3)}[REDACTED:secret_assignment]{match.group(3)}"

    text = _ASSIGNMENT.sub(_assignment, text)
    return text, found


@lru_cache(maxsize=256)
def redacted(text: str) -> str:
    """`redact(text)`'s text, remembered: an agent's task is the question of every request of its
    tool loop, and the manifest shows it redacted each time."""
    return redact(text)[0]


_DATA_URL = re.compile(r"(?is)^(data:[^,]{0,200},)(.*)$")


def redact_value(value: Any, found: Counter[str]) -> Any:
    """Redact every string inside a JSON-like value (tool calls and their ids, content parts and
    their URLs, extra message fields); keys are kept as they are."""
    if isinstance(value, str):
        data_url = _DATA_URL.match(value)
        if data_url:  # an inline image or file: its base64 payload is not text to scan
            head, n = redact(data_url.group(1))
            found.update(n)
            return head + data_url.group(2)
        clean, n = redact(value)
        found.update(n)
        return clean
    if isinstance(value, list):
        return [redact_value(v, found) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in _CIPHERTEXT_KEYS and isinstance(v, str) else redact_value(v, found)) for k, v in value.items()}
    return value


def count_markers(texts: list[str]) -> dict[str, int]:
    """How many redaction markers of each kind appear in `texts`."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(MARKER.findall(text))
    return dict(sorted(counts.items()))
