"""The ``perplexity`` task: token perplexity and bits per character of language models on a text.

Each document (a file of a folder, or a ~4000-character segment of one file, cut at paragraph
breaks) is scored with a sliding window: windows of ``window`` tokens advance by ``stride``, and
each token is scored once, with at least ``window - stride`` tokens of context (the standard
Hugging Face recipe). Token perplexity depends on the tokenizer; bits per character does not, so it
is the column to compare a BPE model, a character model and the n-gram baseline by.

Baselines: a uniform distribution over the text's characters (random) and a character 5-gram
with Witten-Bell smoothing fitted leave-one-out on the other documents (n-gram).

    llmapp eval perplexity --model smollm2-135m-instruct --out runs/ppl
    llmapp eval perplexity --data perplexity=notes.txt --set perplexity.window=1024 --out runs/ppl
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from eval.baselines import CharNGram
from eval.metrics import bits_per_char, perplexity
from eval.tasks.base import System, Task, limited, model_systems
from llmapp.core.errors import LLMAppError
from llmapp.train import checkpoint
from llmapp.train.checkpoint import is_checkpoint
from llmapp.train.registry import sliding_nll


def _demo_notes() -> str:
    from llmapp.corpora import GENAI_NOTES as DEMO_DATA

    return str(DEMO_DATA)


@dataclass
class PerplexityConfig:
    data: str = ""  # a .txt file or a folder of them; "": the bundled demo notes (one document per file)
    window: int = 512  # tokens per forward pass; capped at the model's context window
    stride: int = 256  # tokens the window advances by; each token then has >= window - stride of context
    segment_chars: int = 4000  # a single long file is cut into documents of about this size (resume unit)
    ngram_order: int = 5  # the n-gram baseline's order: 4 characters of context is its sweet spot on ~20k chars


class PerplexityTask(Task):
    name = "perplexity"
    description = "token perplexity and bits per character on a text (sliding window; baselines' tokens are characters)"
    config_class = PerplexityConfig
    metrics: ClassVar[dict[str, str]] = {"bits_per_char": "lower", "token_perplexity": "lower",
                                         "tokens": "", "chars": ""}
    plot_metrics: ClassVar[list[str]] = ["bits_per_char", "token_perplexity"]

    def examples(self) -> list[dict[str, Any]]:
        if not hasattr(self, "_docs"):
            self._docs = _documents(Path(self.config.data or _demo_notes()).expanduser(), self.config.segment_chars)
        return limited(self._docs, self.ctx)

    def systems(self) -> list[System]:
        for name in self.ctx.models:
            check_scorable(name)
        return model_systems(self.ctx) + [
            System("random (uniform chars)", "baseline", "uniform"),
            System(f"{self.config.ngram_order}-gram chars", "baseline", f"ngram:{self.config.ngram_order}"),
        ]

    def run(self, system: System, example: dict[str, Any]) -> dict[str, Any]:
        text = example["text"]
        if system.spec == "uniform":
            charset = set("".join(d["text"] for d in self._docs))
            nll, tokens = len(text) * math.log(len(charset)), len(text)
        elif system.spec.startswith("ngram:"):
            others = "\n\n".join(d["text"] for d in self._docs if d["id"] != example["id"])
            if not others:
                others = text[: len(text) // 2]  # a lone document: fit on its first half (a weaker baseline)
            charset = set("".join(d["text"] for d in self._docs))
            nll, tokens = CharNGram(self.config.ngram_order).fit(others, vocab=charset).nll(text), len(text)
        elif is_checkpoint(system.spec):
            nll, tokens = score_checkpoint(system.spec, text, self.config.window, self.config.stride)
        else:
            nll, tokens = score_hf(system.spec, text, self.config.window, self.config.stride)
        return {"nll_nats": nll, "tokens": tokens, "chars": len(text)}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        nll = sum(r["nll_nats"] for r in records)
        tokens, chars = sum(r["tokens"] for r in records), sum(r["chars"] for r in records)
        return {"bits_per_char": bits_per_char(nll, chars), "token_perplexity": perplexity(nll, tokens),
                "tokens": tokens, "chars": chars}


def _documents(path: Path, segment_chars: int) -> list[dict[str, Any]]:
    """The documents to score: every .txt/.md file of a folder, or segments of one file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".md") and p.is_file())
        docs = [{"id": p.name, "text": p.read_text(encoding="utf-8", errors="replace").strip()} for p in files]
    elif path.is_file():
        docs = [{"id": f"{path.name}#{i}", "text": seg} for i, seg in
                enumerate(_segments(path.read_text(encoding="utf-8", errors="replace"), segment_chars))]
    else:
        raise LLMAppError(f"text not found: {path}; give a .txt file or a folder with --data perplexity=PATH")
    docs = [d for d in docs if d["text"]]
    if not docs:
        raise LLMAppError(f"{path}:1: empty dataset (no text to score); give a non-empty .txt file")
    return docs


