"""How ``llmapp serve`` runs: one dataclass, the single source of the server's settings and its CLI flags.

    from llmapp.server import ServeConfig
    ServeConfig(models=["smollm2-135m-instruct"], stores=["./store"], api_key="sk-local")

Safe by default: loopback only, Host names checked (DNS rebinding), a non-loopback ``host`` refused
without an API key unless ``insecure``, and every request bounded (body bytes, ``max_tokens``, a
generation deadline, embeddings inputs and tokens). ``docs/security.md`` has the threat model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmapp.core.config import RAGConfig
from llmapp.core.errors import ConfigError
from llmapp.models.registry import DEFAULT_CHAT, DEFAULT_EMBEDDINGS
from llmapp.server.guard import is_loopback


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
    allowed_hosts: list[str] = field(default_factory=list)  # Host names answered beyond loopback and --host; "*" = any
    insecure: bool = False  # allow a non-loopback host without an API key (anyone on the network may use it)
    workers: int = 2  # generations at once (llama.cpp batches them); more only split the same 2 cores
    queue_size: int = 64  # requests waiting for a worker before 429; 64 covers a burst of 50 streams
    max_body_bytes: int = 1_000_000  # 413 above this: 1 MB holds ~250k tokens of text, far past the window
    default_max_tokens: int = 512  # when a chat request sets none; OpenAI's "until the window" is slow on CPU
    max_tokens: int = 2048  # cap on any request's max_tokens (larger asks are cut to it): bounds one request's cost
    timeout: float = 300.0  # seconds one generation may run; it then stops with what it has (finish_reason "length")
    max_embedding_inputs: int = 256  # inputs per embeddings request: 256 x 256 tokens is a few seconds on 2 cores
    max_embedding_tokens: int = 32_768  # tokens in all inputs of one embeddings request together
    cors_origins: list[str] = field(default_factory=list)  # browser front ends allowed to call; empty = none
    warmup: bool = True  # one 1-token generation at start, so the first client does not pay for allocation
    rag: RAGConfig = field(default_factory=RAGConfig)  # retrieval settings for rag:<name> models

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue_size < 0 or self.max_body_bytes < 1:
            raise ConfigError("workers must be >= 1, queue_size >= 0 and max_body_bytes >= 1")
        for name, low in (("max_tokens", 1), ("default_max_tokens", 1), ("max_embedding_inputs", 1),
                          ("max_embedding_tokens", 1), ("port", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r}: must be a whole number of at least {low}")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout={self.timeout!r}: must be a number of seconds above 0")
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens)
        if not is_loopback(self.host) and not self.api_key and not self.insecure:
            raise ConfigError(f"--host {self.host} exposes the server beyond this machine, and it has no API key: "
                              "anyone who can reach it could use it and read the served stores; pass --api-key KEY "
                              "(or set LLMAPP_API_KEY), or --insecure to allow it anyway")
