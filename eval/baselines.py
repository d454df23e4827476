"""Baselines that give every results table context: a character n-gram LM, a word Markov generator,
lead-k and random sentence pickers. Pure Python, no models, fitted in milliseconds on small texts.

    from eval.baselines import CharNGram
    lm = CharNGram(order=5).fit("some training text ...")
    nll_nats = lm.nll("text to score")            # summed negative log-likelihood, in nats
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence


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
