"""Redaction of secrets in ingested text, before anything is stored.

Strings shaped like provider keys, access tokens and private keys are replaced by a marker such as
`[REDACTED:openai_key]`. The marker keeps the kind, so a later compile can say (in its manifest)
that the model saw a redacted secret, and the surrounding text still reads sensibly.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

__all__ = ["redact", "redact_value", "count_markers", "MARKER"]

MARKER = re.compile(r"\[REDACTED:([a-z_]+)\]")
# Keys whose values are identifiers or ciphertext, never text a person wrote: a reasoning item's
# `encrypted_content` must come back byte for byte or the provider refuses it.
_VERBATIM_KEYS = frozenset({"url", "id", "type", "call_id", "encrypted_content"})

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
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


def redact(text: str) -> tuple[str, Counter[str]]:
    """Return `text` with secrets replaced, and how many of each kind were found."""
    found: Counter[str] = Counter()
    if not text:
        return text, found
    for kind, pattern in _PATTERNS:
        text, n = pattern.subn(f"[REDACTED:{kind}]", text)
        if n:
            found[kind] += n

    def _assignment(match: re.Match[str]) -> str:
        if MARKER.fullmatch(match.group(4)) or match.group(4).startswith("[REDACTED:"):
            return match.group(0)
        found["secret_assignment"] += 1
        return f"{match.group(1)}{match.group(2)}{match.group(3)}[REDACTED:secret_assignment]{match.group(3)}"

    text = _ASSIGNMENT.sub(_assignment, text)
    return text, found


def redact_value(value: Any, found: Counter[str]) -> Any:
    """Redact every string inside a JSON-like value (tool-call arguments, content parts)."""
    if isinstance(value, str):
        clean, n = redact(value)
        found.update(n)
        return clean
    if isinstance(value, list):
        return [redact_value(v, found) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in _VERBATIM_KEYS else redact_value(v, found)) for k, v in value.items()}
    return value


def count_markers(texts: list[str]) -> dict[str, int]:
    """How many redaction markers of each kind appear in `texts`."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(MARKER.findall(text))
    return dict(sorted(counts.items()))
