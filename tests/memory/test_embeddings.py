from __future__ import annotations

import json

import numpy as np
import pytest

from memory.recall.embeddings import load_embedder, provision_default_model
from memory.errors import EmbeddingModelError


def test_provision_assembles_the_model_folder_offline(tmp_path):
    folder = provision_default_model(tmp_path / "model")
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"}
    # The trained sequence length (256), not the tokenizer's 512, bounds what fastembed feeds the model.
    assert json.loads((folder / "tokenizer_config.json").read_text())["max_length"] == 256
    assert provision_default_model(folder) == folder  # idempotent


def test_real_model_vectors_are_normalised_and_order_independent(real_embedder):
    texts = ["Authentication timeout configured for 30 minutes", "hi", "def f(x):\n    return x * 2\n" * 20]
    together = real_embedder.embed(texts)
    alone = np.vstack([real_embedder.embed([t]) for t in texts])
    assert together.shape == (3, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-6)


def test_none_and_errors_name_the_fix(tmp_path):
    assert load_embedder("none") is None
    with pytest.raises(EmbeddingModelError, match="model_dir"):
        load_embedder(None, tmp_path / "missing")
    with pytest.raises(EmbeddingModelError, match="never downloaded"):
        load_embedder("BAAI/bge-small-en-v1.5")
