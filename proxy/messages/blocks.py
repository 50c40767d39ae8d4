"""Anthropic Messages <-> the chat messages memory aligns, stores and lays out.

Memory speaks OpenAI chat messages. Each Anthropic message becomes one or more chat messages that
carry the original content blocks under `CARRIER`, so the `messages` (and `system`) forwarded
upstream are rebuilt from the blocks exactly as the client sent them (thinking signatures, images,
`cache_control`, `is_error`, every field), or as the provider returned them for stored replies:

    system (string or text blocks)      -> one system message, the original under `SYSTEM_KEY`
    user message without tool_result    -> a user message: its text; the blocks carried
    user message with tool_result(s)    -> one tool message per tool_result (tool_call_id = its
                                           tool_use_id, content = its text), in order, the message's
                                           other blocks riding with the tool_result before them;
                                           all parts share the message's `group`, so they are
                                           rebuilt as one user message
    assistant message                   -> an assistant message: the text of its text blocks, a
                                           tool call per tool_use block (arguments = its input as
                                           JSON), the blocks carried (thinking ones included)

Messages whose meaning is not all in their text (images, thinking, is_error, documents) add an
`item_key`, a digest of their blocks without `cache_control` (clients move their breakpoints from
message to message, and a moved breakpoint must not make a resent message look new). Messages
with images add their tokens by Anthropic's rule (`images`) under `EXTRA_TOKENS_KEY`, which
memory's counter adds to the text's, so images count toward the budget.

Rebuilding (`to_anthropic`): the client's system message goes back as `system`; messages memory
wrote (the state block, evidence: system role) become text blocks of a user message in their
place; a chat message whose content no longer matches its carried blocks (a tool result the
agent-loop compaction replaced by a stub) is rebuilt from its chat form, keeping the
tool_use_id (`rewrite` does the same for the compaction's hook, tool-call arguments included);
messages of memory's own (stored from the chat route) are rebuilt from their chat
form. When the laid-out conversation would start with an assistant message (the window begins
mid-exchange), a one-line user message says earlier turns are not shown: Anthropic wants the
user to speak first.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from memory.ingest.transcript import strip_cache_control
from memory.recall.tokens import EXTRA_TOKENS_KEY

from proxy.messages.images import blocks_image_tokens

__all__ = ["CARRIER", "SYSTEM_KEY", "OMITTED_NOTE", "to_messages", "to_anthropic", "Rebuilt", "rewrite", "reply_message", "system_text",
           "strip_cache_control"]

CARRIER = "x_anthropic"
SYSTEM_KEY = "x_anthropic_system"
OMITTED_NOTE = "(Earlier turns of this conversation are not shown here; memory-runtime keeps them.)"
_TEXT_KINDS = frozenset({"text"})


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _identity(blocks: Any) -> Any:
    """What identifies content: no breakpoints, no unset fields."""
    clean = strip_cache_control(blocks)
    if isinstance(clean, list):
        return [{k: v for k, v in b.items() if v is not None} if isinstance(b, dict) else b for b in clean]
    return clean


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") in _TEXT_KINDS)


def system_text(system: Any) -> str:
    """The text of a `system` value (a string or a list of text blocks)."""
    return _text(system)


def _tool_result_text(block: dict[str, Any]) -> str:
    return _text(block.get("content"))


def _opaque(blocks: list[dict[str, Any]], plain: frozenset[str]) -> bool:
    return any(not isinstance(b, dict) or b.get("type") not in plain or b.get("is_error") for b in blocks)


def _user(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        out: dict[str, Any] = {"role": "user", "content": _text(content), CARRIER: {"content": content}}
        if isinstance(content, list) and _opaque(content, _TEXT_KINDS):
            out["item_key"] = _digest(_identity(content))
        _count_images(out, content)
        return [out]
    group = _digest(_identity(content))
    parts: list[list[dict[str, Any]]] = []
    leading: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            parts.append(leading + [block])
            leading = []
        elif parts:
            parts[-1].append(block)
        else:
            leading.append(block)
    out_parts: list[dict[str, Any]] = []
    for n, blocks in enumerate(parts):
        result = next(b for b in blocks if b.get("type") == "tool_result")
        others = [_text([b]) for b in blocks if b is not result]
        text = "\n".join(t for t in [_tool_result_text(result), *others] if t)
        part: dict[str, Any] = {"role": "tool", "tool_call_id": str(result.get("tool_use_id") or ""), "content": text,
                                CARRIER: {"content": blocks, "group": group, "part": n}}
        if len(blocks) > 1 or not isinstance(result.get("content"), (str, type(None))) or result.get("is_error"):
            part["item_key"] = _digest(_identity(blocks))
        _count_images(part, blocks)
        out_parts.append(part)
    return out_parts


def _count_images(message: dict[str, Any], blocks: Any) -> None:
    """Images are not in the chat text: their tokens (Anthropic's rule) ride with the message so
    memory's counter and the budget see them."""
    tokens = blocks_image_tokens(blocks)
    if tokens:
        message[EXTRA_TOKENS_KEY] = tokens


def _assistant(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    out: dict[str, Any] = {"role": "assistant", "content": _text(content) or None, CARRIER: {"content": content}}
    if isinstance(content, list):
        calls = [{"id": str(b.get("id")), "type": "function",
                  "function": {"name": str(b.get("name")), "arguments": json.dumps(b.get("input"), sort_keys=True, ensure_ascii=False)}}
                 for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        if calls:
            out["tool_calls"] = calls
        if _opaque(content, frozenset({"text", "tool_use"})):
            out["item_key"] = _digest(_identity(content))
    return out


def to_messages(system: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages standing for `system` and the Anthropic `messages`, in order."""
    out: list[dict[str, Any]] = []
    if system is not None and system != [] and system != "":
        out.append({"role": "system", "content": system_text(system), SYSTEM_KEY: system})
    for message in messages:
        out.extend(_user(message) if message.get("role") == "user" else [_assistant(message)])
    return out


def rewrite(original: dict[str, Any], rewritten: dict[str, Any]) -> dict[str, Any] | None:
    """A chat message memory rewrote (the agent-loop compaction: a tool output stubbed, long
    tool-call arguments shortened), with its carried blocks changed to say the same: a tool_result
    whose content is the new text (same tool_use_id, `is_error` and breakpoint kept), tool_use
    inputs from the new arguments, the one text block's new text. None when the blocks cannot carry
    the change (the message then stays whole)."""
    carrier = original.get(CARRIER)
    if not isinstance(carrier, dict) or not isinstance(carrier.get("content"), (str, list)):
        return {**original, **rewritten}
    content = carrier["content"]
    text = rewritten.get("content")
    if original.get("role") == "tool":
        result = next((b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"), None) if isinstance(content, list) else None
        if result is None or not isinstance(text, str):
            return None
        block = {k: v for k, v in result.items() if k in ("type", "tool_use_id", "is_error", "cache_control")}
        block["content"] = text
        stub = {k: v for k, v in {**original, **rewritten}.items() if k != EXTRA_TOKENS_KEY}  # its images are gone
        return {**stub, CARRIER: {**carrier, "content": [block]}}
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) if isinstance(b, dict) else b for b in content]
    if text != original.get("content"):
        texts = [b for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if len(texts) != 1 or not isinstance(text, str):
            return None
        texts[0]["text"] = text
    arguments = {str(c.get("id")): (c.get("function") or {}).get("arguments") for c in rewritten.get("tool_calls") or ()}
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "tool_use" and str(block.get("id")) in arguments:
            try:
                block["input"] = json.loads(arguments[str(block.get("id"))] or "{}")
            except ValueError:
                return None
    new_content: Any = blocks[0]["text"] if isinstance(content, str) else blocks
    return {**original, **rewritten, CARRIER: {**carrier, "content": new_content}}


def reply_message(content: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The assistant chat message storing a reply's content blocks (None for an empty reply)."""
    return _assistant({"role": "assistant", "content": content}) if content else None


# -- back to Anthropic ---------------------------------------------------------------------------------
def _carried(message: dict[str, Any]) -> Any:
    """The carried blocks if the chat message still says what they say (else None: rebuild)."""
    carrier = message.get(CARRIER)
    if not isinstance(carrier, dict) or "content" not in carrier:
        return None
    derived = _user(_rebuilt_user(carrier)) if message.get("role") == "tool" else None
    if derived is not None:
        mine = next((d for d in derived if d.get(CARRIER, {}).get("part") == 0), None)
        if mine is None or mine.get("content") != message.get("content"):
            return None
    elif message.get("role") == "user" and message.get("content") != _text(carrier["content"]):
        return None
    elif message.get("role") == "assistant" and (message.get("content") or None) != (_text(carrier["content"]) or None):
        return None
    return carrier["content"]


def _rebuilt_user(carrier: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(carrier["content"])}


def _from_chat(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A chat message with no usable blocks: its Anthropic form."""
    role = message.get("role")
    text = _text(message.get("content")) if not isinstance(message.get("content"), str) else message["content"]
    if role == "tool" or role == "function":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or message.get("name") or "")}
        if text:
            result["content"] = text
        carrier = message.get(CARRIER)
        if isinstance(carrier, dict) and isinstance(carrier.get("content"), list):
            old = next((b for b in carrier["content"] if isinstance(b, dict) and b.get("type") == "tool_result"), {})
            if old.get("is_error"):
                result["is_error"] = True
        return "user", [result]
    if role == "assistant":
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {"arguments": function.get("arguments")}
            blocks.append({"type": "tool_use", "id": str(call.get("id")), "name": str(function.get("name")),
                           "input": arguments if isinstance(arguments, dict) else {"value": arguments}})
        return "assistant", blocks or [{"type": "text", "text": "(no text)"}]
    return "user", [{"type": "text", "text": text or "(empty)"}]


def _as_list(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


@dataclass(frozen=True)
class Rebuilt:
    """A laid-out prompt in Anthropic's form: `system`, `messages`, and the index in `messages` of
    the last message of the stable frame (None when the frame is empty)."""

    system: Any
    messages: list[dict[str, Any]]
    frame_last: int | None


def to_anthropic(messages: list[dict[str, Any]], sent: Collection[int] = (), frame_end: int = 0) -> Rebuilt:
    """The Anthropic form of a laid-out prompt. `sent` holds the `id()` of the chat messages made
    from this request: carried blocks of any other message (memory's stored copies) lose their
    `cache_control`, since the client's breakpoints of an earlier turn mean nothing now.
    `frame_end`: the chat messages before this index are the stable frame (system, memory's base,
    the verbatim window); nothing is merged across it."""
    system: Any = None
    out: list[dict[str, Any]] = []
    # For each output message: (chat role it came from, its group, its last part, in the frame, memory's).
    marks: list[tuple[str, str | None, int, bool, bool]] = []
    for index, message in enumerate(messages):
        in_frame = index < frame_end
        if SYSTEM_KEY in message:
            system = copy.deepcopy(message[SYSTEM_KEY])
            continue
        role = str(message.get("role"))
        if role in ("system", "developer"):
            block = {"type": "text", "text": _text(message.get("content")) if not isinstance(message.get("content"), str)
                     else message["content"]}
            if marks and marks[-1][4] and marks[-1][3] == in_frame:
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
                marks.append(("memory", None, 0, in_frame, True))
            continue
        carried = _carried(message)
        found = message.get(CARRIER)
        carrier: dict[str, Any] = found if isinstance(found, dict) else {}
        group, part = carrier.get("group"), int(carrier.get("part", 0) or 0)
        if carried is not None:
            content = copy.deepcopy(carried) if id(message) in sent else strip_cache_control(carried)
            anthropic_role = "assistant" if role == "assistant" else "user"
        else:
            anthropic_role, content = _from_chat(message)
        last = marks[-1] if marks else None
        if role == "tool" and last is not None and last[0] == "tool" and last[3] == in_frame and (
                (group is not None and last[1] == group and part == last[2] + 1) or (group is None and last[1] is None)):
            out[-1]["content"] = _as_list(out[-1]["content"]) + _as_list(content)
            marks[-1] = ("tool", group, part, in_frame, False)
            continue
        out.append({"role": anthropic_role, "content": content})
        marks.append((role, group, part, in_frame, False))
    if out and out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": OMITTED_NOTE}]})
        marks.insert(0, ("memory", None, 0, bool(marks[0][3]), True))
    frame = [i for i, m in enumerate(marks) if m[3]]
    return Rebuilt(system, out, frame[-1] if frame else None)
