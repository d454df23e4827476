"""Training checkpoints on disk: safe to load, safe to interrupt, and exportable to Hugging Face.

A checkpoint is a folder (``RUN/last`` or ``RUN/best``):

    model.safetensors   the weights (tied embeddings stored once)
    state.pt            optimizer, RNG and step state: tensors and plain containers only, read back
                        with ``torch.load(weights_only=True)``, which cannot run code
    config.json         the TrainConfig, the GPTConfig and the tokenizer, with a format version
    history.json        every training loss and every evaluation so far

It is written into a temporary folder and swapped in by renames, so a crash or a full disk while
saving leaves the previous checkpoint intact.

    llmapp export --ckpt runs/shakespeare/best --out runs/shakespeare-hf
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import readable_dir, recover_dir, replace_dir
from llmapp.core.validate import refuse
from llmapp.train.checks import (
    DAMAGED_FIX,
    check_history,
    check_run_config,
    check_state,
    model_config,
    read_run_json,
)

FORMAT = 1
CHECKPOINT_NAMES = ("last", "best")  # the checkpoints a run folder holds
WEIGHTS = ("model.safetensors", "ngram.json")  # a network's weights, or a Markov baseline's counts
# Linear weights that GPT-2's HF implementation stores as Conv1D, i.e. transposed.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def save(folder: str | Path, model: Any, state: dict, config: dict, history: dict) -> Path:
    """Write a checkpoint folder atomically; the old one survives until the new one is complete."""
    import torch
    from safetensors.torch import save_model

    folder = Path(folder)
    for sibling in CHECKPOINT_NAMES:  # a save killed mid-way on the other checkpoint: clean it up too
        recover_dir(folder.with_name(sibling))
    with replace_dir(folder) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps({"format": FORMAT, **config}, indent=2))
        (tmp / "history.json").write_text(json.dumps(history))
    return Path(folder)


def find(folder: str | Path) -> Path:
    """The checkpoint folder to read: ``folder`` itself or a run's ``last`` (each, if a save was killed
    mid-swap, its whole previous copy: ``readable_dir``), or a ``.old`` left by an older llmapp."""
    folder = Path(folder)
    for candidate in (readable_dir(folder), readable_dir(folder / "last"), folder.with_name(folder.name + ".old")):
        if (candidate / "config.json").exists() and any((candidate / w).exists() for w in WEIGHTS):
            return candidate
    raise LLMAppError(f"no checkpoint in {folder} (config.json + model.safetensors); "
                      "point --ckpt at a run folder or its last/ or best/ subfolder")


def read_config(folder: str | Path) -> dict:
    """A checkpoint's ``config.json``, checked for shape (one line naming the file if it is damaged)."""
    path = find(folder) / "config.json"
    cfg = read_run_json(path)
    if isinstance(cfg, dict) and cfg.get("format") != FORMAT:
        raise LLMAppError(f"{path}: checkpoint format {cfg.get('format')!r} is not supported (expected {FORMAT}); "
                          "use the llmapp that wrote it, or train again")
    return check_run_config(cfg, path)


def tokenizer_of(config: dict):
    """The tokenizer recorded in a checkpoint's config."""
    from llmapp.train.data import tokenizer_from_dict

    return tokenizer_from_dict(config["tokenizer"])


def load_model(folder: str | Path, device: str = "cpu"):
    """Rebuild the GPT of a checkpoint. Returns ``(model, tokenizer, config_dict)``."""

    path = find(folder)
    cfg = read_config(path)
    kind = cfg["train"].get("model_type", "gpt")
    if kind == "gpt":
        from llmapp.train.gpt import GPT, GPTConfig

        model = GPT(model_config(GPTConfig, cfg["model"], path / "config.json"))
    elif kind == "lstm":
        from llmapp.train.baselines import CharLSTM, LSTMConfig

        model = CharLSTM(model_config(LSTMConfig, cfg["model"], path / "config.json"))
    else:
        raise LLMAppError(f"{path} holds a {kind} baseline, not a network; load it with llmapp.train.baselines")
    load_weights_into(model, path / "model.safetensors", device)
    return model.to(device).eval(), tokenizer_of(cfg), cfg


