"""Sentence embeddings: a shared ``SentenceTransformer`` and the LangChain ``Embeddings`` over it.

Vectors are encoded in batches and L2-normalized, so a dot product is the cosine similarity (what
the FAISS and pgvector stores search by). The model is loaded once per process and shared.

    from llmapp import load_embeddings
    vectors = load_embeddings().embed_documents(["a cat", "a dog"])     # 384-d, unit length
"""

from __future__ import annotations

import functools
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict

from llmapp.core.errors import ModelNotFound
from llmapp.models.registry import DEFAULT_EMBEDDINGS, REGISTRY, resolve


@functools.lru_cache(maxsize=4)
def load_sentence_transformer(name: str = DEFAULT_EMBEDDINGS, device: str | None = None) -> Any:
    """A cached ``SentenceTransformer`` for a registry name, local directory or cached hub id."""
    from sentence_transformers import SentenceTransformer

    from llmapp.models.hf import default_device, quiet_loading

    quiet_loading()
    path = resolve(name, kind=None if name not in REGISTRY else "embeddings")
    try:
        return SentenceTransformer(path, device=device or default_device(), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"could not load embeddings {name!r}: {str(exc).splitlines()[0]}") from None


class LocalEmbeddings(BaseModel, Embeddings):
    """Sentence-transformers embeddings, encoded in batches and L2-normalized (cosine = dot product)."""

    model: str = DEFAULT_EMBEDDINGS  # registry name, local sentence-transformers directory or cached hub id
    batch_size: int = 64  # texts per forward pass; 64 keeps MiniLM near its peak throughput on CPU
    normalize: bool = True  # unit vectors, so FAISS inner product is cosine similarity
    show_progress: bool = False
    device: str | None = None

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @property
    def client(self) -> Any:
        """The shared ``SentenceTransformer``."""
        return load_sentence_transformer(self.model, self.device)

    @property
    def dimension(self) -> int:
        return int(self.client.get_sentence_embedding_dimension())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def encode(self, texts: list[str]) -> Any:
        """Embed ``texts`` as a float32 numpy array of shape (len(texts), dimension)."""
        return self.client.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                  convert_to_numpy=True, show_progress_bar=self.show_progress)


def load_embeddings(name: str = DEFAULT_EMBEDDINGS, **settings: Any) -> LocalEmbeddings:
    """LangChain embeddings: batched, L2-normalized sentence-transformers vectors."""
    return LocalEmbeddings(model=name, **settings)
