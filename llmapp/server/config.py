"""How ``llmapp serve`` runs: one dataclass, the single source of the server's settings and its CLI flags.

    from llmapp.server import ServeConfig
    ServeConfig(models=["smollm2-135m-instruct"], stores=["./store"], api_key="sk-local")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmapp.core.config import RAGConfig
from llmapp.core.errors import ConfigError
from llmapp.models.registry import DEFAULT_CHAT, DEFAULT_EMBEDDINGS


@dataclass
class ServeConfig:
    """How ``llmapp serve`` runs."""

    host: str = "127.0.0.1"  # loopback: nothing outside this machine can reach it unless you say so
    port: int = 8000  # OpenAI-compatible servers (vLLM, llama.cpp) default to 8000/8080; clients expect it
    models: list[str] = field(default_factory=lambda: [DEFAULT_CHAT, DEFAULT_EMBEDDINGS])  # names served as is
    stores: list[str] = field(default_factory=list)  # RAG store folders, each served as rag:<folder name>
    chat_model: str | None = None  # answers for RAG stores; None = the first chat model served
    backend: str | None = None  # chat backend for every served chat model; None = each model's default
    threads: int | str = "auto"  # llama.cpp decoding threads ("auto" leaves a core free)
    api_key: str | None = None  # set: every endpoint but /health needs "Authorization: Bearer KEY"
    workers: int = 2  # generations at once (llama.cpp batches them); more only split the same 2 cores
    queue_size: int = 64  # requests waiting for a worker before 429; 64 covers a burst of 50 streams
    max_body_bytes: int = 1_000_000  # 413 above this: 1 MB holds ~250k tokens of text, far past the window
    default_max_tokens: int = 512  # when a chat request sets none; OpenAI's "until the window" is slow on CPU
    max_embedding_inputs: int = 2048  # OpenAI's own limit on inputs per embeddings request
    cors_origins: list[str] = field(default_factory=list)  # browser front ends allowed to call; empty = none
    warmup: bool = True  # one 1-token generation at start, so the first client does not pay for allocation
    rag: RAGConfig = field(default_factory=RAGConfig)  # retrieval settings for rag:<name> models

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue_size < 0 or self.max_body_bytes < 1:
            raise ConfigError("workers must be >= 1, queue_size >= 0 and max_body_bytes >= 1")
