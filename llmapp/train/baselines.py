"""Baselines that place the minimal GPT among text generators people know.

- :class:`CharNGram`: a character n-gram Markov chain with Witten-Bell interpolation down to a
  uniform distribution (a proper distribution, no tuned constants); fitted by counting.
- :class:`CharLSTM`: a character LSTM language model, trained by the same loop as the GPT.

Both train through the same data pipeline (``llmapp.train.data``) and sample with the same CLI.
:func:`bits_per_char` scores any of them (or the GPT) on a text, and the evaluation harness
compares them in bits per character beside the GPT and SmolLM2:

    llmapp train --data ../shared/data/tinyshakespeare.txt --preset shakespeare-char-cpu --set model_type=lstm --out runs/lstm
    llmapp train --data ../shared/data/tinyshakespeare.txt --set model_type=markov --out runs/markov
    llmapp sample --ckpt runs/markov --prompt "ROMEO:"
    llmapp eval perplexity --model runs/markov --model runs/lstm/best --model runs/shakespeare/best --out runs/ppl
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmapp.core.errors import LLMAppError
from llmapp.core.files import write_text


class CharNGram:
    """A character n-gram language model with Witten-Bell interpolation down to a uniform distribution.

    Witten-Bell gives unseen characters after a context the share of probability that context spent
    on new characters, so the model is a proper distribution with no tuned constants.

    Args:
        order: characters of context plus one (5: four characters of context).
    """

    def __init__(self, order: int = 5) -> None:
        self.order = order
        self.counts: list[defaultdict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        self.vocab: set[str] = set()

    def fit(self, text: str, vocab: set[str] | None = None) -> CharNGram:
        """Count n-grams in ``text``. ``vocab`` adds characters the uniform floor must cover (those of
        the text to be scored), so unseen characters get a small, finite probability."""
        self.vocab = set(text) | (vocab or set())
        for i, ch in enumerate(text):
            for n in range(self.order):  # n = context length
                if i - n < 0:
                    break
                self.counts[n][text[i - n:i]][ch] += 1
        return self

    def prob(self, history: str, ch: str) -> float:
        """P(ch | the last order-1 characters of history)."""
        p = 1.0 / max(1, len(self.vocab | {ch}))
        for n in range(self.order):
            if n > len(history):
                break
            ctx = history[len(history) - n:] if n else ""
            seen = self.counts[n].get(ctx)
            if not seen:
                break  # a longer context was never seen either
            total, types = sum(seen.values()), len(seen)
            p = (seen.get(ch, 0) + types * p) / (total + types)
        return p

    def nll(self, text: str) -> float:
        """Summed negative log-likelihood of ``text`` in nats, every character scored."""
        return -sum(math.log(self.prob(text[max(0, i - self.order + 1):i], ch)) for i, ch in enumerate(text))

    def bits_per_char(self, text: str) -> float:
        return self.nll(text) / max(1, len(text)) / math.log(2)

    def generate(self, prompt: str, max_new: int, temperature: float = 1.0, top_k: int = 0, seed: int | None = None) -> str:
        """Continue ``prompt`` by ``max_new`` characters, sampled from the interpolated distribution."""
        rng = random.Random(seed)
        chars = sorted(self.vocab)
        out = prompt
        for _ in range(max_new):
            hist = out[max(0, len(out) - self.order + 1):]
            probs = [self.prob(hist, c) for c in chars]
            if temperature <= 0:
                out += chars[max(range(len(chars)), key=probs.__getitem__)]
                continue
            weights = [p ** (1.0 / temperature) for p in probs]
            if top_k:
                cut = sorted(weights, reverse=True)[min(top_k, len(weights)) - 1]
                weights = [w if w >= cut else 0.0 for w in weights]
            out += rng.choices(chars, weights)[0]
        return out

    def save(self, path: str | Path) -> None:
        """JSON, written atomically (never pickle)."""
        data = {"format": 1, "order": self.order, "vocab": sorted(self.vocab),
                "counts": [{ctx: dict(c) for ctx, c in level.items()} for level in self.counts]}
        write_text(path, json.dumps(data))

    @classmethod
    def load(cls, path: str | Path) -> CharNGram:
        data = json.loads(Path(path).read_text())
        model = cls(data["order"])
        model.vocab = set(data["vocab"])
        model.counts = [defaultdict(Counter, {ctx: Counter(c) for ctx, c in level.items()}) for level in data["counts"]]
        return model


@dataclass
class LSTMConfig:
    """A character LSTM the size of the GPT it is compared with."""

    vocab_size: int = 65
    block_size: int = 64  # tokens per training window (and the sampling context)
    n_layer: int = 2
    n_embd: int = 256  # embedding and hidden size
    dropout: float = 0.0


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> Linear, with the GPT's ``forward``/``generate`` interface so the same
    trainer, checkpoints, sampler and scorer serve it."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lstm = nn.LSTM(config.n_embd, config.n_embd, config.n_layer, batch_first=True,
                            dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def num_parameters(self, non_embedding: bool = True) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, caches=None, pos0: int = 0):
        h, state = self.lstm(self.wte(idx), caches)  # (B, T, C)
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss, state

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None):
        from llmapp.train.gpt import sample_next

        logits, _, state = self(idx)
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt], dim=1)
            logits, _, state = self(nxt, caches=state)  # the recurrent state is the LSTM's KV cache
        return idx


def train_markov(cfg: Any, progress: bool = True) -> Path:
    """Fit a character 5-gram on the training split and save it as the checkpoint folder ``OUT/last``
    (``ngram.json`` + ``config.json``), which ``llmapp sample`` and ``llmapp eval`` read."""
    from llmapp.train.data import Dataset, prepare
    from llmapp.train.trainer import _dataset

    out = Path(cfg.out_dir)
    ds = _dataset(cfg, out, Dataset, prepare)
    if ds.meta["tokenizer"]["type"] != "char":
        raise LLMAppError("the Markov baseline works on characters; drop --set tokenizer=... (use char)")
    tok = ds.tokenizer
    order = min(5, cfg.block_size)
    model = CharNGram(order).fit(tok.decode(ds.split("train").tolist()), vocab=set(tok.chars))
    folder = out / "last"
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "ngram.json")
    val_bpc = model.bits_per_char(tok.decode(ds.split("val").tolist()[:20_000]))
    from llmapp.train import checkpoint

    config = {"format": checkpoint.FORMAT, "train": asdict(cfg), "model": {"order": order},
              "tokenizer": ds.meta["tokenizer"], "val_bits_per_char_20k": val_bpc}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "history.json").write_text(json.dumps({"train_steps": [], "train_loss": [], "evals": []}))
    return folder


def load_markov(folder: str | Path) -> CharNGram:
    return CharNGram.load(Path(folder) / "ngram.json")


def bits_per_char(ckpt: str | Path, text: str, stride: int | None = None) -> float:
    """Bits per character of ``text`` under a checkpoint of ``llmapp train``: Markov, LSTM or GPT.

    ``bits_per_char(ckpt: str | Path, text: str, stride: int | None = None) -> float``

    The common scoring interface of the baselines and the GPT; ``eval/tasks/perplexity.py`` computes
    the same quantity for the harness. Every character is paid for: the first at a uniform
    ``log2(vocab)`` (a character model has no boundary token to condition on), the rest given the
    text before them. The Markov chain sees its last ``order - 1`` characters; the LSTM carries its
    state through the whole text; the GPT scores windows of ``block_size`` advancing by ``stride``
    (default ``block_size // 2``), each character once, with the context its window gives.

    Args:
        ckpt: a run folder or its ``last/`` or ``best/``.
        text: the text to score; characters outside the model's vocabulary are an error.
        stride: GPT only; smaller is slower and gives each character more context.

    Returns:
        The mean negative log2-likelihood per character.
    """
    from llmapp.train import checkpoint

    if not text:
        raise LLMAppError("empty text: nothing to score")
    cfg = checkpoint.read_config(ckpt)
    if cfg["train"].get("model_type", "gpt") == "markov":
        return load_markov(checkpoint.find(ckpt)).bits_per_char(text)
    model, tok, _ = checkpoint.load_model(ckpt)
    ids = torch.tensor([tok.encode(text)])  # (1, N)
    nll = math.log(tok.vocab_size)  # the first character
    with torch.inference_mode():
        if isinstance(model, CharLSTM):
            logits = model(ids[:, :-1])[0]  # (1, N-1, vocab): the state runs through the whole text
            nll += F.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        else:
            T = model.config.block_size
            step = max(1, min(stride or T // 2, T - 1))
            done = 1  # ids before this position are scored
            for begin in range(0, ids.size(1) - 1, step):
                end = min(begin + T, ids.size(1))
                logits = model(ids[:, begin:end])[0][0, :-1]  # (end-begin-1, vocab): predicts ids[begin+1:end]
                lo = max(done, begin + 1)
                nll += F.cross_entropy(logits[lo - begin - 1:], ids[0, lo:end], reduction="sum").item()
                done = end
                if end == ids.size(1):
                    break
    return nll / ids.size(1) / math.log(2)
