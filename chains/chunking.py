"""Chunking: cut a document's text into the pieces a store embeds and the answer prompt shows.

Three chunkers, registered in :data:`CHUNKERS` and chosen by ``RAGConfig.chunker``:

- ``markdown`` (the default): recursive splitting that prefers Markdown headings, then paragraphs,
  lines, sentences and words, so a chunk tends to be one section or paragraph, whole;
- ``recursive``: LangChain's recursive splitter with its own separators (paragraphs, lines, words);
- ``tokens``: fixed windows of embedding-model tokens, blind to the text's structure (the baseline).

Sizes are counted in tokens of the embedding model (``RAGConfig.chunk_tokens``, overlap
``chunk_overlap``), since the embedding model is what truncates. Every chunk keeps its character
offsets into the text.

    from chains.chunking import split_text
    chunks = split_text(text, tokenizer, RAGConfig(chunker="markdown"))   # [(start, end, chunk_text), ...]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

Chunk = tuple[int, int, str]  # (start, end, text): character offsets into the document's text

# Markdown headings first (a new section starts a new chunk), then paragraphs, lines, sentence ends,
# clause breaks and words: the splitter only falls back to a finer separator when a piece is too long.
MARKDOWN_SEPARATORS = ["\n# ", "\n## ", "\n### ", "\n#### ", "\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def _token_length(tokenizer: Any) -> Callable[[str], int]:
    def length(piece: str) -> int:  # verbose=False: counting a long piece is fine, we never feed it whole
        return len(tokenizer.encode(piece, add_special_tokens=False, verbose=False))

    return length


def _recursive(text: str, tokenizer: Any, config: RAGConfig, separators: list[str] | None) -> list[Chunk]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=config.chunk_tokens, chunk_overlap=config.chunk_overlap,
                                              length_function=_token_length(tokenizer), add_start_index=True,
                                              **({"separators": separators} if separators else {}))
    out = []
    for doc in splitter.create_documents([text]):
        start = int(doc.metadata.get("start_index", -1))
        if start < 0:  # the splitter could not place it (whitespace changed); find it ourselves
            start = max(0, text.find(doc.page_content))
        out.append((start, start + len(doc.page_content), doc.page_content))
    return out


def recursive_chunks(text: str, tokenizer: Any, config: RAGConfig) -> list[Chunk]:
    """LangChain's ``RecursiveCharacterTextSplitter`` with its default separators, sized in tokens."""
    return _recursive(text, tokenizer, config, None)


def markdown_chunks(text: str, tokenizer: Any, config: RAGConfig) -> list[Chunk]:
    """Recursive splitting on :data:`MARKDOWN_SEPARATORS`: sections and paragraphs stay whole when they fit."""
    return _recursive(text, tokenizer, config, MARKDOWN_SEPARATORS)


def token_chunks(text: str, tokenizer: Any, config: RAGConfig) -> list[Chunk]:
    """Windows of ``chunk_tokens`` tokens, each starting ``chunk_tokens - chunk_overlap`` tokens after the last."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    step = config.chunk_tokens - config.chunk_overlap
    out = []
    for first in range(0, max(len(offsets), 1), step):
        window = offsets[first:first + config.chunk_tokens]
        if not window:
            break
        start, end = window[0][0], window[-1][1]
        out.append((start, end, text[start:end]))
        if first + config.chunk_tokens >= len(offsets):
            break
    return [c for c in out if c[2].strip()]


CHUNKERS: dict[str, Callable[[str, Any, RAGConfig], list[Chunk]]] = {
    "markdown": markdown_chunks,
    "recursive": recursive_chunks,
    "tokens": token_chunks,
}


def split_text(text: str, tokenizer: Any, config: RAGConfig) -> list[Chunk]:
    """Split ``text`` into chunks of about ``config.chunk_tokens`` embedding-model tokens.

    Args:
        text: the document's extracted text.
        tokenizer: the embedding model's (Hugging Face fast) tokenizer: sizes are counted in its tokens.
        config: ``chunker``, ``chunk_tokens`` and ``chunk_overlap``.

    Returns:
        ``(start, end, chunk)`` tuples, with character offsets into ``text``.

    Raises:
        LLMAppError: an unknown chunker (listing the valid ones).
    """
    chunker = CHUNKERS.get(config.chunker)
    if chunker is None:
        raise LLMAppError(f"unknown chunker {config.chunker!r}; use one of: {', '.join(CHUNKERS)}")
    return chunker(text, tokenizer, config)
