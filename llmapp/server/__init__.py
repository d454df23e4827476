"""``llmapp serve``: an OpenAI-compatible HTTP server over the local models and RAG stores.

- ``app``: the FastAPI app factory, its config and :func:`running` (a server on loopback);
- ``catalog``: what is served and the producers that answer requests;
- ``pool``: the bounded worker pool; ``schemas``: the OpenAI wire format.

    from llmapp.server import ServeConfig, create_app, running
    with running(create_app(ServeConfig())) as base_url:
        ...
"""

from llmapp.server.app import create_app, running
from llmapp.server.config import ServeConfig

__all__ = ["ServeConfig", "create_app", "running"]
