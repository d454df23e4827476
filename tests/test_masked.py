"""fill_mask on a real (tiny, randomly initialised) BertForMaskedLM with the MiniLM tokenizer, and the
refusal of checkpoints that have no trained MLM head."""

from __future__ import annotations

import pytest

from llmapp import load_masked_lm
from llmapp.core.errors import LLMAppError, ModelNotFound
from llmapp.models.bundled import minilm_dir


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64)
    out = tmp_path_factory.mktemp("tiny-mlm")
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_fill_mask_returns_ranked_candidates(tiny_mlm_dir):
    mlm = load_masked_lm(str(tiny_mlm_dir), device="cpu")
    preds = mlm.fill_mask("The cat sat on the [MASK].", top_k=4)
    assert len(preds) == 4
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0
    assert all(p["sequence"] == f"The cat sat on the {p['token']}." for p in preds)


def test_several_masks_give_one_list_each(tiny_mlm_dir):
    preds = load_masked_lm(str(tiny_mlm_dir), device="cpu").fill_mask("[MASK] and [MASK]", top_k=2)
    assert len(preds) == 2 and all(len(p) == 2 for p in preds)


def test_text_without_mask_is_an_error(tiny_mlm_dir):
    with pytest.raises(LLMAppError, match=r"no \[MASK\] in the text"):
        load_masked_lm(str(tiny_mlm_dir), device="cpu").fill_mask("no mask here")


def test_encoder_without_mlm_head_is_refused():
    with pytest.raises(ModelNotFound, match="no trained masked-LM head"):
        load_masked_lm(str(minilm_dir()), device="cpu")
