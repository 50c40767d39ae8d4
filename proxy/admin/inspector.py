"""The inspector page: three static files shipped inside the package (`proxy/static/`), served as
they are. No CDN, no build step, no template: the page is plain HTML, CSS and JavaScript that reads
the `/memory/*` JSON routes with the caller's own credentials.

The files carry no data, so they are served without credentials (a browser cannot add a header to
a navigation); every data request the page makes carries them. A strict Content-Security-Policy
keeps the page to its own scripts and its own origin (stored content is only ever inserted as
text), and `frame-ancestors 'none'` keeps another site from framing its erase button.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["inspector_routes", "UI_PATHS", "STATIC_DIR", "SECURITY_HEADERS"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_FILES = (
    ("/memory/ui", "index.html", "text/html; charset=utf-8"),
    ("/memory/ui/", "index.html", "text/html; charset=utf-8"),
    ("/memory/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/memory/ui/app.css", "app.css", "text/css; charset=utf-8"),
)
UI_PATHS = frozenset(path for path, _, _ in _FILES)
SECURITY_HEADERS = MappingProxyType({
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
})


def _page(body: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=dict(SECURITY_HEADERS))

    return serve


def inspector_routes() -> list[Route]:
    """The page's routes, with the files read once, when the app is built."""
    contents = {name: (STATIC_DIR / name).read_bytes() for _, name, _ in _FILES}
    return [Route(path, _page(contents[name], media), methods=["GET"]) for path, name, media in _FILES]
