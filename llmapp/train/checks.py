"""Validation of training runs: the TrainConfig, and everything a run folder holds when it is read back.

A run's settings come from presets, ``--set k=v``, ``--config FILE`` and, on ``--resume`` or
``llmapp sample``, from ``config.json``, ``history.json``, ``state.pt`` and ``model.safetensors`` on
disk. Each is checked here, where it enters, and refused with one line naming the file or setting
and the fix; a damaged file is never a traceback three calls later.

    from llmapp.train.checks import check_train_config, read_run_json
    check_train_config(cfg)                       # ConfigError naming the setting
    cfg = read_run_json(folder / "config.json")   # LLMAppError naming the file
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from llmapp.core.config import SEED_MAX
from llmapp.core.errors import ConfigError, LLMAppError
from llmapp.core.validate import Invalid, check_record, dataclass_from, refuse

# name -> (lowest, highest) for whole-number settings; highs keep a typo from allocating terabytes
INT_RANGES: dict[str, tuple[int, int]] = {
    "n_layer": (1, 1024), "n_head": (1, 1024), "n_embd": (1, 65_536), "block_size": (1, 1_048_576),
    "batch_size": (1, 65_536), "grad_accum": (1, 65_536), "max_iters": (1, 10**9), "warmup_iters": (0, 10**9),
    "lr_decay_iters": (0, 10**9), "eval_interval": (0, 10**9), "eval_iters": (1, 10**6), "log_interval": (1, 10**9),
    "seed": (0, SEED_MAX), "threads": (0, 4096), "vocab_size": (1, 10**7),
}
# name -> (lowest, highest, lowest allowed?, highest allowed?) for real-valued settings
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, 1e12, False, True), "min_lr": (0.0, 1e12, True, True), "dropout": (0.0, 1.0, True, False),
    "weight_decay": (0.0, 10.0, True, True), "beta1": (0.0, 1.0, True, False), "beta2": (0.0, 1.0, True, False),
    "grad_clip": (0.0, 1e6, True, True),
}
CHOICES = {"mixed_precision": ("auto", "no", "fp16", "bf16")}
DAMAGED_FIX = "the run folder is damaged: start a new run with another --out, or restore it from a copy"


def check_train_config(cfg: Any, auto: tuple[str, ...] = ()) -> None:
    """Check every field of a TrainConfig (or a model config) that has a known range.

    Args:
        cfg: the config.
        auto: fields where 0 means "chosen automatically" (fine-tuning's ``lr``), accepted as 0.

    Raises:
        ConfigError: the first bad setting, named with its valid range.
    """
    for name, value in vars(cfg).items():
        if name in auto and value == 0:
            continue
        if name in INT_RANGES:
            lo, hi = INT_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name}={value!r}: must be a whole number from {lo} to {hi:,}")
        elif name in FLOAT_RANGES:
            lo, hi, lo_in, hi_in = FLOAT_RANGES[name]
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi))
            if not ok:
                bound = f"{'at least' if lo_in else 'above'} {lo} and {'at most' if hi_in else 'below'} {hi:g}"
                raise ConfigError(f"{name}={value!r}: must be a number {bound}")
        elif name in CHOICES and value not in CHOICES[name]:
            raise ConfigError(f"{name}={value!r}: must be one of {', '.join(CHOICES[name])}")
        elif name in ("bias", "compile") and not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: must be true or false")
        elif name in ("data", "out_dir", "tokenizer") and (not isinstance(value, str) or "\x00" in value):
            raise ConfigError(f"{name}={value!r}: must be a file name or path (a string without NUL)")
    n_embd, n_head = getattr(cfg, "n_embd", None), getattr(cfg, "n_head", None)
    if isinstance(n_embd, int) and isinstance(n_head, int) and n_head and n_embd % n_head:
        fits = [h for h in range(1, min(n_embd, 64) + 1) if n_embd % h == 0][-4:]
        raise ConfigError(f"n_head={n_head} does not divide n_embd={n_embd}: each head gets n_embd/n_head dimensions; "
                          f"use n_head in {fits} or change n_embd")
    if getattr(cfg, "tokenizer", "char") == "":
        raise ConfigError("tokenizer='': use char, or a registry name / path of a Hugging Face tokenizer")


def read_run_json(path: Path, fix: str = DAMAGED_FIX) -> Any:
    """Parse a run's JSON file, refusing an unreadable or invalid one in one line naming it."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise LLMAppError(f"{path} is missing; {fix}") from None
    except OSError as exc:
        raise LLMAppError(f"cannot read {path}: {exc.strerror or exc}; {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise refuse(str(path), f"not valid JSON ({exc})", fix) from None


def check_run_config(cfg: Any, path: Path) -> dict:
    """Check the shape of a checkpoint's ``config.json``: format, train, model and tokenizer sections."""
    try:
        check_record(cfg, {"format": int, "train": dict, "model": dict})
        if cfg.get("objective", "pretrain") != "pretrain":  # fine-tuning and MLM: a Hugging Face model's tokenizer
            return cfg
        tok = check_record(cfg, {"tokenizer": dict})["tokenizer"]
        check_record(tok, {"type": str})
        if tok["type"] == "char":
            chars = check_record(tok, {"chars": list})["chars"]
            if not all(isinstance(c, str) for c in chars):
                raise Invalid("'tokenizer.chars' must be a list of strings")
            vocab = cfg["model"].get("vocab_size")
            if isinstance(vocab, int) and len(chars) != vocab:  # every id the model emits must decode
                raise Invalid(f"'tokenizer.chars' has {len(chars)} characters but the model's vocab_size is {vocab}")
        else:
            check_record(tok, {"name": str})
        if not isinstance(cfg["train"].get("model_type", "gpt"), str):  # which names exist: llmapp.train.registry
            raise Invalid("'train.model_type' must be a model type's name")
    except Invalid as exc:
        raise refuse(str(path), exc, DAMAGED_FIX) from None
    return cfg


def model_config(cls: Any, raw: Any, path: Path) -> Any:
    """The model config (GPTConfig, LSTMConfig) a checkpoint records, checked key by key and range by range."""
    cfg = dataclass_from(cls, raw, where=f"{path}: model", fix=DAMAGED_FIX)
    try:
        check_train_config(cfg)
    except ConfigError as exc:
        raise refuse(f"{path}: model", exc, DAMAGED_FIX) from None
    return cfg


def check_history(history: Any, path: Path) -> dict:
    """Check the shape of ``history.json``: train_steps and train_loss lists, evals of {step, val[, train]}."""
    try:
        check_record(history, {"train_steps": list, "train_loss": list, "evals": list})
        for e in history["evals"]:
            check_record(e, {"step": int})
            if not _is_number(e.get("val")) or ("train" in e and not _is_number(e["train"])):
                raise Invalid("each entry of 'evals' needs a number 'val' (and 'train', if any, a number)")
        if not all(_is_number(x) for x in history["train_loss"]):
            raise Invalid("'train_loss' must be a list of numbers")
    except Invalid as exc:
        raise refuse(str(path), exc, DAMAGED_FIX) from None
    return history


def check_state(state: Any, path: Path) -> dict:
    """Check the shape of ``state.pt``: optimizer state, step, best_val and both RNG states."""
    import torch

    try:
        check_record(state, {"optimizer": dict, "step": int})
        if not _is_number(state.get("best_val")):
            raise Invalid("'best_val' must be a number")
        for name in ("torch_rng", "batch_rng"):
            if not isinstance(state.get(name), torch.Tensor) or state[name].dtype != torch.uint8:
                raise Invalid(f"{name!r} must be a byte tensor (an RNG state)")
        if state["step"] < 0:
            raise Invalid(f"'step' is {state['step']}")
    except Invalid as exc:
        raise refuse(str(path), exc, DAMAGED_FIX) from None
    return state


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # inf/nan allowed: a loss may be
