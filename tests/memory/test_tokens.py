from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import tiktoken

from memory.errors import InvalidArgumentError
from memory.tokens import REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, encoding_name_for_model, get_counter

SAMPLES = [
    "Hello, world!",
    "def f(x):\n    return x ** 2  # squares\n\n\n",
    "Ünïcödé — 漢字かな交じり文 and emoji 🚀🔥 mixed with CAPS'S and it'll",
    "   leading and trailing spaces   \r\n\r\n",
    "1234567890 3.14159 0xdeadbeef",
    "<|endoftext|> is just text here",
]


def _litellm_tokenizers() -> str:
    spec = importlib.util.find_spec("litellm")
    assert spec and spec.submodule_search_locations
    return str(Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers")


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encodings_match_tiktoken_token_for_token(name, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", _litellm_tokenizers())
    reference = tiktoken.get_encoding(name)
    ours = get_counter("gpt-4o-mini" if name == "o200k_base" else "gpt-4")
    assert ours.encoding_name == name
    for text in SAMPLES:
        assert ours.count(text) == len(reference.encode_ordinary(text))


@pytest.mark.parametrize(
    "model,expected",
    [("gpt-4o-mini", "o200k_base"), ("gpt-4o", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-5", "o200k_base"),
     ("o3-mini", "o200k_base"), ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base"),
     ("gemini/gemini-2.5-flash", "o200k_base"), ("openai/gpt-4o-mini", "o200k_base")],
)
def test_encoding_per_model(model, expected):
    assert encoding_name_for_model(model) == expected


def test_bad_model_name():
    with pytest.raises(InvalidArgumentError):
        encoding_name_for_model("")


def test_chat_formula():
    c = get_counter("gpt-4o-mini")
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there", "name": "bob"}]
    expected = (
        TOKENS_PER_MESSAGE + c.count("system") + c.count("You are terse.")
        + TOKENS_PER_MESSAGE + c.count("user") + c.count("Hi there") + c.count("bob") + 1
        + REPLY_PRIMING_TOKENS
    )
    assert c.messages_tokens(messages) == expected


def test_content_parts_counted():
    c = get_counter("gpt-4o-mini")
    text_only = c.message_tokens({"role": "user", "content": "look at this"})
    parts = c.message_tokens({"role": "user", "content": [
        {"type": "text", "text": "look at this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]})
    assert parts == text_only + 85
