"""llmapp's OpenAI-compatible HTTP server: FastAPI routes over the local models and RAG stores.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (SSE streaming in OpenAI's chunk format,
``stream_options.include_usage``, stop, max_tokens / max_completion_tokens, temperature, top_p,
seed, usage), ``POST /v1/completions``, ``POST /v1/embeddings`` (float or base64) and ``GET /health``.
Generation runs on a bounded worker pool (``llmapp.server_pool``): a full queue answers 429 with
``Retry-After``, and a client that disconnects stops its generation. Every error is OpenAI's JSON
body with the right status, never a traceback.

    llmapp serve --model smollm2-135m-instruct --model minilm-l6 --store ./store --api-key sk-local

    from llmapp.server import ServeConfig, create_app, running
    with running(create_app(ServeConfig())) as base_url:      # a real server on an ephemeral port
        openai.OpenAI(base_url=base_url + "/v1", api_key="none").models.list()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmapp import web
from llmapp.config import RAGConfig
from llmapp.errors import LLMAppError, ModelNotFound, PromptTooLong
from llmapp.models import DEFAULT_CHAT, DEFAULT_EMBEDDINGS
from llmapp.server_models import (
    Final,
    chat_producer,
    completion_producer,
    embeddings_producer,
    load_catalog,
    lookup,
)
from llmapp.server_pool import Job, QueueFull, WorkerPool
from llmapp.server_schemas import (
    APIError,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    EmbeddingItem,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    Usage,
    new_id,
)

log = logging.getLogger(__name__)

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy may hold tokens back


@dataclass
class ServeConfig:
    """How ``llmapp serve`` runs."""

    host: str = "127.0.0.1"  # loopback: nothing outside this machine can reach it unless you say so
    port: int = 8000  # OpenAI-compatible servers (vLLM, llama.cpp) default to 8000/8080; clients expect it
    models: list[str] = field(default_factory=lambda: [DEFAULT_CHAT, DEFAULT_EMBEDDINGS])  # names served as is
    stores: list[str] = field(default_factory=list)  # RAG store folders, each served as rag:<folder name>
    chat_model: str | None = None  # answers for RAG stores; None = the first chat model served
    api_key: str | None = None  # set: every endpoint but /health needs "Authorization: Bearer KEY"
    workers: int = 2  # generations at once; on 2 CPU cores more threads only split the same FLOPs
    queue_size: int = 64  # requests waiting for a worker before 429; 64 covers a burst of 50 streams
    max_body_bytes: int = 1_000_000  # 413 above this: 1 MB holds ~250k tokens of text, far past the window
    default_max_tokens: int = 512  # when a chat request sets none; OpenAI's "until the window" is slow on CPU
    max_embedding_inputs: int = 2048  # OpenAI's own limit on inputs per embeddings request
    cors_origins: list[str] = field(default_factory=list)  # browser front ends allowed to call; empty = none
    warmup: bool = True  # one 1-token generation at start, so the first client does not pay for allocation
    rag: RAGConfig = field(default_factory=RAGConfig)  # retrieval settings for rag:<name> models


def create_app(config: ServeConfig) -> FastAPI:
    """Load every served model, then build the FastAPI app.

    Args:
        config: what to serve and how.

    Returns:
        An ASGI app; run it with uvicorn (``llmapp serve`` does) or :func:`running`.

    Raises:
        LLMAppError: an unknown model, a missing store, a bad setting.
    """
    if config.workers < 1 or config.queue_size < 0 or config.max_body_bytes < 1:
        raise LLMAppError("workers must be >= 1, queue_size >= 0 and max_body_bytes >= 1")
    catalog = load_catalog(config)
    if config.warmup:
        _warm_up(catalog)
    pool = WorkerPool(config.workers, config.queue_size)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    app = FastAPI(title="llmapp", version=_version(), lifespan=lifespan)
    app.state.config, app.state.catalog, app.state.pool = config, catalog, pool
    started = int(time.time())
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(catalog), **pool.stats()}

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=n, created=started, kind=m.kind, context_window=m.context_window)
                                for n, m in catalog.items()])

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> ModelCard:
        served = lookup(catalog, model_id, ("chat", "embeddings", "rag"), "/v1/models")
        return ModelCard(id=served.name, created=started, kind=served.kind, context_window=served.context_window)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        body.refuse_unsupported()
        served = lookup(catalog, body.model, ("chat", "rag"), "/v1/chat/completions")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        if not any(m["content"].strip() for m in messages):
            raise APIError(400, "messages are empty: write a message for the model to answer", param="messages")
        produce = chat_producer(served, messages, _settings(body, config))
        cid, created = new_id("chatcmpl"), int(time.time())

        def chunk(delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=cid, created=created, model=body.model,
                                       choices=[ChunkChoice(delta=delta, finish_reason=finish)])

        def finals(final: Final) -> list[BaseModel]:
            last: list[BaseModel] = [chunk(Delta(), final.finish_reason)]
            if body.include_usage():
                last.append(ChatCompletionChunk(id=cid, created=created, model=body.model, choices=[],
                                                usage=_usage(final)))
            return last

        def full(text: str, final: Final) -> BaseModel:
            return ChatCompletion(id=cid, created=created, model=body.model, usage=_usage(final), choices=[
                ChatChoice(message=AssistantMessage(content=text), finish_reason=final.finish_reason)])

        return await _respond(request, pool, produce, f"chat {body.model}", "messages", body.stream,
                              body.include_usage(), [chunk(Delta(role="assistant", content=""))],
                              lambda text: chunk(Delta(content=text)), finals, full)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        body.refuse_unsupported()
        served = lookup(catalog, body.model, ("chat",), "/v1/completions")
        if not body.text().strip():
            raise APIError(400, "prompt is empty: give the model some text to continue", param="prompt")
        produce = completion_producer(served, body.text(), _settings(body, config), body.echo)
        cid, created = new_id("cmpl"), int(time.time())

        def chunk(text: str, finish: str | None = None, usage: Usage | None = None) -> Completion:
            return Completion(id=cid, created=created, model=body.model, usage=usage,
                              choices=[CompletionChoice(text=text, finish_reason=finish)])

        def finals(final: Final) -> list[BaseModel]:
            last: list[BaseModel] = [chunk("", final.finish_reason)]
            if body.include_usage():
                last.append(Completion(id=cid, created=created, model=body.model, choices=[], usage=_usage(final)))
            return last

        def full(text: str, final: Final) -> BaseModel:
            return chunk(text, final.finish_reason, _usage(final))

        return await _respond(request, pool, produce, f"completion {body.model}", "prompt", body.stream,
                              body.include_usage(), [], chunk, finals, full)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
        served = lookup(catalog, body.model, ("embeddings",), "/v1/embeddings")
        texts = body.texts()
        if len(texts) > config.max_embedding_inputs:
            raise APIError(400, f"{len(texts)} inputs is over the limit of {config.max_embedding_inputs} per "
                           "request; send them in batches", param="input")
        job = _submit(pool, embeddings_producer(served, texts), f"embeddings {body.model}")
        vectors, tokens = await _first(request, job, "input")
        if body.dimensions not in (None, vectors.shape[1]):
            raise APIError(400, f"{body.model} makes {vectors.shape[1]}-dimensional vectors; drop `dimensions` "
                           "or set it to that", param="dimensions")
        if body.encoding_format == "base64":  # little-endian float32, which the openai client decodes
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
        else:
            data = vectors.tolist()
        return EmbeddingList(model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
                             data=[EmbeddingItem(index=i, embedding=e) for i, e in enumerate(data)])

    app.add_middleware(_Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    web.mount(app)  # last, so the chat page is answered before the API key check (the page asks for the key)
    return app


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL (port 0 = ephemeral).

    Used by the tests and the benchmark; ``llmapp serve`` runs uvicorn in the foreground instead.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="llmapp-uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LLMAppError(f"the server did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# ---- request plumbing -----------------------------------------------------------------------------------

def _settings(body: ChatCompletionRequest | CompletionRequest, config: ServeConfig) -> dict[str, Any]:
    """The request's decoding settings as ``load_chat_model``/``load_llm`` keywords; unset = model default."""
    settings: dict[str, Any] = {"max_tokens": body.token_limit() or config.default_max_tokens, "stop": body.stop}
    for name in ("temperature", "top_p", "seed"):
        if getattr(body, name) is not None:
            settings[name] = getattr(body, name)
    return settings


