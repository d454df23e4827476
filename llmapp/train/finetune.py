"""Fine-tune any Hugging Face causal LM, fully or with LoRA, on plain text or chat JSONL.

:class:`Finetuning` is an objective of the one training loop (``llmapp.train.trainer``), so a
fine-tune gets what pretraining gets: the warmup + cosine schedule, clipping, a NaN guard, periodic
evaluation on held-out examples, atomic ``last``/``best`` checkpoints (the trainable weights and the
optimizer), exact ``--resume``, Ctrl-C that saves the current step, and ``loss.png``. Plain text
(``.txt``, or JSONL with ``text``) trains as language modelling on blocks; chat JSONL
(``{"messages": [{"role", "content"}, ...]}`` per line) is rendered with the model's chat template
and only the assistant's tokens carry loss. LoRA goes through peft and is merged on save, so the
output is always a plain Hugging Face directory that ``load_chat_model(OUT)``, ``llmapp chat --model
OUT`` and the chains load; the run's checkpoints stay beside it in ``OUT/last`` and ``OUT/best``.

    llmapp finetune --model smollm2-135m-instruct --data eval/data/chat-sample.jsonl --out runs/ft --lora
    llmapp finetune --data eval/data/chat-sample.jsonl --out runs/ft --lora --resume    # after Ctrl-C
    llmapp chat --model runs/ft
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import replace_dir
from llmapp.train.checkpoint import RUN_FILES, carry_over, quiet_hf_saving
from llmapp.train.checks import check_train_config
from llmapp.train.config import LoopConfig
from llmapp.train.examples import collate, load_examples

__all__ = ["FinetuneConfig", "FinetuneResult", "Finetuning", "finetune", "load_examples"]

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig(LoopConfig):
    """One fine-tuning run; saved with its checkpoints and beside the output model."""

    model: str = "smollm2-135m-instruct"  # registry name, local HF directory, .gguf file or hub id
    data: str = ""  # .txt, JSONL with "text", or chat JSONL with "messages"
    val_data: str = ""  # held-out examples of the same kind; "": the last val_fraction of data's examples
    val_fraction: float = 0.1  # the tail held out, as nanoGPT holds out the tail of its text
    out_dir: str = "runs/finetune"
    lora: bool = False  # LoRA: ~1% of the parameters train; far less optimizer memory
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=list)  # empty: peft's default for the architecture
    max_iters: int = 100
    batch_size: int = 4
    block_size: int = 512  # longest example in tokens; chat turns rarely need more
    lr: float = 0.0  # 0 = auto: 2e-4 with LoRA, 3e-5 for full fine-tuning
    min_lr: float = 0.0  # 0 = lr / 10
    warmup_iters: int = 10
    weight_decay: float = 0.0  # pretrained weights: decay would pull them towards zero, away from what they know
    beta2: float = 0.999  # torch's default, the usual fine-tuning choice (batches are not tiny here)
    eval_interval: int = 50  # each evaluation also saves OUT/last: on a full fine-tune that is 3x the model
    eval_iters: int = 8  # batches per split per evaluation (the first eval_iters * batch_size examples)
    log_interval: int = 1  # steps are slow: update the progress bar at each
    seed: int = 0

    def __post_init__(self) -> None:
        check_train_config(self, auto=("lr", "min_lr"))

    def resolved(self) -> FinetuneConfig:
        """A copy with the automatic values filled in."""
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
    tokens_per_s: float  # non-padding tokens through forward and backward, per second of training steps
    trainable_params: int
    total_params: int
    val_loss: float = float("nan")  # on the held-out examples, at the end
    history: dict = field(repr=False, default_factory=dict)


class Finetuning:
    """The fine-tuning objective: a causal LM's loss on the tokens that carry labels, in padded batches."""

    name = "finetune"

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.cfg = cfg.resolved()

    def build(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmapp.models import resolve

        cfg = self.cfg
        path = resolve(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.train_set, self.val_set = self._split(load_examples(cfg.data, self.tokenizer, cfg.block_size))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if cfg.lora:
            model = _with_lora(model, cfg)
        tok = self.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total = sum(p.numel() for p in model.parameters())
        return model

    def _split(self, examples: list[dict]) -> tuple[list[dict], list[dict]]:
        """Training and held-out examples: ``val_data``'s, or the tail of ``data``'s."""
        if self.cfg.val_data:
            return examples, load_examples(self.cfg.val_data, self.tokenizer, self.cfg.block_size)
        if not 0 < self.cfg.val_fraction < 1:
            raise LLMAppError(f"val_fraction must be between 0 and 1, got {self.cfg.val_fraction}; e.g. --set val_fraction=0.1")
        if len(examples) < 2:
            log.warning("one example only: it is also the validation set; give more data or --set val_data=FILE")
            return examples, examples
        n_val = max(1, round(len(examples) * self.cfg.val_fraction))
        return examples[:-n_val], examples[-n_val:]

    def batch(self, generator: Any, device: Any) -> Any:
        import torch

        idx = torch.randint(len(self.train_set), (self.cfg.batch_size,), generator=generator).tolist()
        return collate([self.train_set[i] for i in idx], self.pad, device)

    def loss(self, model: Any, batch: Any) -> Any:
        x, y, mask = batch
        return model(input_ids=x, attention_mask=mask, labels=y).loss

    def tokens(self, batch: Any) -> int:
        return int(batch[2].sum())

    def evaluate(self, model: Any, device: Any) -> dict[str, float]:
        """Mean loss per labelled token over the first ``eval_iters`` batches of each split, in file order."""
        n = self.cfg.eval_iters * self.cfg.batch_size
        return {"train": self._mean_loss(model, self.train_set[:n], device),
                "val": self._mean_loss(model, self.val_set[:n], device)}

    def _mean_loss(self, model: Any, examples: list[dict], device: Any) -> float:
        total = count = 0.0
        for i in range(0, len(examples), self.cfg.batch_size):
            x, y, mask = collate(examples[i:i + self.cfg.batch_size], self.pad, device)
            scored = int((y[:, 1:] != -100).sum())  # the model shifts labels by one: these tokens are predicted
            total += model(input_ids=x, attention_mask=mask, labels=y).loss.item() * scored
            count += scored
        return total / max(count, 1)

    def config(self) -> dict:
        c = self.cfg
        shape = {"name": c.model, "lora": c.lora, "trainable_params": self.trainable}
        if c.lora:
            shape |= {"lora_r": c.lora_r, "lora_alpha": c.lora_alpha, "lora_targets": c.lora_targets}
        return {"train": asdict(c), "model": shape}

    def save_weights(self, model: Any, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(folder / "model.safetensors"))  # the trainable part: LoRA's adapters, or every weight

    def load_weights(self, model: Any, folder: Path) -> None:
        from safetensors.torch import load_file

        saved = load_file(str(folder / "model.safetensors"))
        wanted = {n for n, p in model.named_parameters() if p.requires_grad}
        if set(saved) != wanted:
            raise LLMAppError(f"{folder} holds other weights than this run trains; use the same --model and "
                              "--lora settings, or a new --out")
        model.load_state_dict(saved, strict=False)

    def save_model(self, model: Any, summary: dict) -> Path:
        """Write the trained model (LoRA merged) and tokenizer to ``out_dir`` atomically, keeping the run's files."""
        if self.cfg.lora:
            model = model.merge_and_unload()  # a plain model again: no peft needed to load it
        out = Path(self.cfg.out_dir)
        with replace_dir(out) as tmp, quiet_hf_saving():  # it holds this run's last/ (a marker): ours to replace
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "llmapp-finetune.json").write_text(json.dumps({"format": 1, "config": asdict(self.cfg), **summary},
                                                                 indent=2))
            carry_over(out, tmp, RUN_FILES)
        return out


def finetune(cfg: FinetuneConfig, progress: bool = True, resume: bool = False,
             on_step: Callable[[int, float], None] | None = None) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and save a plain HF directory to ``cfg.out_dir``.

    Args:
        cfg: the run's configuration.
        progress: show a progress bar.
        resume: continue from ``out_dir/last`` exactly (after Ctrl-C, a crash, or to train on).
        on_step: called after each optimizer step with (step, loss).

    Returns:
        A FinetuneResult. Ctrl-C saves ``out_dir/last`` at the current step, then re-raises.
    """
    from llmapp.train.trainer import run

    objective = Finetuning(cfg)
    r = run(objective, objective.cfg, resume=resume, progress=progress, on_step=on_step)
    losses = r.history["train_loss"]
    summary = {"steps": r.steps, "first_loss": losses[0], "last_loss": losses[-1], "val_loss": r.final_val}
    out = objective.save_model(r.model, summary)
    return FinetuneResult(out, r.steps, losses[0], losses[-1], r.seconds, r.tokens_per_s, objective.trainable,
                          objective.total, r.final_val, r.history)


def _with_lora(model: Any, cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=cfg.lora_targets or None)
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise LLMAppError(f"LoRA cannot target this model ({str(exc).splitlines()[0][:120]}); pass "
                          "--set lora_targets=NAME,... with its Linear layer names (e.g. q_proj,v_proj)") from None
