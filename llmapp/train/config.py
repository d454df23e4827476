"""Training configurations: the loop's settings, shared by every objective, and pretraining's presets.

:class:`LoopConfig` holds what the one training loop (``llmapp.train.trainer``) reads: the schedule,
the optimizer, evaluation and checkpoint cadence, precision. Each objective's config extends it:
:class:`TrainConfig` (pretraining a model type of ``llmapp.train.registry``), ``FinetuneConfig``
(``llmapp.train.finetune``) and ``MLMConfig`` (``llmapp.train.mlm``), so a setting such as
``--set eval_interval=50`` means the same thing to all of them. :func:`lr_at` is the one
learning-rate schedule.

    from llmapp.train.config import preset, lr_at
    cfg = preset("shakespeare-char-cpu")
    lr_at(cfg, 100)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.train.checks import check_train_config


@dataclass
class LoopConfig:
    """The training loop's settings; every objective's config extends this and saves it with its checkpoints."""

    out_dir: str = "runs/train"  # run folder: last/ and best/ checkpoints and loss.png
    # optimisation
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per step: a bigger effective batch in the same memory
    max_iters: int = 2000
    lr: float = 1e-3  # small models tolerate a high peak learning rate
    min_lr: float = 1e-4  # the cosine decays to lr/10, as in Chinchilla
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0 = max_iters
    weight_decay: float = 0.1  # on matrices only; never on biases, norms or embeddings' positions
    beta1: float = 0.9
    beta2: float = 0.99  # a bit higher than 0.95 because batches are small (nanoGPT)
    grad_clip: float = 1.0  # 0 disables
    # evaluation, logging, checkpoints
    eval_interval: int = 250  # steps between evaluations (each also saves last/ and, if better, best/); 0 = at the end only
    eval_iters: int = 20  # batches per split per evaluation
    log_interval: int = 10  # steps between progress-bar updates
    seed: int = 1337
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, none on CPU (bf16 is slower on these CPUs)
    compile: bool = False  # torch.compile: worth it on GPUs; its compile time outweighs short CPU runs
    threads: int = 0  # CPU threads; 0 = torch's default (one per core)

    def __post_init__(self) -> None:
        check_train_config(self)  # every way in (presets, --set, --config, resume) is checked here


@dataclass
class TrainConfig(LoopConfig):
    """Pretraining one model type from scratch on a text; saved with every checkpoint."""

    data: str = ""  # a text/JSONL file (tokenized into OUT/data) or a folder prepared by llmapp.train.data
    out_dir: str = "runs/gpt"
    tokenizer: str = "char"  # "char", or a registry name / path of a Hugging Face tokenizer
    model_type: str = "gpt"  # a name in llmapp.train.registry.MODEL_TYPES: gpt, or the baselines lstm and markov
    # model shape (see GPTConfig; each model type reads the fields it needs)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0  # 0 with few iterations; 0.2 when a long run on a small corpus overfits
    bias: bool = True  # GPT-2 layout, needed by `llmapp export`


PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's CPU recipe for shakespeare_char: val loss ~1.88 in a few minutes on a laptop.
    "shakespeare-char-cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000,
                                 lr_decay_iters=2000, dropout=0.0, lr=1e-3, eval_iters=20),
    # nanoGPT's GPU recipe: a "baby GPT" of 10.7M parameters, val loss ~1.47.
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=5000,
                             lr_decay_iters=5000, dropout=0.2, lr=1e-3, eval_iters=200, warmup_iters=100),
    # seconds, for smoke tests and CI
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=50, lr_decay_iters=50,
                 warmup_iters=5, eval_interval=25, eval_iters=4, log_interval=5),
}


def preset(name: str) -> TrainConfig:
    """A TrainConfig from a named preset; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise LLMAppError(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}")
    return TrainConfig(**PRESETS[name])


def lr_at(cfg: LoopConfig, it: int) -> float:
    """The learning rate of step ``it``: linear warmup, then cosine decay to ``min_lr`` at ``lr_decay_iters``.

    Args:
        cfg: any objective's config (its ``lr``, ``min_lr``, ``warmup_iters``, ``lr_decay_iters``).
        it: the step, from 0.

    Returns:
        The learning rate for that step's optimizer update.
    """
    decay = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