def _usage(final: Final) -> Usage:
    return Usage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens,
                 total_tokens=final.prompt_tokens + final.completion_tokens)


def _submit(pool: WorkerPool, produce: Callable[[], Iterator[Any]], label: str) -> Job:
    try:
        return pool.submit(produce, label)
    except QueueFull as exc:
        raise APIError(429, f"the server is busy ({pool.workers} generating, {pool.queue_size} waiting); "
                       f"retry in {exc.retry_after} s", type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(exc.retry_after)}) from None


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Cancel ``job`` when the client hangs up before its response starts."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


async def _first(request: Request, job: Job, param: str) -> Any:
    """The job's first item, or its error as an :class:`APIError`; a hang-up meanwhile cancels it."""
    watcher = asyncio.create_task(_watch_disconnect(request, job))
    try:
        return await job.peek()
    except Exception as exc:
        raise _api_error(exc, param) from None
    finally:
        watcher.cancel()
        if job.cancel.is_set():
            log.info("client left before job %d answered", job.id)


async def _respond(request: Request, pool: WorkerPool, produce: Callable[[], Iterator[Any]], label: str,
                   param: str, stream: bool, include_usage: bool, prefix: list[BaseModel],
                   piece: Callable[[str], BaseModel], finals: Callable[[Final], list[BaseModel]],
                   full: Callable[[str, Final], BaseModel]) -> Any:
    """Run a text producer and answer as one JSON body or as SSE chunks ending in ``[DONE]``.

    The first item is awaited before the response starts, so a prompt that is too long (or any early
    error) gets a proper status code even when streaming.
    """
    job = _submit(pool, produce, label)
    try:
        await _first(request, job, param)
        if not stream:
            watcher = asyncio.create_task(_watch_disconnect(request, job))
            try:
                parts = [item async for item in job]
            except Exception as exc:
                raise _api_error(exc, param) from None
            finally:
                watcher.cancel()
            final = parts.pop() if parts and isinstance(parts[-1], Final) else Final(0, 0, "stop")
            return JSONResponse(full("".join(parts), final).model_dump())
    except BaseException:
        job.cancel.set()
        raise
    exclude = None if include_usage else {"usage"}

    async def events() -> AsyncIterator[str]:
        try:
            for chunk in prefix:
                yield _sse(chunk, exclude)
            async for item in job:
                for chunk in finals(item) if isinstance(item, Final) else [piece(item)]:
                    yield _sse(chunk, exclude)
            yield "data: [DONE]\n\n"
        except Exception as exc:  # headers are sent: report it as an error event, which the client raises
            yield f"data: {JSONResponse(_api_error(exc, param).body()).body.decode()}\n\n"
        finally:
            job.cancel.set()  # no-op when finished; stops the model when the client went away

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _sse(chunk: BaseModel, exclude: set[str] | None) -> str:
    return f"data: {chunk.model_dump_json(exclude=exclude)}\n\n"


