"""Fine-tuning: assistant-only loss masks, a real loss drop, LoRA merged into a plain loadable model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.core.errors import LLMAppError
from llmapp.train.finetune import FinetuneConfig, finetune, load_examples

CHAT = "eval/data/chat-sample.jsonl"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template (seconds to train)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmapp.models import resolve

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m-instruct"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_only_assistant_tokens_carry_loss(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ex = load_examples(CHAT, tok, 512)[0]  # system, user, assistant, user, assistant
    targets = tok.decode([t for t in ex["labels"] if t != -100])
    assert targets == "The capital of France is Paris.<|im_end|>\nYes, Paris is the capital of France.<|im_end|>\n"
    prompt_part = tok.decode([i for i, t in zip(ex["input_ids"], ex["labels"], strict=True) if t == -100])
    assert "What is the capital of France?" in prompt_part and "Paris" not in prompt_part


def test_full_finetune_lowers_the_loss(tiny_llama, tmp_path):
    cfg = FinetuneConfig(model=str(tiny_llama), data=CHAT, out_dir=str(tmp_path / "full"), max_iters=25,
                         lr=3e-3, warmup_iters=2, batch_size=4, threads=1)
    r = finetune(cfg, progress=False)
    assert r.last_loss < r.first_loss * 0.8 and r.trainable_params == r.total_params
    assert (tmp_path / "full" / "llmapp-finetune.json").exists()


def test_lora_trains_few_parameters_and_merges_into_a_plain_model(tiny_llama, tmp_path):
    from llmapp import load_chat_model

    cfg = FinetuneConfig(model=str(tiny_llama), data=CHAT, out_dir=str(tmp_path / "lora"), lora=True, max_iters=10,
                         lr=1e-2, warmup_iters=1, threads=1)
    r = finetune(cfg, progress=False)
    assert 0 < r.trainable_params < r.total_params / 5
    files = {p.name for p in (tmp_path / "lora").iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    chat = load_chat_model(str(tmp_path / "lora"), max_tokens=4)
    assert chat.invoke("What is the capital of Peru?").usage_metadata["output_tokens"] >= 1


def test_lora_on_layers_that_do_not_exist_names_the_fix(tiny_llama, tmp_path):
    cfg = FinetuneConfig(model=str(tiny_llama), data=CHAT, out_dir=str(tmp_path / "x"), lora=True,
                         lora_targets=["no_such_proj"], max_iters=1)
    with pytest.raises(LLMAppError, match="LoRA cannot target this model .*--set lora_targets="):
        finetune(cfg, progress=False)


def test_plain_text_trains_as_language_modelling(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    text = tmp_path / "notes.txt"
    text.write_text("Generative models learn the data distribution. " * 40)
    exs = load_examples(text, AutoTokenizer.from_pretrained(tiny_llama), 64)
    assert len(exs) > 1 and all(e["labels"] == e["input_ids"] for e in exs)


def test_bad_chat_line_is_reported_with_its_number(tiny_llama, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "robot"}]}\n')
    from transformers import AutoTokenizer

    with pytest.raises(LLMAppError, match=r"bad.jsonl:2: expected"):
        load_examples(bad, AutoTokenizer.from_pretrained(tiny_llama), 64)


def test_cli_finetune(tiny_llama, tmp_path):
    r = CliRunner().invoke(cli, ["finetune", "--model", str(tiny_llama), "--data", CHAT, "--out", str(tmp_path / "o"),
                                 "--lora", "--quiet", "--set", "max_iters=2", "--set", "threads=1"])
    assert r.exit_code == 0, r.output
    assert "done: 2 steps" in r.output and "llmapp chat --model" in r.output
