from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load

import memory.recall.tokens
from memory.errors import InvalidArgumentError
from memory.recall.tokens import encoding_name_for_model, get_counter

SAMPLES = [
    "Hello, world!",
    "def f(x):\n    return x ** 2  # squares\n\n\n",
    "Ünïcödé — 漢字かな交じり文 and emoji 🚀🔥 mixed with CAPS'S and it'll",
    "   leading and trailing spaces   \r\n\r\n",
    "1234567890 3.14159 0xdeadbeef",
    "<|endoftext|> is just text here",
]


# Where tiktoken's own constructors (tiktoken_ext.openai_public) fetch each encoding from.
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _no_download(blobpath: str) -> bytes:
    raise AssertionError(f"tiktoken tried to fetch {blobpath}: the reference must come from the seeded cache")


def _reference(name: str, monkeypatch: pytest.MonkeyPatch, folder: Path) -> tiktoken.Encoding:
    """tiktoken's own encoding (its pattern, its special tokens, its sha256 check of the file), with
    its download cache seeded from our shipped file: offline, and independent of our constants."""
    url = TIKTOKEN_URL.format(name=name)
    shipped = (Path(memory.recall.tokens.__file__).parent / "tokenizers" / f"{name}.tiktoken").read_bytes()
    (folder / hashlib.sha1(url.encode()).hexdigest()).write_bytes(shipped)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    monkeypatch.setattr(tiktoken.load, "read_file", _no_download)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return tiktoken.get_encoding(name)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encodings_match_tiktoken_token_for_token(name, monkeypatch, tmp_path: Path):
    reference = _reference(name, monkeypatch, tmp_path)
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


def test_chat_formula(monkeypatch, tmp_path: Path):
    # OpenAI's published formula (cookbook "How to count tokens with tiktoken", gpt-4o family):
    # 3 tokens per message, 1 more for a name, 3 for the reply priming; the texts counted by
    # tiktoken's own encoding. Written out here, so a wrong constant in memory.recall.tokens fails.
    ref = _reference("o200k_base", monkeypatch, tmp_path)

    def n(text: str) -> int:
        return len(ref.encode_ordinary(text))

    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there", "name": "bob"}]
    expected = (3 + n("system") + n("You are terse.")) + (3 + n("user") + n("Hi there") + n("bob") + 1) + 3
    assert expected == 19  # (3 + 1 + 4) + (3 + 1 + 2 + 1 + 1) + 3
    assert get_counter("gpt-4o-mini").messages_tokens(messages) == expected
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert get_counter("gpt-4o-mini").messages_tokens([tool]) == 3 + n("tool") + n("call_1") + n("42") + 3


def test_content_parts_counted():
    c = get_counter("gpt-4o-mini")
    text_only = c.message_tokens({"role": "user", "content": "look at this"})
    parts = c.message_tokens({"role": "user", "content": [
        {"type": "text", "text": "look at this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]})
    assert parts == text_only + 85


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4"])
def test_a_numbered_label_counts_as_the_whole_text(model: str) -> None:
    counter = get_counter(model)
    heads = ["[turn ", "", "x", "turn-", "(", "é ", "line\n", "two  ", "ends in 12", "a\t"]
    tails = [" user]", " assistant, excerpt]", "", "]", "7", ".5", "  ", "\n\n", "'s", "abc", " 🚀", "½"]
    numbers = [0, 7, 42, 999, 1000, 1234, 99_999, 100_000, 123_456_789, -5]
    for head in heads:
        for tail in tails:
            for number in numbers:
                assert counter.count_numbered(head, number, tail) == counter.count(f"{head}{number}{tail}"), (head, number, tail)
