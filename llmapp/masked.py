"""Masked language models: fill in ``[MASK]`` with the most likely tokens.

``minilm-l6-mlm`` is the bundled MiniLM encoder plus an MLM head that llmapp trains and ships
(``python -m llmapp.mlm`` rebuilds it). Any local directory or hub id of a checkpoint that carries
its masked-LM head works too, e.g. a saved ``BertForMaskedLM``:

    from llmapp import load_masked_lm
    mlm = load_masked_lm()                                # or load_masked_lm("path/to/bert-base-uncased")
    mlm.fill_mask("The capital of France is [MASK].")     # [{'token': 'paris', 'score': 0.41, ...}, ...]
"""

from __future__ import annotations

from typing import Any

from llmapp.errors import LLMAppError, ModelNotFound


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


def load_masked(name: str, device: str = "cpu") -> MaskedLM:
    """Load a masked LM by registry name, local directory or hub id.

    Raises:
        ModelNotFound: the checkpoint has no trained masked-LM head (its predictions would be noise).
    """
    from llmapp.models import REGISTRY, resolve

    if name in REGISTRY and REGISTRY[name].kind == "masked":
        resolve(name, kind="masked")  # raises a clear error if the head or encoder is missing
        from llmapp.mlm import load_mlm_model

        model, tokenizer = load_mlm_model()
        return MaskedLM(model.to(device), tokenizer, name)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = resolve(name)
    model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    head_missing = [k for k in info.get("missing_keys", []) if "predictions" in k or "lm_head" in k]
    if head_missing:
        raise ModelNotFound(f"{name} has no trained masked-LM head ({head_missing[0]} missing), so fill-mask "
                            "would be noise; use minilm-l6-mlm or a checkpoint saved with its MLM head")
    return MaskedLM(model.to(device), AutoTokenizer.from_pretrained(path), name)
