"""Training checkpoints on disk: safe to load, safe to interrupt, and exportable to Hugging Face.

A checkpoint is a folder (``RUN/last`` or ``RUN/best``):

    model.safetensors   the weights (tied embeddings stored once; a fine-tuning run's trainable ones);
                        a fitted Markov baseline has ngram.json instead
    state.pt            optimizer, RNG and step state: tensors and plain containers only, read back
                        with ``torch.load(weights_only=True)``, which cannot run code
    config.json         the objective, the run's config, the model's shape and the tokenizer, with a
                        format version
    history.json        every training loss and every evaluation so far

It is written into a temporary folder and swapped in by renames, so a crash or a full disk while
saving leaves the previous checkpoint intact.

    llmapp export --ckpt runs/shakespeare/best --out runs/shakespeare-hf
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError
from llmapp.core.files import readable_dir, recover_dir, replace_dir
from llmapp.core.validate import refuse
from llmapp.train import registry
from llmapp.train.checks import DAMAGED_FIX, check_history, check_run_config, check_state, read_run_json
from llmapp.train.registry import ModelType

FORMAT = 1
CHECKPOINT_NAMES = ("last", "best")  # the checkpoints a run folder holds
WEIGHTS = ("model.safetensors", "ngram.json")  # a network's weights, or a Markov baseline's counts
RUN_FILES = ("last", "best", "loss.png")  # what the loop writes into a run folder
PRETRAIN = "pretrain"  # config.json's "objective" for `llmapp train` runs (the default: older runs lack the key)


def save(folder: str | Path, write_weights: Callable[[Path], None], state: dict | None, config: dict,
         history: dict) -> Path:
    """Write a checkpoint folder atomically; the old one survives until the new one is complete.

    Args:
        folder: the checkpoint folder (``RUN/last``, ``RUN/best``).
        write_weights: writes the weights into the folder being built (its one argument).
        state: optimizer, RNG and step state for ``--resume`` (tensors and plain containers), or None.
        config: what ``config.json`` holds besides the format version.
        history: the losses so far.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    for sibling in CHECKPOINT_NAMES:  # a save killed mid-way on the other checkpoint: clean it up too
        recover_dir(folder.with_name(sibling))
    with replace_dir(folder) as tmp:
        write_weights(tmp)
        if state is not None:
            import torch

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


def is_checkpoint(name: str | Path) -> bool:
    """True for a pretraining run of ``llmapp train`` (the run folder, or its last/ or best/).

    A fine-tuned model's folder is a Hugging Face model, not one of these, although it keeps its
    own training checkpoints in ``last/`` and ``best/``.
    """
    path = Path(name).expanduser()
    for p in (path, path / "last"):
        if (p / "config.json").exists() and (p / "history.json").exists():
            try:
                return json.loads((p / "config.json").read_text()).get("objective", PRETRAIN) == PRETRAIN
            except (OSError, json.JSONDecodeError):
                return False
    return False


@dataclass
class TrainedModel:
    """A loaded checkpoint of ``llmapp train``: its model, tokenizer and config, scored and sampled by
    the model type recorded in it (``llmapp.train.registry``)."""

    type: ModelType
    model: Any
    tokenizer: Any
    config: dict

    def rolling_nll(self, text: str, window: int | None = None, stride: int | None = None) -> tuple[float, int]:
        """Summed NLL of ``text`` in nats and the tokens scored; see :meth:`ModelType.rolling_nll`."""
        return self.type.rolling_nll(self.model, self.tokenizer, text, window, stride)

    def sample(self, prompt: str, max_tokens: int, **settings: Any) -> Iterator[str]:
        """Continuations of ``prompt``; settings: temperature, top_k, top_p, seed, n."""
        return self.type.sample(self.model, self.tokenizer, prompt, max_tokens, **settings)


