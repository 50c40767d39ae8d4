"""Images on `/v1/messages` count toward the budget by Anthropic's rule (width x height / 750 after
scaling to a 1,568 px long edge, at most 1,600; a URL image 1,600), the same way the fake
upstream bills them."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from memory.recall.tokens import EXTRA_TOKENS_KEY, get_counter
from proxy.messages.blocks import rewrite, to_messages
from proxy.messages.images import MAX_IMAGE_TOKENS, blocks_image_tokens, image_tokens, size_tokens
from testkit.anthropic_rules import prompt_tokens
from testkit.fake_anthropic import anthropic_requests
from testkit.harness import Proxy, Upstream

MODEL = "claude-sonnet-4-5"
KEY = "sk-ant-test-images-key-42"


def _image(size: tuple[int, int], fmt: str = "PNG") -> dict[str, Any]:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 240)).save(out, format=fmt)
    media = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}[fmt]
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": base64.b64encode(out.getvalue()).decode()}}


URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}}


def test_anthropics_table() -> None:
    # Anthropic's documented examples: 200x200 ~54, 1000x1000 ~1334, 1092x1092 ~1590.
    assert (size_tokens(200, 200), size_tokens(1000, 1000), size_tokens(1092, 1092)) == (54, 1334, 1590)
    assert size_tokens(4000, 3000) == MAX_IMAGE_TOKENS  # scaled to 1568x1176 = 2,459 tokens, then capped
    assert size_tokens(3136, 100) == 105  # long edge scaled to 1568: 1568 x 50 / 750


def test_blocks_are_counted_by_their_header_or_the_flat_estimate() -> None:
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        assert image_tokens(_image((200, 200), fmt)) == 54
    assert image_tokens(URL_IMAGE) == MAX_IMAGE_TOKENS
    assert image_tokens({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "bm90IGFuIGltYWdl"}}) == MAX_IMAGE_TOKENS
    nested = [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "shot"}, _image((1000, 1000))]}]
    assert blocks_image_tokens(nested) == 1334
    assert blocks_image_tokens([{"type": "text", "text": "no image"}]) == 0


def test_the_chat_messages_carry_the_image_tokens_and_memorys_counter_adds_them() -> None:
    counter = get_counter(MODEL)
    user = {"role": "user", "content": [{"type": "text", "text": "what is in these?"}, _image((1000, 1000)), URL_IMAGE]}
    plain = {"role": "user", "content": [{"type": "text", "text": "what is in these?"}]}
    (with_images,), (without,) = to_messages(None, [user]), to_messages(None, [plain])
    assert with_images[EXTRA_TOKENS_KEY] == 1334 + MAX_IMAGE_TOKENS and EXTRA_TOKENS_KEY not in without
    assert counter.message_tokens(with_images) == counter.message_tokens(without) + 1334 + MAX_IMAGE_TOKENS
    loop: list[dict[str, Any]] = [{"role": "user", "content": "look"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [_image((200, 200))]}]}]
    tool = to_messages(None, loop)[-1]
    assert tool["role"] == "tool" and tool[EXTRA_TOKENS_KEY] == 54
    # A tool result the compaction replaced by a stub no longer carries its image.
    stubbed = rewrite(tool, {"content": "(screenshot elided)"})
    assert stubbed is not None and EXTRA_TOKENS_KEY not in stubbed


def test_the_fake_bills_images_the_same_way() -> None:
    text = [{"type": "text", "text": "describe"}]
    for image, tokens in ((_image((1000, 1000), "JPEG"), 1334), (_image((4000, 3000)), 1600), (URL_IMAGE, 1600)):
        body = {"model": MODEL, "messages": [{"role": "user", "content": [*text, image]}]}
        bare = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
        assert prompt_tokens(body) - prompt_tokens(bare) == tokens == image_tokens(image)


def test_images_push_a_conversation_over_the_budget(proxy_factory: Callable[..., Proxy], upstream: Upstream) -> None:
    proxy = proxy_factory("upstreams: {retries: 0}\nbudget_tokens: 3000\nagent_budget_tokens: null\n")
    history: list[dict[str, Any]] = []
    with httpx.Client(base_url=proxy.url, timeout=60, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01",
                                                               "X-Memory-Session": "msg-images"}) as http:
        modes = []
        for n in range(3):
            history.append({"role": "user", "content": [{"type": "text", "text": f"screenshot {n}: what changed?"}, _image((1000, 1000))]})
            reply = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 64, "messages": history})
            assert reply.status_code == 200, reply.text
            modes.append(reply.headers["x-memory-mode"])
            history.append({"role": "assistant", "content": reply.json()["content"]})
    # 1,334 tokens a screenshot: two fit in 3,000, three do not (counted as text alone they would).
    assert modes[:2] == ["full_history", "full_history"] and modes[2] != "full_history"
    assert int(reply.headers["x-memory-original-tokens"]) > 3 * 1334
    sent = anthropic_requests(upstream.fake)[-1].json()
    assert prompt_tokens(sent) <= 3000 + 200  # what the upstream bills fits the budget (give or take the count's framing)
