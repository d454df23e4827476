"""The minimal GPT: KV-cache decoding equals naive decoding, and the HF export has the same logits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmapp import checkpoint
from llmapp.gpt import GPT, GPTConfig, sample_next
from llmapp.trainer import preset, train


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def test_kv_cache_generation_equals_naive_generation(model):
    prompt = torch.randint(0, 50, (2, 5))
    # 30 new tokens run well past block_size=16, where the window starts to slide.
    cached = model.generate(prompt, 30, temperature=0, use_cache=True)
    naive = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(cached, naive)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.generate(prompt, 20, temperature=1.0, top_k=10, generator=g1, use_cache=True),
                       model.generate(prompt, 20, temperature=1.0, top_k=10, generator=g2, use_cache=False))


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


def test_export_has_the_same_logits_and_loads_in_the_registry(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import CORPORA

    text = tmp_path / "t.txt"
    corpus = (CORPORA / "tinyshakespeare.txt").read_text()[:20_000]
    text.write_text(corpus)
    cfg = dataclasses.replace(preset("tiny"), data=str(text), out_dir=str(tmp_path / "run"), max_iters=10,
                              lr_decay_iters=10, eval_interval=10, threads=1)
    train(cfg, progress=False)
    out = checkpoint.export_hf(tmp_path / "run" / "best", tmp_path / "hf")

    ours, tok, _ = checkpoint.load_model(tmp_path / "run" / "best")
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([tok.encode(corpus[500:532])])  # one full block of 32
    with torch.no_grad():
        assert torch.allclose(ours(ids)[0], hf(ids).logits, atol=1e-4)
    hf_tok = AutoTokenizer.from_pretrained(out)
    sample = corpus[1000:1100]
    assert hf_tok(sample)["input_ids"] == tok.encode(sample)
    assert hf_tok.decode(hf_tok(sample)["input_ids"]) == sample

    from llmapp import load_chat_model

    chat = load_chat_model(str(out), max_tokens=5, truncate=True)
    assert chat.invoke("hi").usage_metadata["output_tokens"] == 5
