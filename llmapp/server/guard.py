"""The server's front door: ASGI middleware for bearer-token auth and the request-body size limit.

Pure ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware would hide client
disconnects from streaming responses, and those are what stop a generation.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from llmapp.server.schemas import APIError


class Guard:
    """ASGI middleware: bearer-token auth (all but /health) and the request-body size limit (413).

    Pure ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware would hide client
    disconnects from streaming responses, and those are what stop a generation.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and scope["path"] != "/health" and scope["method"] != "OPTIONS":
            token = headers.get("authorization", "")
            token = token[7:].strip() if token[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                err = APIError(401, "missing or incorrect API key; send the server's --api-key as "
                               "'Authorization: Bearer KEY'", type="authentication_error", code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})
                return await send_error(err, scope, receive, send)
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            return await send_error(self._too_large(), scope, receive, send)
        body, more = [], True
        size = 0
        while more:  # buffer the body (bounded) so chunked uploads are held to the limit too
            message = await receive()
            if message["type"] != "http.request":
                return
            body.append(message.get("body", b""))
            size += len(body[-1])
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                return await send_error(self._too_large(), scope, receive, send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()  # after the body: disconnects reach the app

        await self.app(scope, replay, send)

    def _too_large(self) -> APIError:
        return APIError(413, f"request body is over {self.max_body_bytes} bytes; send less, or raise the limit "
                        "with llmapp serve --max-body-bytes", code="request_too_large")


async def send_error(err: APIError, scope: dict, receive: Callable, send: Callable) -> None:
    await JSONResponse(err.body(), status_code=err.status, headers=err.headers)(scope, receive, send)
