"""Chat backends: what runs a chat model, behind one seam.

A backend is one adapter module plus one line in :data:`BACKENDS`:

- ``llamacpp`` (``llmapp.backends.llamacpp``): any ``.gguf`` on llama.cpp; the default for the
  bundled SmolLM2, several times faster than ``hf`` in a third of the memory;
- ``hf`` (``llmapp.backends.hf``): any Hugging Face causal LM on torch (training, fine-tuning,
  LoRA, perplexity and export use it);
- ``openai`` (``llmapp.backends.openai``): any OpenAI-compatible server, named
  ``openai:http://HOST:PORT/v1#MODEL``;
- ``fake`` (``llmapp.backends.fake``): scripted replies, for fast tests of code built on llmapp.

:func:`load_chat_model` picks the backend from the name (``openai:`` URLs, ``.gguf`` files, the
registry's choice for its models, else ``hf``) unless ``backend=`` says. Every chat model it
returns is a LangChain ``BaseChatModel`` with two more hooks that the REPL, the server and the CLI
use: ``warm()`` (load now) and ``with_generation(config)`` (a copy with other decoding settings),
plus ``context_window`` and ``backend_info()``.

    from llmapp.backends import load_chat_model
    chat = load_chat_model()                                   # SmolLM2 on llama.cpp
    chat = load_chat_model("smollm2-135m-instruct", backend="hf", max_tokens=64)
    chat = load_chat_model("openai:http://127.0.0.1:8000/v1#smollm2-135m-instruct")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import ModelNotFound
from llmapp.models.registry import DEFAULT_CHAT, REGISTRY


@dataclass(frozen=True)
class Backend:
    """One chat backend: where its classes live and what it runs."""

    module: str
    chat: str  # the BaseChatModel class
    llm: str | None  # the text-completion LLM class, if the backend has one
    runs: str  # one line for `llmapp models` and --help


BACKENDS: dict[str, Backend] = {
    "llamacpp": Backend("llmapp.backends.llamacpp", "ChatLlamaCpp", "LlamaCppLLM", "any .gguf on llama.cpp (fast, small)"),
    "hf": Backend("llmapp.backends.hf", "ChatLocal", "LocalLLM", "any Hugging Face causal LM on torch"),
    "openai": Backend("llmapp.backends.openai", "ChatOpenAICompatible", None,
                      "an OpenAI-compatible server: openai:http://HOST:PORT/v1#MODEL"),
    "fake": Backend("llmapp.backends.fake", "FakeChat", None, "scripted replies, for tests"),
}


def backend_for(name: str, backend: str | None = None) -> str:
    """The backend that runs ``name``: ``backend`` if given (checked), else chosen from the name.

    Raises:
        ModelNotFound: an unknown backend (listing the valid ones).
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise ModelNotFound(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
        return backend
    if name.startswith("openai:"):
        return "openai"
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec.backend
    return "llamacpp" if Path(name).suffix == ".gguf" else "hf"


def chat_class(backend: str) -> Any:
    """The chat model class of ``backend`` (imported on first use)."""
    entry = BACKENDS[backend_for("", backend)]
    return getattr(importlib.import_module(entry.module), entry.chat)


def load_chat_model(name: str = DEFAULT_CHAT, backend: str | None = None, **settings: Any) -> Any:
    """A LangChain chat model for ``name`` on the right backend.

    Args:
        name: registry name, local HF directory, ``.gguf`` file, cached hub id, or
            ``openai:http://HOST:PORT/v1#MODEL``.
        backend: ``llamacpp``, ``hf``, ``openai`` or ``fake``; default: chosen from the name.
        **settings: decoding settings (``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
            ``repetition_penalty``, ``seed``, ``stop``, ``truncate``) and the backend's own
            (``device``/``dtype`` for hf; ``threads``/``slots``/``kv_cache`` for llamacpp).

    Raises:
        ModelNotFound: an unknown model or backend, or a model the backend cannot run.
        ConfigError: a setting out of range (named in the message).
    """
    chosen = backend_for(str(name), backend)
    cls = chat_class(chosen)
    if chosen == "openai":
        return cls.from_target(str(name), **settings)
    return cls(model=str(name), **settings)


def load_llm(name: str = DEFAULT_CHAT, backend: str | None = None, **settings: Any) -> Any:
    """A LangChain text-completion LLM (no chat template) for ``name``; see :func:`load_chat_model`."""
    chosen = backend_for(str(name), backend)
    entry = BACKENDS[chosen]
    if entry.llm is None:
        raise ModelNotFound(f"the {chosen} backend has no text-completion model; use a chat model, or --backend "
                            f"{' or '.join(n for n, b in BACKENDS.items() if b.llm)}")
    return getattr(importlib.import_module(entry.module), entry.llm)(model=str(name), **settings)
