"""llmapp's OpenAI-compatible HTTP server: the app factory, and a runner for tests and benchmarks.

Endpoints (``llmapp.server.routes``): ``GET /v1/models``, ``POST /v1/chat/completions`` (SSE
streaming in OpenAI's chunk format, ``stream_options.include_usage``, stop, max_tokens /
max_completion_tokens, temperature, top_p, seed, usage; ``top_k`` and ``repetition_penalty`` as vLLM
names them), ``POST /v1/completions``, ``POST /v1/embeddings`` (float or base64) and ``GET /health``.
Generation runs on a bounded worker pool (``llmapp.server.pool``): a full queue answers 429 with
``Retry-After``, and a client that disconnects stops its generation. Every error is OpenAI's JSON
body with the right status, never a traceback.

    llmapp serve --model smollm2-135m-instruct --model minilm-l6 --store ./store --api-key sk-local

    from llmapp.server import ServeConfig, create_app, running
    with running(create_app(ServeConfig())) as base_url:      # a real server on an ephemeral port
        openai.OpenAI(base_url=base_url + "/v1", api_key="none").models.list()
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI

from llmapp import web
from llmapp.core.errors import LLMAppError
from llmapp.server.catalog import load_catalog
from llmapp.server.config import ServeConfig
from llmapp.server.errors import add_error_handlers
from llmapp.server.guard import Guard
from llmapp.server.pool import WorkerPool
from llmapp.server.routes import ROUTERS

log = logging.getLogger(__name__)


def create_app(config: ServeConfig) -> FastAPI:
    """Load every served model, then build the FastAPI app.

    Raises:
        LLMAppError: an unknown model, a missing store, a bad setting.
    """
    catalog = load_catalog(config)
    if config.warmup:
        _warm_up(catalog)
    pool = WorkerPool(config.workers, config.queue_size)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    app = FastAPI(title="llmapp", version=_version(), lifespan=lifespan)
    app.state.config, app.state.catalog, app.state.pool, app.state.started = config, catalog, pool, int(time.time())
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"], allow_headers=["*"])
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


def _warm_up(catalog: dict) -> None:
    """One 1-token generation per chat model: the first real request then pays no allocation cost."""
    models = {id(m.chat): m.chat for m in catalog.values() if m.chat is not None}
    for chat in models.values():
        try:
            chat.with_generation({"max_tokens": 1}).invoke("Hi")
        except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop the server; requests will say why
            log.warning("warm-up of %s failed: %s", getattr(chat, "model", chat), exc)


def _version() -> str:
    from llmapp import __version__

    return __version__
