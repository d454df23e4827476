"""chains.chunking: every chunker keeps offsets exact and sizes in bounds; markdown splits at headings."""

from __future__ import annotations

import pytest

from chains.chunking import CHUNKERS, split_text
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError

TEXT = ("# Borrowing\n\nMembers may borrow twelve items at once. Loans last three weeks and can be renewed twice.\n\n"
        "## Renewals\n\nRenew online, by phone or at the desk. An item someone has reserved cannot be renewed.\n\n"
        "# Fines\n\n" + " ".join(f"Item class {i} costs {10 + i} cents a day, up to a cap of {i + 2} dollars." for i in range(8)))


@pytest.fixture(scope="module")
def tokenizer():
    from llmapp.models.embeddings import load_sentence_transformer

    return load_sentence_transformer().tokenizer


@pytest.mark.parametrize("chunker", list(CHUNKERS))
def test_offsets_point_at_the_chunk_and_sizes_stay_in_bounds(tokenizer, chunker):
    config = RAGConfig(chunker=chunker, chunk_tokens=40, chunk_overlap=8)
    chunks = split_text(TEXT, tokenizer, config)
    assert len(chunks) >= 3
    for start, end, text in chunks:
        assert TEXT[start:end] == text and text.strip()
        assert len(tokenizer.encode(text, add_special_tokens=False)) <= 40
    assert chunks[0][0] <= TEXT.index("Members") and chunks[-1][1] >= len(TEXT.rstrip()) - 1  # nothing lost


def test_markdown_chunks_start_at_headings_and_token_windows_do_not(tokenizer):
    config = RAGConfig(chunker="markdown", chunk_tokens=40, chunk_overlap=0)
    starts = [text.lstrip()[:2] for _, _, text in split_text(TEXT, tokenizer, config)]
    assert starts[:3] == ["# ", "##", "# "]  # each section is its own chunk: it fits in 40 tokens
    windows = split_text(TEXT, tokenizer, RAGConfig(chunker="tokens", chunk_tokens=40, chunk_overlap=0))
    assert any(not text.lstrip().startswith("#") for _, _, text in windows[:3])  # blind cuts mid-section


def test_token_windows_overlap_by_the_configured_tokens(tokenizer):
    windows = split_text(TEXT, tokenizer, RAGConfig(chunker="tokens", chunk_tokens=30, chunk_overlap=10))
    (_, end0, _), (start1, _, _) = windows[0], windows[1]
    assert start1 < end0  # the second window starts inside the first


def test_unknown_chunker_is_named_and_old_import_still_works(tokenizer):
    with pytest.raises(LLMAppError, match="unknown chunker 'words'; use one of: markdown, recursive, tokens"):
        split_text(TEXT, tokenizer, RAGConfig(chunker="words"))
    from chains.documents import split_text as old

    assert old is split_text