def load_weights_into(model: Any, file: Path, device: str = "cpu") -> None:
    """Load ``model.safetensors`` into ``model``; a damaged or mismatched file is one line naming it."""
    from safetensors.torch import load_model as load_weights

    if not file.is_file():
        raise LLMAppError(f"{file} is missing; {DAMAGED_FIX}")
    try:
        load_weights(model, str(file), device=device)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, a shape mismatch, a truncated file: all one line
        raise refuse(str(file), f"damaged or not this model's weights ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})", DAMAGED_FIX) from None


def load_state(folder: str | Path) -> dict:
    """Optimizer/RNG/step state; ``weights_only=True`` refuses anything but tensors and containers."""
    import torch

    path = find(folder) / "state.pt"
    if not path.exists():
        raise LLMAppError(f"{path.parent} has weights but no training state (state.pt), so it cannot be resumed; "
                          "start a new run, or fine-tune from it")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file raises anything from zipfile to pickle
        raise refuse(str(path), f"damaged ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                     DAMAGED_FIX) from None
    return check_state(state, path)


def load_history(folder: str | Path) -> dict:
    """A checkpoint's ``history.json`` (losses and evaluations), checked for shape."""
    path = find(folder) / "history.json"
    return check_history(read_run_json(path), path)


def export_hf(ckpt: str | Path, out: str | Path) -> Path:
    """Write a checkpoint as a Hugging Face ``GPT2LMHeadModel`` folder with its tokenizer.

    The result loads with ``AutoModelForCausalLM``, ``llmapp.load_chat_model(out)`` and the chains.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tokenizer, cfg = load_model(ckpt)
    if cfg["train"].get("model_type", "gpt") != "gpt":
        raise LLMAppError("only GPT checkpoints export to Hugging Face; baselines are scored and sampled in place")
    m = cfg["model"]
    hf_config = GPT2Config(vocab_size=m["vocab_size"], n_positions=m["block_size"], n_embd=m["n_embd"],
                           n_layer=m["n_layer"], n_head=m["n_head"], activation_function="gelu_new",
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                           tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)
    if not m.get("bias", True):
        raise LLMAppError("GPT-2 export needs bias=True; retrain with --set bias=true")
    hf = GPT2LMHeadModel(hf_config)
    sd = {k: (v.t() if k.endswith(_CONV1D) else v) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias", "lm_head.weight"))]:
        raise LLMAppError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    with replace_dir(out) as tmp, torch.no_grad(), quiet_hf_saving():
        hf.save_pretrained(tmp)
        tokenizer.to_hf().save_pretrained(tmp)
        (tmp / "llmapp-export.json").write_text(json.dumps({"format": FORMAT, "source": str(find(ckpt)),
                                                           "train_config": cfg.get("train", {})}, indent=2))
    return Path(out)


@contextmanager
def quiet_hf_saving() -> Iterator[None]:
    """Hide transformers' "Writing model shards" bar: the commands print one line when done."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def plot_losses(history: dict, path: str | Path) -> None:
    """Save the loss curve (train per step, smoothed; validation at each evaluation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = history.get("train_steps", []), history.get("train_loss", [])
    if losses:
        k = max(1, len(losses) // 100)
        smooth = [sum(losses[max(0, i - k):i + 1]) / len(losses[max(0, i - k):i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, label="train (smoothed)", lw=1)
    evals = history.get("evals", [])
    if evals:
        ax.plot([e["step"] for e in evals], [e["val"] for e in evals], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def config_dict(train_cfg: Any, model_cfg: Any, tokenizer: dict) -> dict:
    return {"train": asdict(train_cfg), "model": asdict(model_cfg), "tokenizer": tokenizer}