def _api_error(exc: BaseException, param: str | None = None) -> APIError:
    """Map any exception from a job to the OpenAI error a client should see."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, PromptTooLong):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, ModelNotFound):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, LLMAppError):
        return APIError(400, str(exc), param=param)
    log.error("internal error", exc_info=exc)
    return APIError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")


def _add_error_handlers(app: FastAPI) -> None:
    def reply(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

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
        return reply(_api_error(exc))


class _Guard:
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
                return await _send_error(err, scope, receive, send)
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body_bytes:
            return await _send_error(self._too_large(), scope, receive, send)
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
                return await _send_error(self._too_large(), scope, receive, send)
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


async def _send_error(err: APIError, scope: dict, receive: Callable, send: Callable) -> None:
    await JSONResponse(err.body(), status_code=err.status, headers=err.headers)(scope, receive, send)


def _warm_up(catalog: dict) -> None:
    """One 1-token generation per chat model: the first real request then pays no allocation cost."""
    from llmapp.models import load_chat_model

    for name in sorted({m.target if m.kind == "chat" else m.chat_model for m in catalog.values()
                        if m.kind in ("chat", "rag")}):
        try:
            load_chat_model(name, max_tokens=1).invoke("Hi")
        except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop the server; requests will say why
            log.warning("warm-up of %s failed: %s", name, exc)


def _version() -> str:
    from llmapp import __version__

    return __version__
