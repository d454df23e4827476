"""Parity: our GPT against its Hugging Face export (logits to 1e-4, the same greedy text), and
KV-cache decoding against naive decoding. These are the strongest tests of llmapp/gpt.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint
from llmapp.train.gpt import GPT, GPTConfig
from llmapp.train.trainer import preset, train


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny GPT trained for 10 steps on Tiny Shakespeare, and its HF export."""
    from tests.conftest import CORPORA

    root = tmp_path_factory.mktemp("export")
    corpus = (CORPORA / "tinyshakespeare.txt").read_text()[:20_000]
    (root / "t.txt").write_text(corpus)
    cfg = dataclasses.replace(preset("tiny"), data=str(root / "t.txt"), out_dir=str(root / "run"), max_iters=10,
                              lr_decay_iters=10, eval_interval=10, threads=1)
    train(cfg, progress=False)
    out = checkpoint.export_hf(root / "run" / "best", root / "hf")
    return root / "run" / "best", out, corpus


def test_exported_model_has_the_same_logits(exported):
    from transformers import AutoModelForCausalLM

    ckpt, out, corpus = exported
    ours, tok, _ = checkpoint.load_model(ckpt)
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = torch.tensor([tok.encode(corpus[500:532]), tok.encode(corpus[900:932])])  # (2, 32): a full block each
    with torch.no_grad():
        assert torch.allclose(ours(ids)[0], hf(ids).logits, atol=1e-4)


def test_exported_model_generates_the_same_greedy_text(exported):
    from transformers import AutoModelForCausalLM

    ckpt, out, corpus = exported
    ours, tok, _ = checkpoint.load_model(ckpt)
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    prompt = torch.tensor([tok.encode(corpus[:8])])
    mine = ours.generate(prompt, 20, temperature=0)  # KV cache on
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, attention_mask=torch.ones_like(prompt),
                         pad_token_id=0)
    assert mine.tolist() == theirs.tolist()


def test_exported_tokenizer_has_the_same_ids(exported):
    from transformers import AutoTokenizer

    ckpt, out, corpus = exported
    tok = checkpoint.load_model(ckpt)[1]
    hf_tok = AutoTokenizer.from_pretrained(out)
    sample = corpus[1000:1100]
    assert hf_tok(sample)["input_ids"] == tok.encode(sample)
    assert hf_tok.decode(hf_tok(sample)["input_ids"]) == sample


def test_export_loads_as_a_chat_model(exported):
    from llmapp import load_chat_model

    chat = load_chat_model(str(exported[1]), max_tokens=5, truncate=True)
    assert chat.invoke("hi").usage_metadata["output_tokens"] == 5


def test_export_of_a_folder_without_a_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(LLMAppError, match="no checkpoint in .*point --ckpt at a run folder"):
        checkpoint.export_hf(tmp_path, tmp_path / "hf")


def test_kv_cache_generation_equals_naive_generation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    prompt = torch.randint(0, 50, (2, 5))
    # 30 new tokens run well past block_size=16, where the window starts to slide.
    assert torch.equal(model.generate(prompt, 30, temperature=0, use_cache=True),
                       model.generate(prompt, 30, temperature=0, use_cache=False))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.generate(prompt, 20, temperature=1.0, top_k=10, top_p=0.9, generator=g1, use_cache=True),
                       model.generate(prompt, 20, temperature=1.0, top_k=10, top_p=0.9, generator=g2, use_cache=False))
