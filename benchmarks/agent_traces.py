"""Real coding-agent trajectories (mini-swe-agent, OpenAI chat with tools) as replayable requests.

The data lives outside the repository (`../shared/data/agent-traces/mini-swe-agent-dev/`, MIT; its
README says how to replay it) and is never copied in. A trajectory is one user turn: the system
message, the task, then assistant steps that each call the `bash` tool and the tool's answers. The
agent's request before step i is `messages[:i]` (agents resend everything); the fake upstream
answers it with `messages[i]`, so what the proxy stores is what the agent really did next.

Messages are cleaned to what OpenAI accepts: the agent's own records (`extra`,
`provider_specific_fields`, `function_call`, `index` in tool calls) and the final `exit` record
are dropped; tool-call arguments keep their recorded bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Trajectory", "load_trajectories", "clean_message", "split_of", "BASH_TOOL", "TUNING", "HELD_OUT", "DEFAULT_TRACES"]

DEFAULT_TRACES = "../shared/data/agent-traces/mini-swe-agent-dev"
# Issue 18: tune on these projects, report the others as held out (and tune nothing on them).
TUNING = ("marshmallow", "pvlib", "pydicom", "astroid")
HELD_OUT = ("pyvista", "sqlfluff")
# mini-swe-agent's one tool, declared as OpenAI function calling expects it.
BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Execute a bash command in a fresh subshell and return its return code and output.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string", "description": "the command to run"}},
                       "required": ["command"]},
    },
}
_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


@dataclass(frozen=True)
class Trajectory:
    name: str  # the SWE-bench instance id
    split: str  # "tuning" or "held_out"
    messages: tuple[dict[str, Any], ...]

    def steps(self) -> range:
        """Indices of the assistant messages the agent produced after reading `messages[:i]`."""
        return range(2, len(self.messages))

    def is_step(self, i: int) -> bool:
        return bool(self.messages[i]["role"] == "assistant")


def split_of(name: str) -> str:
    project = name.split("__", 1)[-1].lower()
    if any(project.startswith(p) for p in HELD_OUT):
        return "held_out"
    if any(p in project for p in TUNING):
        return "tuning"
    raise ValueError(f"trajectory {name!r} belongs to neither the tuning nor the held-out projects")


def clean_message(message: dict[str, Any]) -> dict[str, Any]:
    """The message as OpenAI accepts it: only the wire fields, tool calls without `index`."""
    out = {k: message[k] for k in _MESSAGE_KEYS if message.get(k) is not None}
    if message.get("role") == "assistant" and "content" not in out:
        out["content"] = None
    if out.get("tool_calls"):
        out["tool_calls"] = [{"id": c["id"], "type": c.get("type") or "function",
                              "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                             for c in out["tool_calls"]]
    else:
        out.pop("tool_calls", None)
    return out


def load_trajectories(folder: Path) -> list[Trajectory]:
    """Every `*.traj.json` in `folder`, cleaned, in file-name order."""
    found: list[Trajectory] = []
    for path in sorted(folder.glob("*.traj.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        messages = tuple(clean_message(m) for m in raw["messages"] if m.get("role") in ("system", "user", "assistant", "tool"))
        name = str(raw.get("instance_id") or path.name.removesuffix(".traj.json"))
        found.append(Trajectory(name, split_of(name), messages))
    return found
