"""``llmapp serve``: run the OpenAI-compatible HTTP server (``llmapp.server.app``) under uvicorn.

    llmapp serve
    llmapp serve --model smollm2-135m-instruct --model minilm-l6 --store ./store --api-key sk-local
"""

from __future__ import annotations

import click

_EXAMPLE = """\
Try it:
  curl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth_h} \\
    -d '{{"model": "{chat}", "messages": [{{"role": "user", "content": "Hello!"}}], "max_tokens": 32}}'

  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="{key}")
  for chunk in client.chat.completions.create(model="{chat}", stream=True,
                                              messages=[{{"role": "user", "content": "Hello!"}}]):
      print(chunk.choices[0].delta.content or "", end="", flush=True)
"""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 exposes the server to your network.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--model", "models", multiple=True,
              help="Model to serve (repeatable): registry name, HF directory, .gguf file, or rag:STORE_DIR. "
                   "Default: smollm2-135m-instruct and minilm-l6.")
@click.option("--store", "stores", multiple=True, type=click.Path(file_okay=False),
              help="RAG store folder (repeatable), served as rag:<folder name>.")
@click.option("--chat-model", default=None, help="Chat model that answers for RAG stores (default: the first served).")
@click.option("--backend", type=click.Choice(["llamacpp", "hf", "openai"]), default=None,
              help="What runs the chat models: llamacpp (GGUF, batches concurrent requests), hf (transformers), "
                   "openai (relay to another server). Default: chosen per model.")
@click.option("--threads", default="auto", show_default=True,
              help="llama.cpp decoding threads; auto leaves one core free (fastest on a busy machine).")
@click.option("--api-key", envvar="LLMAPP_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /health (env: LLMAPP_API_KEY).")
@click.option("--workers", default=2, show_default=True, type=int, help="Generations run at once.")
@click.option("--queue-size", default=64, show_default=True, type=int,
              help="Requests that may wait for a worker; beyond that the server answers 429.")
@click.option("--max-body-bytes", default=1_000_000, show_default=True, type=int,
              help="Largest request body; bigger ones get 413.")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Browser origin allowed to call (repeatable).")
def serve(host: str, port: int, models: tuple[str, ...], stores: tuple[str, ...], chat_model: str | None,
          backend: str | None, threads: str, api_key: str | None, workers: int, queue_size: int, max_body_bytes: int,
          cors_origins: tuple[str, ...]) -> None:
    """Serve models and RAG stores over an OpenAI-compatible HTTP API.

    Endpoints: /v1/models, /v1/chat/completions (streaming), /v1/completions, /v1/embeddings, /health,
    and a chat page for the browser at /.
    Models load before the server accepts traffic.

    \b
    Examples:
      llmapp serve                                   # bundled chat + embeddings on 127.0.0.1:8000
      llmapp serve --store ./store --api-key sk-local
      llmapp serve --workers 4 --threads 2           # 4 streams batched on llama.cpp
      curl http://127.0.0.1:8000/v1/models
    """
    import uvicorn

    from llmapp.server import ServeConfig, create_app

    config = ServeConfig(host=host, port=port, stores=list(stores), chat_model=chat_model, backend=backend,
                         threads=_threads(threads), api_key=api_key,
                         workers=workers, queue_size=queue_size, max_body_bytes=max_body_bytes,
                         cors_origins=list(cors_origins))
    if models:
        config.models = list(models)
    elif stores:  # a store needs a chat model to answer; embeddings come with the store
        config.models = [chat_model or config.models[0]]
    _check_port(host, port)  # fail in a second, not after loading the models
    click.echo("loading models ...", err=True)
    app = create_app(config)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    chats = [n for n, m in app.state.catalog.items() if m.kind in ("chat", "rag")]
    click.echo(f"serving {', '.join(app.state.catalog)} at {url}/v1")
    click.echo(f"chat in your browser: {url}/")
    if chats:
        click.echo(_EXAMPLE.format(url=url, chat=chats[0], key="YOUR_API_KEY" if api_key else "none",
                                   auth_h=' -H "Authorization: Bearer $LLMAPP_API_KEY"' if api_key else ""))
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _threads(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise click.BadParameter(f"{value!r} is not 'auto' or a number of threads from 1 to 256", param_hint="--threads")
    return int(value)


def _check_port(host: str, port: int) -> None:
    import socket

    from llmapp.core.errors import LLMAppError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LLMAppError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
