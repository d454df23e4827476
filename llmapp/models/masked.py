"""Masked language models: fill in ``[MASK]`` with the most likely tokens.

``minilm-l6-mlm`` is the bundled MiniLM encoder plus an MLM head that llmapp trains and ships
(``python -m llmapp.train.mlm`` rebuilds it). Any local directory or hub id of a checkpoint that carries
its masked-LM head works too, e.g. a saved ``BertForMaskedLM``:

    from llmapp import load_masked_lm
    mlm = load_masked_lm()                                # or load_masked_lm("path/to/bert-base-uncased")
    mlm.fill_mask("The capital of France is [MASK].")     # [{'token': 'paris', 'score': 0.41, ...}, ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmapp.core.errors import LLMAppError, ModelNotFound
from llmapp.models.bundled import MLM_HEAD as HEAD_PATH


class MaskedLM:
    """A masked LM and its tokenizer, with :meth:`fill_mask`."""

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    def fill_mask(self, text: str, top_k: int = 5) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Predict the tokens hidden behind each mask token in ``text``.

        Args:
            text: text with one or more mask tokens (``[MASK]`` for BERT-style models).
            top_k: candidates to return per mask.

        Returns:
            For one mask, a list of ``{"token", "token_id", "score", "sequence"}`` dicts, best first;
            for several masks, one such list per mask.
        """
        import torch

        if not text.strip():
            raise LLMAppError("empty text: write a sentence with [MASK] where a word is missing")
        enc = self.tokenizer(text, return_tensors="pt", truncation=True)
        positions = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        if not positions:
            raise LLMAppError(f"no {self.mask_token} in the text; put {self.mask_token} where a word is missing")
        with torch.inference_mode():
            logits = self.model(**enc.to(self.model.device)).logits[0]  # (T, vocab)
        results = []
        for pos in positions:
            probs = logits[pos].float().softmax(-1)
            scores, ids = probs.topk(top_k)
            results.append([
                {"token": self.tokenizer.decode([i]).strip(), "token_id": int(i), "score": float(s),
                 "sequence": text.replace(self.mask_token, self.tokenizer.decode([i]).strip(), 1)}
                for s, i in zip(scores.tolist(), ids.tolist(), strict=True)
            ])
        return results[0] if len(results) == 1 else results


def load_masked_lm(name: str = "minilm-l6-mlm", device: str | None = None) -> MaskedLM:
    """A masked LM with ``fill_mask(text) -> [{token, score, sequence}, ...]``, by registry name,
    local directory or cached hub id.

    Raises:
        ModelNotFound: the checkpoint has no trained masked-LM head (its predictions would be noise).
    """
    from llmapp.models.hf import default_device
    from llmapp.models.registry import REGISTRY, resolve

    device = device or default_device()

    if name in REGISTRY and REGISTRY[name].kind == "masked":
        resolve(name, kind="masked")  # raises a clear error if the head or encoder is missing
        model, tokenizer = load_mlm_model()
        return MaskedLM(model.to(device), tokenizer, name)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = resolve(name)
    model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, local_files_only=True)
    head_missing = [k for k in info.get("missing_keys", []) if "predictions" in k or "lm_head" in k]
    if head_missing:
        raise ModelNotFound(f"{name} has no trained masked-LM head ({head_missing[0]} missing), so fill-mask "
                            "would be noise; use minilm-l6-mlm or a checkpoint saved with its MLM head")
    return MaskedLM(model.to(device), AutoTokenizer.from_pretrained(path, local_files_only=True), name)


def base_model() -> tuple[Any, Any]:
    """MiniLM's encoder with an untrained MLM head (decoder tied to the word embeddings), and its tokenizer."""
    from transformers import AutoTokenizer, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    from llmapp.models.bundled import minilm_dir

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized cls.predictions" notice is expected here
    try:
        model = BertForMaskedLM.from_pretrained(minilm_dir())
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval(), AutoTokenizer.from_pretrained(minilm_dir())


def head_params(model: Any, unfreeze_layers: int = 0) -> dict[str, Any]:
    """The trained part: transform dense + LayerNorm and the output bias (the decoder matrix is tied),
    plus every parameter of the top ``unfreeze_layers`` encoder layers."""
    top = _top_layer_prefixes(model, unfreeze_layers)
    return {n: p for n, p in model.named_parameters()
            if (n.startswith("cls.predictions.") and "decoder" not in n) or n.startswith(top)}


def _top_layer_prefixes(model: Any, k: int) -> tuple[str, ...]:
    n = len(model.bert.encoder.layer)
    if not 0 <= k <= n:
        raise ValueError(f"unfreeze_layers must be 0..{n}, got {k}")
    return tuple(f"bert.encoder.layer.{i}." for i in range(n - k, n))


def load_mlm_model(path: str | Path = HEAD_PATH) -> tuple[Any, Any]:
    """MiniLM with the shipped MLM head applied. Returns ``(BertForMaskedLM, tokenizer)``."""
    from safetensors.torch import load_file

    if not Path(path).exists():
        raise ModelNotFound(f"MLM head {path} is missing; rebuild it with: python -m llmapp.train.mlm")
    model, tokenizer = base_model()
    head = load_file(str(path))
    layers = len({k.split(".")[3] for k in head if k.startswith("bert.encoder.layer.")})  # unfrozen top layers
    try:
        expected = set(head_params(model, layers))
    except ValueError:
        expected = set()
    if set(head) != expected:
        raise ModelNotFound(f"{path} does not hold a MiniLM MLM head (keys differ); rebuild it with python -m llmapp.train.mlm")
    model.load_state_dict(head, strict=False)
    return model.eval(), tokenizer
