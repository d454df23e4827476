"""The server's endpoints, one router per family; ``ROUTERS`` is what the app mounts.

A new endpoint is a router module here plus one line in ``ROUTERS``.
"""

from llmapp.server.routes import chat, completions, embeddings, models

ROUTERS = [models.router, chat.router, completions.router, embeddings.router]