def load(folder: str | Path, device: str = "cpu") -> TrainedModel:
    """Load a checkpoint of ``llmapp train``, whatever its model type.

    Raises:
        LLMAppError: no checkpoint there, an unknown model type, or a fine-tuning checkpoint (whose
            model is the Hugging Face folder around it).
    """
    path = find(folder)
    cfg = read_config(path)
    objective = cfg.get("objective", PRETRAIN)
    if objective != PRETRAIN:
        raise LLMAppError(f"{path} is a {objective} checkpoint; load its model from the folder that holds it "
                          f"({path.parent}) by name, e.g. llmapp chat --model {path.parent}")
    kind = cfg["train"].get("model_type", "gpt")
    if kind not in registry.MODEL_TYPES:
        raise refuse(str(path / "config.json"), f"model_type {kind!r} is not one of {', '.join(registry.MODEL_TYPES)}",
                     "register the model type (llmapp.train.registry) before loading, or train again")
    mtype = registry.MODEL_TYPES[kind]
    return TrainedModel(mtype, mtype.load(path, cfg, device), tokenizer_of(cfg), cfg)


def load_model(folder: str | Path, device: str = "cpu") -> tuple[Any, Any, dict]:
    """Rebuild the model of a checkpoint. Returns ``(model, tokenizer, config_dict)``."""
    loaded = load(folder, device)
    return loaded.model, loaded.tokenizer, loaded.config


def bits_per_char(ckpt: str | Path, text: str, stride: int | None = None) -> float:
    """Bits per character of ``text`` under a checkpoint of ``llmapp train``: Markov, LSTM, GPT or any type.

    The common scoring interface of the baselines and the GPT; ``llmapp eval perplexity`` uses the
    same :meth:`ModelType.rolling_nll`. Every character is paid for: the first at a uniform
    ``log2(vocab)``, the rest given the text before them. The Markov chain sees its last ``order - 1``
    characters; the LSTM carries its state through the whole text; the GPT scores windows of
    ``block_size`` advancing by ``stride`` (default ``block_size // 2``), each character once.

    Args:
        ckpt: a run folder or its ``last/`` or ``best/``.
        text: the text to score; characters outside the model's vocabulary are an error.
        stride: how far the window advances, where the context is limited; smaller is slower and
            gives each character more context.

    Returns:
        The mean negative log2-likelihood per character.
    """
    if not text:
        raise LLMAppError("empty text: nothing to score")
    nll, _ = load(ckpt).rolling_nll(text, stride=stride)
    return nll / len(text) / math.log(2)


def tokenizer_of(config: dict):
    """The tokenizer recorded in a checkpoint's config."""
    from llmapp.train.data import tokenizer_from_dict

    return tokenizer_from_dict(config["tokenizer"])


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
    """Write a checkpoint as a Hugging Face model folder with its tokenizer (GPT: a ``GPT2LMHeadModel``).

    The result loads with ``AutoModelForCausalLM``, ``llmapp.load_chat_model(out)`` and the chains.

    Raises:
        LLMAppError: no checkpoint, or a model type without a Hugging Face form (not ``exportable``).
    """
    import torch

    loaded = load(ckpt)
    if not getattr(loaded.type, "exportable", False):
        exportable = [n.upper() for n, t in registry.MODEL_TYPES.items() if getattr(t, "exportable", False)]
        raise LLMAppError(f"only {', '.join(exportable)} checkpoints export to Hugging Face; "
                          f"{loaded.type.name} models are scored and sampled in place")
    hf = loaded.model.to_hf()
    with replace_dir(out) as tmp, torch.no_grad(), quiet_hf_saving():
        hf.save_pretrained(tmp)
        loaded.tokenizer.to_hf().save_pretrained(tmp)
        (tmp / "llmapp-export.json").write_text(json.dumps({"format": FORMAT, "source": str(find(ckpt)),
                                                           "train_config": loaded.config.get("train", {})}, indent=2))
    return Path(out)


def carry_over(old: Path, new: Path, names: tuple[str, ...] = RUN_FILES) -> None:
    """Put ``old``'s files ``names`` into ``new``, the folder about to replace it (``replace_dir``): hard
    links where the file system has them (instant, no extra space), copies elsewhere. ``old`` is untouched,
    so a failed save still leaves the run's checkpoints where they were."""
    for name in names:
        src = old / name
        if src.is_dir():
            shutil.copytree(src, new / name, copy_function=_link)
        elif src.is_file():
            _link(str(src), str(new / name))


def duplicate(src: str | Path, dst: str | Path) -> Path:
    """Make checkpoint folder ``dst`` a copy of ``src`` atomically, by hard links where possible: saving
    ``best`` at the step ``last`` was just saved costs no second write (files are replaced, never edited)."""
    with replace_dir(dst) as tmp:
        for f in Path(src).iterdir():
            _link(str(f), str(tmp / f.name))
    return Path(dst)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
