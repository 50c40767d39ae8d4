"""What one running app owns, built by the lifespan of `create_app` and kept on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from memory import Runtime

from proxy.config import ProxyConfig
from proxy.messages.upstream import AnthropicUpstream
from proxy.access.identity import Identities
from proxy.metrics import Metrics
from proxy.relay import Relay
from proxy.responses.upstream import ResponsesUpstream
from proxy.chat.upstream import Upstream

__all__ = ["Services", "services"]


@dataclass(frozen=True)
class Services:
    config: ProxyConfig
    runtime: Runtime
    upstream: Upstream
    relay: Relay
    identities: Identities
    metrics: Metrics
    responses: ResponsesUpstream
    anthropic: AnthropicUpstream


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
