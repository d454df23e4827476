"""Tokenizing to memory-mapped .bin files with nanoGPT's split, and the errors for bad data files."""

from __future__ import annotations

import numpy as np
import pytest

from llmapp.core.errors import LLMAppError
from llmapp.train.data import CharTokenizer, Dataset, get_batch, prepare, read_text


def test_char_split_matches_nanogpt(tmp_path):
    text = "".join(chr(97 + i % 26) for i in range(1000))
    src = tmp_path / "t.txt"
    src.write_text(text)
    ds = prepare(src, tmp_path / "d")
    tok = CharTokenizer.fit(text)
    assert ds.meta["train_tokens"] == 900 and ds.meta["val_tokens"] == 100 and ds.meta["dtype"] == "uint16"
    assert tok.decode(ds.split("train").tolist()) == text[:900]
    assert tok.decode(Dataset.load(tmp_path / "d").split("val").tolist()) == text[900:]


def test_bpe_tokenizer_from_the_registry(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("Hello world. " * 50)
    ds = prepare(src, tmp_path / "d", tokenizer="smollm2-135m-instruct")
    assert ds.meta["vocab_size"] == 49152 and ds.tokenizer.decode(ds.split("train").tolist()).startswith("Hello world.")


def test_batches_are_next_token_shifted():
    import torch

    data = np.arange(100, dtype=np.uint16)
    x, y = get_batch(data, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 8) and torch.equal(y, x + 1)


def test_jsonl_text_and_its_errors(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    assert read_text(good) == "one\n\ntwo"
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "one"}\n{"txt": "two"}\n')
    with pytest.raises(LLMAppError, match=r"b.jsonl:2: expected a JSON object with a \"text\" field"):
        read_text(bad)


def test_non_utf8_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(LLMAppError, match=r"is not UTF-8 text \(byte 3\); convert it"):
        read_text(f)


def test_unknown_character_is_named():
    with pytest.raises(LLMAppError, match="character 'z' is not in this model's vocabulary"):
        CharTokenizer.fit("abc").encode("abz")
