"""llmapp: offline-first text generation on open models, composed with LangChain.

The public Python API. Names are imported on first use, so ``import llmapp`` (and ``llmapp --help``)
does not load torch or transformers.

    from llmapp import load_chat_model, load_embeddings
    chat = load_chat_model()                    # bundled SmolLM2-135M-Instruct
    print(chat.invoke("Say hello.").content)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_chat_model": "llmapp.backends",
    "load_llm": "llmapp.backends",
    "BACKENDS": "llmapp.backends",
    "load_embeddings": "llmapp.models.embeddings",
    "load_masked_lm": "llmapp.models.masked",
    "load_causal_lm": "llmapp.models.hf",
    "REGISTRY": "llmapp.models.registry",
    "ModelSpec": "llmapp.models.registry",
    "ChatLocal": "llmapp.backends.hf",
    "LocalLLM": "llmapp.backends.hf",
    "ChatLlamaCpp": "llmapp.backends.llamacpp",
    "LlamaCppLLM": "llmapp.backends.llamacpp",
    "LocalEmbeddings": "llmapp.models.embeddings",
    "MaskedLM": "llmapp.models.masked",
    "GenerationConfig": "llmapp.core.config",
    "RAGConfig": "llmapp.core.config",
    "LLMAppError": "llmapp.core.errors",
    "PromptTooLong": "llmapp.core.errors",
    "ModelNotFound": "llmapp.core.errors",
    "ConfigError": "llmapp.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmapp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
