"""Fine-tuning: assistant-only loss masks, a real loss drop, LoRA merged into a plain loadable model."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from llmapp.cli import cli
from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint
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


def _cfg(tiny_llama, out, **changes):
    settings = dict(model=str(tiny_llama), data=CHAT, out_dir=str(out), lora=True, max_iters=8, lr=1e-2,
                    warmup_iters=1, eval_interval=4, eval_iters=1, threads=1) | changes
    return FinetuneConfig(**settings)


def test_finetune_evaluates_held_out_examples_and_keeps_its_checkpoints(tiny_llama, tmp_path):
    out = tmp_path / "ft"
    r = finetune(_cfg(tiny_llama, out), progress=False)
    assert [e["step"] for e in r.history["evals"]] == [4, 8]
    assert all(set(e) == {"step", "train", "val"} for e in r.history["evals"])
    assert r.val_loss == r.history["evals"][-1]["val"] and r.val_loss > 0
    # The held-out examples are the tail of the file: 10% of 24 chat lines, rounded.
    from llmapp.train.finetune import Finetuning

    objective = Finetuning(_cfg(tiny_llama, tmp_path / "x"))
    objective.build()
    assert (len(objective.train_set), len(objective.val_set)) == (22, 2)
    # The model sits at the top of OUT, the run's checkpoints beside it, and they survive the final save.
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "llmapp-finetune.json", "last", "best", "loss.png"} <= files
    saved = checkpoint.read_config(out / "last")
    assert saved["objective"] == "finetune" and checkpoint.load_state(out / "last")["step"] == 8
    assert not checkpoint.is_checkpoint(out)  # perplexity scores OUT as the Hugging Face model it is
    more = finetune(_cfg(tiny_llama, out, max_iters=10), progress=False, resume=True)
    assert more.steps == 10 and len(more.history["train_loss"]) == 10


def test_interrupted_finetune_resumes_exactly(tiny_llama, tmp_path):
    whole = finetune(_cfg(tiny_llama, tmp_path / "whole"), progress=False)  # LoRA dropout: the RNG matters

    def interrupt(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    cfg = _cfg(tiny_llama, tmp_path / "split")
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, progress=False, on_step=interrupt)
    assert checkpoint.load_state(tmp_path / "split" / "last")["step"] == 5
    assert not (tmp_path / "split" / "llmapp-finetune.json").exists()  # no half-trained model passed off as done
    resumed = finetune(cfg, progress=False, resume=True)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["evals"] == whole.history["evals"]
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the merged models too


def test_resume_refuses_other_lora_settings_and_a_pretraining_run(tiny_llama, tmp_path):
    finetune(_cfg(tiny_llama, tmp_path / "r", max_iters=2), progress=False)
    with pytest.raises(LLMAppError, match=r"different model config .*lora_r.*\(8, 4\)"):
        finetune(_cfg(tiny_llama, tmp_path / "r", max_iters=4, lora_r=4), progress=False, resume=True)
    with pytest.raises(LLMAppError, match="no checkpoint in"):
        finetune(_cfg(tiny_llama, tmp_path / "empty"), progress=False, resume=True)


def test_ctrl_c_from_the_command_line_saves_the_step_and_resumes(tiny_llama, tmp_path):
    """A real SIGINT to `llmapp finetune` mid-run: exit 130, OUT/last at the step it stopped, --resume finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cli"
    args = ["finetune", "--model", str(tiny_llama), "--data", CHAT, "--out", str(out), "--lora", "--quiet",
            "--set", "max_iters=3000", "--set", "eval_interval=5", "--set", "eval_iters=1", "--set", "threads=1"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "llmapp.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "last").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    stopped = checkpoint.load_state(out / "last")["step"]
    assert 5 <= stopped < 3000 and "stopping after this step" in output, output
    history = checkpoint.load_history(out / "last")
    assert len(history["train_loss"]) == stopped
    r = CliRunner().invoke(cli, [*args[:-8], "--set", f"max_iters={stopped + 2}", "--set", "eval_interval=5",
                                 "--set", "eval_iters=1", "--set", "threads=1", "--resume"])
    assert r.exit_code == 0, r.output
    assert f"done: {stopped + 2} steps" in r.output
    assert (out / "llmapp-finetune.json").exists()
