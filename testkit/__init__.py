"""Test servers shared by `tests/` and `benchmarks/` (neither imports the other; both import this).

    script          what a test queues (`Reply`, `ToolCall`) and what the fake saw (`Recorded`)
    fake_openai     the OpenAI routes of the fake upstream (chat completions, models, embeddings)
    fake_gemini     the Gemini routes (generateContent, streamGenerateContent)
    fake_responses  the Responses API routes (create, stream, get, delete, input_items), strict by
                    `responses_rules`
    fake_anthropic  Anthropic's Messages API (create, stream, count_tokens), strict by
                    `anthropic_rules`, billing prompt caching by the breakpoint rule
    faults          fault modes chosen by model name (slow, reset, status)
    upstream        `FakeUpstream`: one fake composing the APIs above
    upstream_server the fake as its own process: `python -m testkit.upstream_server --port N`
    serve           `serve_in_thread`: any ASGI app on a loopback socket in a background thread
    processes       child-process servers (`start_server`, `free_port`, `start_proxy_process`)
    harness         the proxy under test and its fake upstream, as handles tests share
    load            concurrent clients through the proxy, and the check that nothing was lost
    checks          assertions on OpenAI wire shapes (tool-call pairing)

Loopback only. Not shipped in the wheel (see `pyproject.toml`).
"""
