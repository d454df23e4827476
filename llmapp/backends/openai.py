"""The ``openai`` backend: any OpenAI-compatible server as the chat model (vLLM, TGI, Ollama, ``llmapp serve``).

This is how the same chains, REPL, eval and server run against a serving cluster once traffic
outgrows one machine. It is ``langchain_openai.ChatOpenAI`` plus what llmapp's other chat models
have: the context window (asked of the server's ``/v1/models``, which ``llmapp serve`` and vLLM
report), token counts that never download anything, and the ``warm()`` / ``with_generation()``
hooks. The API key comes from ``$OPENAI_API_KEY``, never from the command line.

    llmapp chat --model 'openai:http://10.0.0.5:8000/v1#smollm2-135m-instruct'

    from llmapp import load_chat_model
    chat = load_chat_model("openai:http://127.0.0.1:8000/v1#smollm2-135m-instruct", max_tokens=64)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

from langchain_core.messages import BaseMessage
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from llmapp.core.config import GenerationConfig
from llmapp.core.errors import LLMAppError, ModelNotFound

PREFIX = "openai:"
DEFAULT_WINDOW = 4096  # when the server does not say: a safe guess for budgeting prompts
BYTES_PER_TOKEN = 3  # a conservative estimate for English BPE (~4 bytes a token), so budgets never overflow


def parse_target(name: str) -> tuple[str, str]:
    """``openai:http://host:8000/v1#model`` -> ``("http://host:8000/v1", "model")``.

    Raises:
        ModelNotFound: not of that form (the message shows the form).
    """
    url, _, model = name.removeprefix(PREFIX).partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not model:
        raise ModelNotFound(f"bad remote model {name!r}; write it as openai:http://HOST:PORT/v1#MODEL "
                            "(the API key goes in $OPENAI_API_KEY)")
    return url.rstrip("/"), model


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` against a compatible server, with llmapp's chat-model hooks and offline token counts."""

    backend_name: ClassVar[str] = "openai"
    window: int | None = None  # the model's context window; None = ask the server (else DEFAULT_WINDOW)
    _asked: int | None = PrivateAttr(default=None)

    @classmethod
    def from_target(cls, name: str, **settings: Any) -> ChatOpenAICompatible:
        """Build from ``openai:URL#MODEL`` and llmapp's generation settings."""
        base_url, model = parse_target(name)
        config = GenerationConfig(**{k: v for k, v in settings.items() if k in _FIELDS})
        other = {k: v for k, v in settings.items() if k not in _FIELDS}
        return cls(model=model, base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "none",
                   stream_usage=True, max_retries=other.pop("max_retries", 1), **_openai_kwargs(config), **other)

    @property
    def context_window(self) -> int:
        if self.window:
            return self.window
        if self._asked is None:
            self._asked = self._server_window() or DEFAULT_WINDOW
        return self._asked

    def _server_window(self) -> int | None:
        try:
            card = self.root_client.models.retrieve(self.model_name)
        except Exception:  # noqa: BLE001 - not every server has the route; fall back to the default
            return None
        extra = card.model_extra or {}
        for key in ("context_window", "max_model_len", "context_length"):
            if isinstance(extra.get(key), int) and extra[key] > 0:
                return int(extra[key])
        return None

    def warm(self) -> ChatOpenAICompatible:
        """Check now that the server answers and serves the model (one line if not)."""
        try:
            served = [m.id for m in self.root_client.models.list().data]
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, auth: say which in one line
            raise LLMAppError(f"the server at {self.openai_api_base} did not answer ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); check the URL, that it "
                              "is running, and $OPENAI_API_KEY") from None
        if self.model_name not in served:
            raise ModelNotFound(f"{self.openai_api_base} does not serve {self.model_name!r}; it serves: "
                                f"{', '.join(served) or 'nothing'}")
        return self

    def with_generation(self, config: GenerationConfig | dict[str, Any]) -> ChatOpenAICompatible:
        """A copy decoding with ``config`` (a GenerationConfig, or some of its fields)."""
        current = self.generation_config()
        changes = dataclasses.asdict(config) if isinstance(config, GenerationConfig) else dict(config)
        return self.model_copy(update=_openai_kwargs(current.replace(**changes)))

    def generation_config(self) -> GenerationConfig:
        extra = self.extra_body or {}
        return GenerationConfig(max_tokens=self.max_tokens or 256, temperature=self.temperature or 0.0,
                                top_p=self.top_p if self.top_p is not None else 1.0, seed=self.seed,
                                stop=list(self.stop or []), top_k=extra.get("top_k", 0),
                                repetition_penalty=extra.get("repetition_penalty", 1.0))

    def backend_info(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"backend": "openai", "version": f"langchain-openai {version('langchain-openai')}",
                "base_url": self.openai_api_base, "model": self.model_name}

    # Token counts: ChatOpenAI's use tiktoken, which downloads its tables. A model llmapp knows is
    # counted exactly with its own tokenizer; any other is estimated conservatively.
    def get_token_ids(self, text: str) -> list[int]:
        tokenizer = _local_tokenizer(self.model_name)
        if tokenizer is not None:
            return tokenizer.encode(text)
        return list(range(len(text.encode("utf-8")) // BYTES_PER_TOKEN + 1))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        from llmapp.backends.tools import to_chat_dict

        chat = [to_chat_dict(m) for m in messages]
        tokenizer = _local_tokenizer(self.model_name)
        if tokenizer is not None:
            return len(tokenizer.chat_ids(chat))
        return sum(len(self.get_token_ids(m["content"])) + 4 for m in chat) + 3  # +4: role and separators


_FIELDS = {f.name for f in dataclasses.fields(GenerationConfig)}


_CHAT_OPENAI_FIELDS = ("max_tokens", "temperature", "top_p", "seed", "stop")  # what ChatOpenAI takes itself


def _openai_kwargs(config: GenerationConfig) -> dict[str, Any]:
    """``config`` as ChatOpenAI fields; settings OpenAI lacks go in ``extra_body`` (vLLM and llmapp take them)."""
    kwargs = config.engine_kwargs("openai")
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in _CHAT_OPENAI_FIELDS}
    if config.stop:
        kwargs["stop"] = list(config.stop)
    return {"top_p": None, "seed": None, **kwargs, "extra_body": extra or None}


def _local_tokenizer(model: str) -> Any:
    """The tokenizer of a registry chat model with GGUF weights, else None."""
    from llmapp.models.registry import REGISTRY, gguf_file
    from llmapp.models.tokenizer import gguf_tokenizer

    spec = REGISTRY.get(model)
    if spec is None or spec.kind != "chat" or spec.source().suffix != ".gguf":
        return None
    return gguf_tokenizer(str(gguf_file(model)))
