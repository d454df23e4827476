"""The minimal GPT: shapes, sampling filters and tied weights (export parity is in test_export.py)."""

from __future__ import annotations

import pytest
import torch

from llmapp.train.gpt import GPT, GPTConfig, sample_next


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def test_sequence_longer_than_block_is_refused(model):
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0, -2.0]])
    picks = {sample_next(logits, 1.0, top_k=2).item() for _ in range(200)}
    assert picks <= {0, 1}
    # softmax([5, 4, 0, ...]) puts ~0.73 on token 0: top_p=0.5 keeps token 0 alone.
    assert {sample_next(logits, 1.0, top_p=0.5).item() for _ in range(50)} == {0}
    assert sample_next(logits, 0.0).item() == 0


def test_tied_embeddings(model):
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
