"""Fine-tune any Hugging Face causal LM, fully or with LoRA, on plain text or chat JSONL.

The loop is the trainer's (accelerate, AdamW, the same warmup + cosine schedule, clipping, a NaN
guard, a progress bar with loss and tokens/s). Plain text (``.txt``, or JSONL with ``text``) trains
as language modelling on blocks; chat JSONL (``{"messages": [{"role", "content"}, ...]}`` per line)
is rendered with the model's chat template and only the assistant's tokens carry loss. LoRA goes
through peft and is merged on save, so the output is always a plain Hugging Face directory that
``load_chat_model(OUT)``, ``llmapp chat --model OUT`` and the chains load.

    llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
    llmapp chat --model runs/ft
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import replace_dir


@dataclass
class FinetuneConfig:
    """One fine-tuning run; saved beside the output model. Field names match TrainConfig's schedule."""

    model: str = "smollm2-135m-instruct"  # registry name, local HF directory, .gguf file or hub id
    data: str = ""  # .txt, JSONL with "text", or chat JSONL with "messages"
    out_dir: str = "runs/finetune"
    lora: bool = False  # LoRA: ~1% of the parameters train; far less optimizer memory
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=list)  # empty: peft's default for the architecture
    max_iters: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    block_size: int = 512  # longest example in tokens; chat turns rarely need more
    lr: float = 0.0  # 0 = auto: 2e-4 with LoRA, 3e-5 for full fine-tuning
    min_lr: float = 0.0  # 0 = lr / 10
    warmup_iters: int = 10
    lr_decay_iters: int = 0  # 0 = max_iters
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0  # CPU threads; 0 = torch's default

    def resolved(self) -> FinetuneConfig:
        """A copy with the automatic values filled in."""
        import dataclasses

        lr = self.lr or (2e-4 if self.lora else 3e-5)
        return dataclasses.replace(self, lr=lr, min_lr=self.min_lr or lr / 10,
                                   lr_decay_iters=self.lr_decay_iters or self.max_iters)


@dataclass
class FinetuneResult:
    out_dir: Path
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    tokens_per_s: float
    trainable_params: int
    total_params: int


def load_examples(path: str | Path, tokenizer: Any, block_size: int) -> list[dict[str, list[int]]]:
    """Tokenized examples: ``input_ids`` and ``labels`` (-100 where no loss is taken).

    Raises:
        LLMAppError: missing file, malformed JSONL (with its line number), no usable example.
    """
    from llmapp.train.data import read_text

    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():
        first = next((ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()), "")
        if '"messages"' in first:
            return _chat_examples(path, tokenizer, block_size)
    text = read_text(path)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise LLMAppError(f"{path} is too short to train on; give it some text")
    return [{"input_ids": ids[i:i + block_size], "labels": ids[i:i + block_size]}
            for i in range(0, len(ids), block_size) if len(ids[i:i + block_size]) > 1]


def _chat_examples(path: Path, tokenizer: Any, block_size: int) -> list[dict[str, list[int]]]:
    if not getattr(tokenizer, "chat_template", None):
        raise LLMAppError(f"{path} is chat JSONL but the model has no chat template; use plain text data")

    def render(msgs: list[dict], prompt: bool) -> list[int]:
        out = tokenizer.apply_chat_template(msgs, add_generation_prompt=prompt, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
            assert isinstance(msgs, list) and all(m["role"] in ("system", "user", "assistant") for m in msgs)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise LLMAppError(f"{path}:{n}: expected {{\"messages\": [{{\"role\": system|user|assistant, "
                              f"\"content\": ...}}, ...]}}") from None
        ids = render(msgs, False)
        labels = [-100] * len(ids)
        for j, m in enumerate(msgs):  # loss on each assistant turn: its tokens and its end-of-turn token
            if m["role"] == "assistant":
                start, end = len(render(msgs[:j], True)), len(render(msgs[: j + 1], False))
                labels[start:end] = ids[start:end]
        if any(t != -100 for t in labels[:block_size]):
            examples.append({"input_ids": ids[:block_size], "labels": labels[:block_size]})
    if not examples:
        raise LLMAppError(f"{path}: no example has an assistant reply within {block_size} tokens")
    return examples


def finetune(cfg: FinetuneConfig, progress: bool = True) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and save a plain HF directory to ``cfg.out_dir``."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmapp.models import resolve
    from llmapp.train.trainer import lr_at

    cfg = cfg.resolved()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    path = resolve(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = load_examples(cfg.data, tokenizer, cfg.block_size)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if cfg.lora:
        model = _with_lora(model, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    acc = Accelerator(cpu=not torch.cuda.is_available())
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt = acc.prepare(model, opt)
    model.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    gen = torch.Generator().manual_seed(cfg.seed)
    from tqdm.auto import tqdm

    bar = tqdm(range(cfg.max_iters), desc="finetune", disable=not progress, dynamic_ncols=True)
    losses, tokens, t0 = [], 0, time.perf_counter()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        for _ in range(cfg.grad_accum):
            batch = [examples[i] for i in torch.randint(len(examples), (cfg.batch_size,), generator=gen).tolist()]
            x, y, mask = _collate(batch, pad, acc.device)
            loss = model(input_ids=x, attention_mask=mask, labels=y).loss / cfg.grad_accum
            acc.backward(loss)
            tokens += int(mask.sum())
        value = loss.item() * cfg.grad_accum
        if not math.isfinite(value):
            raise LLMAppError(f"loss became {value} at step {step}: stopped, nothing saved; lower lr (now {cfg.lr:g})")
        if cfg.grad_clip:
            acc.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(value)
        bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens / (time.perf_counter() - t0):,.0f}", refresh=False)
    seconds = time.perf_counter() - t0
    model = acc.unwrap_model(model)
    total = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in trainable)
    if cfg.lora:
        model = model.merge_and_unload()  # a plain model again: no peft needed to load it
    out = _save(model, tokenizer, cfg, {"steps": cfg.max_iters, "first_loss": losses[0], "last_loss": losses[-1]})
    return FinetuneResult(out, cfg.max_iters, losses[0], losses[-1], seconds, tokens / seconds, n_trainable, total)


def _with_lora(model: Any, cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=cfg.lora_targets or None)
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise LLMAppError(f"LoRA cannot target this model ({str(exc).splitlines()[0][:120]}); pass "
                          "--set lora_targets=NAME,... with its Linear layer names (e.g. q_proj,v_proj)") from None


def _collate(batch: list[dict], pad: int, device: Any) -> tuple[Any, Any, Any]:
    """Right-pad a batch: ids padded with ``pad``, labels with -100, and the attention mask."""
    import torch

    T = max(len(e["input_ids"]) for e in batch)
    x = torch.full((len(batch), T), pad, dtype=torch.long)
    y = torch.full((len(batch), T), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        x[i, :n], y[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return x.to(device), y.to(device), mask.to(device)


def _save(model: Any, tokenizer: Any, cfg: FinetuneConfig, summary: dict) -> Path:
    """Write the model, tokenizer and run config to ``cfg.out_dir`` atomically."""
    from llmapp.train.checkpoint import quiet_hf_saving

    with replace_dir(cfg.out_dir) as tmp, quiet_hf_saving():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "llmapp-finetune.json").write_text(json.dumps({"format": 1, "config": asdict(cfg), **summary}, indent=2))
    return Path(cfg.out_dir)
