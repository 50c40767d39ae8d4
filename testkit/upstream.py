"""`FakeUpstream`: one fake OpenAI + Gemini provider for tests and benchmarks, loopback only,
scriptable, recording every request.

It composes the APIs it speaks (`fake_openai`, `fake_gemini`, `fake_responses`, `fake_anthropic`) over one shared `Script` (reply queue
and request log) and one `Faults` (fault modes chosen by model name). A new API lands as its own
module with a `routes()` method and one line in `app()`, before the OpenAI catch-all.

    fake = FakeUpstream()
    fake.enqueue(Reply(text="hello"))   # with the queue empty the reply is "echo: <last user text>"
    served = serve_in_thread(fake.app(), lifespan="off")
    ... fake.last_chat().json() ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .fake_anthropic import AnthropicApi
from .cookies import SetsCookie
from .fake_gemini import GeminiApi
from .fake_openai import OpenAIApi
from .fake_responses import ResponsesApi
from .faults import Faults
from .script import Script

__all__ = ["FakeUpstream"]


@dataclass
class FakeUpstream(Script):
    faults: Faults = field(default_factory=Faults)
    # Holds what the Responses API stored (responses, items), so it lives as long as the fake.
    responses_api: ResponsesApi = field(init=False)
    # Anthropic's Messages API; holds the prompt cache it bills by the breakpoint rule.
    anthropic_api: AnthropicApi = field(init=False)

    def __post_init__(self) -> None:
        self.responses_api = ResponsesApi(self)
        self.anthropic_api = AnthropicApi(self)

    def reset(self) -> None:
        super().reset()
        self.faults.reset()
        self.responses_api.reset()
        self.anthropic_api.reset()

    def app(self) -> Starlette:
        openai = OpenAIApi(self, self.faults)
        gemini = GeminiApi(self)
        return Starlette(routes=[Route("/healthz", _healthz), *openai.routes(), *gemini.routes(), *self.responses_api.routes(),
                                 *self.anthropic_api.routes(),
                                 openai.catch_all()], middleware=[Middleware(SetsCookie)])


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")