def _segments(text: str, size: int) -> list[str]:
    """Cut ``text`` at paragraph breaks into pieces of about ``size`` characters."""
    out, cur = [], ""
    for para in re.split(r"(\n\s*\n)", text):
        if cur and len(cur) + len(para) > size and cur.strip():
            out.append(cur.strip())
            cur = ""
        cur += para
    if cur.strip():
        out.append(cur.strip())
    return out


def check_scorable(name: str) -> None:
    """Refuse a model that cannot score log-likelihoods (an embeddings or masked model), in one line."""
    from llmapp.models import REGISTRY

    spec = REGISTRY.get(name)
    path = Path(name).expanduser()
    if is_checkpoint(name):
        return
    if (spec is not None and spec.kind != "chat") or (path.is_dir() and (path / "modules.json").exists()):
        kind = spec.kind if spec is not None else "sentence-transformers"
        valid = ", ".join(n for n, s in REGISTRY.items() if s.kind == "chat")
        raise LLMAppError(f"perplexity: model {name!r} ({kind}) cannot score log-likelihoods; "
                          f"use a causal LM: {valid}, a local HF causal-LM directory or a .gguf file")


def score_hf(name: str, text: str, window: int, stride: int) -> tuple[float, int]:
    """Summed NLL (nats) and scored-token count of ``text`` under a Hugging Face causal LM.

    The text is preceded by a document-boundary token (``<|endoftext|>``, else BOS/EOS) so its
    first token is scored too, which keeps bits per character covering every character.
    """

    from llmapp.models.hf import load_causal_lm

    lm = load_causal_lm(name)
    if not hasattr(lm.model, "forward") or not hasattr(lm.model.config, "vocab_size"):
        raise LLMAppError(f"perplexity: model {name!r} cannot score log-likelihoods; use a causal LM")
    tok = lm.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    boundary = tok.convert_tokens_to_ids("<|endoftext|>") if "<|endoftext|>" in tok.get_vocab() else None
    boundary = boundary if boundary is not None else (tok.bos_token_id if tok.bos_token_id is not None
                                                      else tok.eos_token_id)
    first = 0 if boundary is None else 1  # position of the first token that gets scored
    ids = ([boundary] if boundary is not None else []) + ids
    nll, scored = sliding_nll(ids, first, min(window, lm.context_window), stride,
                              lambda x: lm.model(x.to(lm.device)).logits)
    if boundary is None:  # no boundary token to condition on: charge the first token at a uniform log(vocab)
        return nll + math.log(len(tok)), scored + 1
    return nll, scored


def score_checkpoint(folder: str, text: str, window: int, stride: int) -> tuple[float, int]:
    """Summed NLL (nats) and scored tokens of ``text`` under a training checkpoint of ``llmapp train``,
    scored by its model type's ``rolling_nll`` (``llmapp.train.registry``): the GPT in sliding windows
    within its block size, the LSTM in windows of ``window`` tokens, the Markov chain by its counts.

    A character model has no boundary token, so its first character is charged at a uniform
    ``log(vocab)``; every character is then paid for, as with the other systems.
    """
    return checkpoint.load(folder).rolling_nll(text, window, stride)
