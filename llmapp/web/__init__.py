"""The browser chat page of ``llmapp serve``: ``GET /`` and its static files, shipped inside the package.

The page (``static/``) is plain HTML, CSS and ES modules plus two vendored libraries (marked,
DOMPurify): nothing is built at install time, and the page calls only its own origin. Only the files
in :data:`ASSETS` are served, by exact URL, so no request path can reach any other file. Every reply
carries a strict Content-Security-Policy (no inline script, no eval, same-origin only).

The page is answered by an ASGI middleware wrapped around the whole app rather than by routes,
because routes sit behind the API's key check, and the page has to load before the user has typed
the key that it then sends with every API call.

    llmapp serve                  # then open http://127.0.0.1:8000/

    from llmapp import web
    web.mount(app)                # last in create_app, so it wraps the API key and body-size middleware
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.responses import Response

STATIC = Path(__file__).parent / "static"
ASSET_PREFIX = "/static/"

_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# URL name -> content type: the only files served. The vendor LICENSE files ship but are not served.
ASSETS: dict[str, str] = {
    "app.js": _JS,
    "api.js": _JS,
    "conversations.js": _JS,
    "markdown.js": _JS,
    "chat.css": _CSS,
    "icon.svg": "image/svg+xml",
    "vendor/marked.esm.js": _JS,
    "vendor/purify.min.js": _JS,
}
PAGE = "index.html"  # served at "/"

# 'self' only: the page makes no request to another host, runs no inline script or eval, and cannot be framed.
# img-src allows data: for pasted Markdown images; remote images are dropped by the renderer as well.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class _File:
    """One served file, read once: the page is ~150 KB, so memory beats a disk read per request."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.body = path.read_bytes()
        self.media_type = media_type
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


def load_files() -> dict[str, _File]:
    """URL path -> file for the page and every asset.

    Raises:
        FileNotFoundError: a listed file is missing from the install (a packaging bug, so fail at start).
    """
    files = {"/": _File(STATIC / PAGE, "text/html; charset=utf-8")}
    files.update({ASSET_PREFIX + name: _File(STATIC / name, kind) for name, kind in ASSETS.items()})
    return files


def mount(app: Any) -> None:
    """Serve the chat page at ``GET /`` and its files under ``/static/``, without the API key.

    Call it after every other ``add_middleware``: the last one added is the outermost, and the page
    must be answered before the key check runs. Other paths and methods go on to the app unchanged.
    """
    app.add_middleware(_PageMiddleware, files=load_files())


class _PageMiddleware:
    """Pure ASGI: answers GET/HEAD for the listed files, passes everything else through untouched."""

    def __init__(self, app: Any, files: dict[str, _File]) -> None:
        self.app, self.files = app, files

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        file = self.files.get(scope["path"]) if scope["type"] == "http" else None
        if file is None or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        # no-cache = revalidate each load: an upgraded llmapp shows its new page at once, and a 304 is cheap.
        headers = {**SECURITY_HEADERS, "ETag": file.etag, "Cache-Control": "no-cache"}
        if_none_match = dict(scope["headers"]).get(b"if-none-match", b"").decode("latin-1")
        if file.etag in (tag.strip() for tag in if_none_match.split(",")):
            response = Response(status_code=304, headers=headers)
        else:
            response = Response(file.body if scope["method"] == "GET" else b"", media_type=file.media_type,
                                headers={**headers, "Content-Length": str(len(file.body))})
        await response(scope, receive, send)
