"""Hugging Face causal LMs on torch: loading weights once, the device and dtype they run with.

The ``hf`` chat backend (``llmapp.backends.hf``), training, fine-tuning, perplexity and export all
load causal LMs through :func:`load_causal_lm`, which keeps them in an in-process LRU so every
chain, the REPL and the server share one copy.

    from llmapp.models.hf import load_causal_lm
    lm = load_causal_lm("smollm2-135m-instruct")      # LoadedLM(model, tokenizer, device, context_window)
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

from llmapp.core.errors import LLMAppError, ModelNotFound
from llmapp.models.registry import DEFAULT_CHAT, REGISTRY, resolve


def default_device() -> str:
    """``cuda`` or ``mps`` when present, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` is fp32 on CPU (bf16 decodes slower on these CPUs) and bf16/fp16 on GPUs."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise LLMAppError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


@dataclass
class LoadedLM:
    """A causal LM and its tokenizer, loaded once and shared."""

    name: str
    path: str
    model: Any
    tokenizer: Any
    device: str
    context_window: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pad_token_id(self) -> int | None:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_causal_lm(name: str = DEFAULT_CHAT, device: str | None = None, dtype: str = "auto") -> LoadedLM:
    """Load (or fetch from the in-process cache) a causal LM and its tokenizer.

    Args:
        name: registry name, local HF directory, ``.gguf`` file or cached hub id.
        device: ``cpu``, ``cuda``, ``mps``; default: the best available.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
    """
    device = device or default_device()
    return _load_causal_cached(resolve(name, kind=None if name not in REGISTRY else "chat"), str(name), device, dtype)


@functools.lru_cache(maxsize=4)
def _load_causal_cached(path: str, name: str, device: str, dtype: str) -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_loading()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"could not load {name!r}: {str(exc).splitlines()[0]}; check that the folder holds a "
                            f"complete causal LM, or use a registry name: {', '.join(REGISTRY)}") from None
    model.to(device).eval()
    return LoadedLM(name=name, path=path, model=model, tokenizer=tokenizer, device=device,
                    context_window=context_window_of(model.config, tokenizer))


def quiet_loading() -> None:
    """No "Loading weights" bar for loads that take a second; the GGUF conversion keeps its own bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def context_window_of(config: Any, tokenizer: Any = None) -> int:
    """The context window from a model config, falling back to the tokenizer's limit."""
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0) or 0
    return limit if 0 < limit < 1_000_000 else 2048
