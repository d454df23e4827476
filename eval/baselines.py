"""Baselines that give every results table context: a character n-gram LM, a word Markov generator,
lead-k and random sentence pickers, and the extractive centroid summary. Pure Python, no models, fitted in milliseconds on small texts.

    from eval.baselines import CharNGram
    lm = CharNGram(order=5).fit("some training text ...")
    nll_nats = lm.nll("text to score")            # summed negative log-likelihood, in nats
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from llmapp.train.baselines import (
    CharNGram,  # the character n-gram is also a trainable baseline; one copy serves both
)

__all__ = ["CharNGram", "WordMarkov", "centroid_summary", "lead", "random_sentences"]


_TOKEN = re.compile(r"\w+|[^\w\s]")


class WordMarkov:
    """A word bigram Markov chain: the n-gram baseline for open-ended generation."""

    def __init__(self) -> None:
        self.next: defaultdict[str, list[str]] = defaultdict(list)
        self.starts: list[str] = []

    def fit(self, text: str) -> WordMarkov:
        tokens = _TOKEN.findall(text)
        for a, b in zip(tokens, tokens[1:], strict=False):
            self.next[a].append(b)
            if a in ".!?" and b[:1].isupper():
                self.starts.append(b)
        self.starts = self.starts or tokens[:1]
        return self

    def generate(self, prompt: str, n_words: int, seed: int | str) -> str:
        """``n_words`` tokens, starting after the prompt's last word when the chain knows it."""
        rng = random.Random(str(seed))
        last = ([t for t in _TOKEN.findall(prompt) if t[0].isalnum()] or [""])[-1]
        word = last if last in self.next else rng.choice(self.starts)
        out = [] if word == last else [word]
        while len(out) < n_words:
            choices = self.next.get(word) or self.starts
            word = rng.choice(choices)
            out.append(word)
        return re.sub(r" ([^\w\s])", r"\1", " ".join(out))


def lead(sents: Sequence[str], k: int = 3) -> str:
    """The first ``k`` sentences: the lead-k summary baseline (strong on news-like text)."""
    return " ".join(sents[:k])


def random_sentences(sents: Sequence[str], k: int, seed: int | str) -> str:
    """``k`` sentences picked at random (kept in document order): the floor for extractive summaries."""
    rng = random.Random(str(seed))
    picked = sorted(rng.sample(range(len(sents)), min(k, len(sents))))
    return " ".join(sents[i] for i in picked)


def centroid_summary(sents: Sequence[str], vectors: Any = None, k: int = 3) -> str:
    """The ``k`` sentences closest to the document's centroid, in document order: the extractive baseline.

    Args:
        sents: the document's sentences.
        vectors: their unit sentence embeddings, one row each (MiniLM in the eval); None: word-frequency
            vectors, so the baseline needs no model.
        k: how many sentences.
    """
    from chains.extractive import select_sentences

    return " ".join(sents[i] for i in select_sentences(sents, max_sentences=k, vectors=vectors))
