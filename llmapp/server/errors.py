"""Errors as OpenAI's JSON body with the right status, never a traceback.

:func:`api_error` maps anything a request can raise to the :class:`~llmapp.server.schemas.APIError`
a client should see; :func:`add_error_handlers` installs the mapping on the app.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmapp.core.errors import ConfigError, LLMAppError, ModelNotFound, PromptTooLong
from llmapp.server.schemas import APIError

log = logging.getLogger(__name__)


def api_error(exc: BaseException, param: str | None = None) -> APIError:
    """Map any exception from a request or a job to the OpenAI error a client should see."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, PromptTooLong):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, ModelNotFound):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ConfigError):
        name = str(exc).split("=", 1)[0].split(":", 1)[0].strip()
        return APIError(400, str(exc), param=name if name.isidentifier() else param, code="invalid_value")
    if isinstance(exc, LLMAppError):
        return APIError(400, str(exc), param=param)
    log.error("internal error", exc_info=exc)
    return APIError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")


def reply(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def on_api_error(request: Request, exc: APIError) -> JSONResponse:
        return reply(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            message = f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
        else:
            message = f"{param + ': ' if param else ''}{first.get('msg', 'invalid value')}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})"
        return reply(APIError(400, message, param=param, code="invalid_value" if param else None))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return reply(APIError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return reply(api_error(exc))
