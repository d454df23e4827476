"""Baselines that place the minimal GPT among text generators people know.

- :class:`CharNGram`: a character n-gram Markov chain with Witten-Bell interpolation down to a
  uniform distribution (a proper distribution, no tuned constants); fitted by counting.
- :class:`CharLSTM`: a character LSTM language model, trained by the same loop as the GPT.

Both are model types of ``llmapp.train.registry`` (``markov`` and ``lstm``): they train through the
same data pipeline (``llmapp.train.data``) and ``llmapp train``, sample with ``llmapp sample``, and
``llmapp.train.checkpoint.bits_per_char`` and the evaluation harness score them in bits per
character beside the GPT and SmolLM2:

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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

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
