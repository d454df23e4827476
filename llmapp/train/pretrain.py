"""Pretraining: next-token prediction on a tokenized text, for any model type of ``llmapp.train.registry``.

:class:`LanguageModelling` is the objective ``llmapp.train.trainer.train`` hands to the one loop for
gradient-trained types (the GPT, the LSTM): random windows of ``block_size`` tokens from the training
split, the mean cross-entropy of their next tokens, and nanoGPT's loss estimate on both splits.
:func:`fit` makes the counted types (the Markov chain) instead, with no loop. The data is prepared
once into ``OUT/data`` by :func:`prepared_dataset`.

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --out runs/shakespeare
    llmapp train --data ../shared/data/tinyshakespeare.txt --set model_type=markov --out runs/markov
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_text
from llmapp.train import checkpoint
from llmapp.train.config import TrainConfig
from llmapp.train.data import Dataset, get_batch, prepare
from llmapp.train.registry import ModelType

EVAL_TOKENS_PER_PASS = 8192  # evaluation batches are stacked up to this many tokens per forward pass
FIT_VAL_TOKENS = 20_000  # a fitted model is scored on this much of the validation split (pure Python: seconds)


class LanguageModelling:
    """The pretraining objective of the loop: next-token cross-entropy on random windows of the corpus."""

    name = checkpoint.PRETRAIN

    def __init__(self, cfg: TrainConfig, ds: Dataset, mtype: ModelType) -> None:
        self.cfg, self.ds, self.mtype = cfg, ds, mtype
        self.mcfg: Any = None

    def build(self) -> Any:
        model, self.mcfg = self.mtype.build(self.cfg, self.ds.meta["vocab_size"])
        self.train_ids, self.val_ids = self.ds.split("train"), self.ds.split("val")
        for split, ids in (("train", self.train_ids), ("validation", self.val_ids)):
            if len(ids) <= self.cfg.block_size:
                raise LLMAppError(f"the {split} split has {len(ids)} tokens, fewer than one block of "
                                  f"{self.cfg.block_size}+1; use more data or a smaller block_size (--set block_size=...)")
        return model

    def batch(self, generator: Any, device: Any) -> Any:
        return get_batch(self.train_ids, self.cfg.block_size, self.cfg.batch_size, generator, device)

    def loss(self, model: Any, batch: Any) -> Any:
        x, y = batch
        return model(x, y)[1]

    def tokens(self, batch: Any) -> int:
        return batch[0].numel()

    def evaluate(self, model: Any, device: Any) -> dict[str, float]:
        """nanoGPT's estimate (the mean over ``eval_iters`` random batches per split), several batches per
        forward pass: bigger matmuls and fewer calls make evaluation ~2x cheaper on CPUs."""
        import torch

        cfg = self.cfg
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1)  # the same batches every time: comparable
        chunk = max(1, EVAL_TOKENS_PER_PASS // (cfg.batch_size * cfg.block_size))  # batches per forward pass
        losses = {}
        for name, ids in (("train", self.train_ids), ("val", self.val_ids)):
            total = 0.0
            for start in range(0, cfg.eval_iters, chunk):
                n = min(chunk, cfg.eval_iters - start)
                xs, ys = zip(*(get_batch(ids, cfg.block_size, cfg.batch_size, eval_gen, device) for _ in range(n)),
                             strict=True)
                total += model(torch.cat(xs), torch.cat(ys))[1].item() * n  # (n*B, T) in one pass
            losses[name] = total / cfg.eval_iters
        return losses

    def config(self) -> dict:
        return {"train": asdict(self.cfg), "model": asdict(self.mcfg), "tokenizer": self.ds.meta["tokenizer"]}

    def save_weights(self, model: Any, folder: Path) -> None:
        self.mtype.save(model, folder)

    def load_weights(self, model: Any, folder: Path) -> None:
        self.mtype.load_weights(model, folder)


def fit(cfg: TrainConfig, ds: Dataset, mtype: ModelType) -> tuple[Path, float]:
    """Fit a counted model type on the training split and save it as the checkpoint ``OUT/last``.

    Returns:
        The checkpoint folder, and the validation loss in nats per token on the first
        ``FIT_VAL_TOKENS`` tokens of the validation split (also in its history).
    """
    tok = ds.tokenizer
    model, shape = mtype.fit(tok.decode(ds.split("train").tolist()), tok, cfg)
    nll, n = mtype.rolling_nll(model, tok, tok.decode(ds.split("val").tolist()[:FIT_VAL_TOKENS]))
    val = nll / max(n, 1)
    history = {"train_steps": [], "train_loss": [], "evals": [{"step": 0, "val": val}]}
    config = {"objective": LanguageModelling.name, "train": asdict(cfg), "model": shape,
              "tokenizer": ds.meta["tokenizer"]}
    folder = checkpoint.save(Path(cfg.out_dir) / "last", lambda tmp: mtype.save(model, tmp), None, config, history)
    return folder, val


def prepared_dataset(cfg: TrainConfig) -> Dataset:
    """The prepared data for a run: reuse ``OUT/data`` when it was made from the same file and tokenizer."""
    src = Path(cfg.data)
    if not cfg.data:
        raise LLMAppError("no training data given; pass --data FILE (text or JSONL)")
    if src.is_dir():
        return Dataset.load(src)
    folder = Path(cfg.out_dir) / "data"
    try:
        ds = Dataset.load(folder)
        tok = ds.meta["tokenizer"]
        same_tok = tok.get("type") == "char" if cfg.tokenizer == "char" else tok.get("name") == cfg.tokenizer
        if ds.meta["source"] == str(src) and same_tok and ds.meta.get("mtime") == src.stat().st_mtime:
            return ds
    except (LLMAppError, OSError, KeyError):
        pass
    ds = prepare(src, folder, cfg.tokenizer)
    ds.meta["mtime"] = src.stat().st_mtime
    write_text(folder / "meta.json", json.dumps(ds.meta, indent=2))
    return ds
