"""Grounding: how well each generated sentence is supported by the passages it was written from.

Two cheap, model-free checks that any chain can run on its output:

- :func:`support`: per sentence, the share of its content words that occur in a passage, for the
  best passage (optionally blended with embedding cosine); a sentence a small model made up from
  nothing shares few words with what it read;
- :func:`unsupported_terms`: names, numbers and links in a sentence that no passage contains: the
  claims that are most often invented and most harmful when they are.

    from chains.grounding import support, unsupported_terms
    support(["GANs pit two networks against each other."], passages)   # [(0.8, 2)]: score, passage index
    unsupported_terms("It was invented in 1997 by Smith.", passages)    # ['1997', 'Smith']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# Function words carry no claim: a sentence is judged on the rest.
STOPWORDS = frozenset("""a an and are as at be been being but by can could did do does for from had has have how i if
in into is it its it's may might more most much no not of on or our so some such than that the their them then there
these they this those to too under up us was we were what when where which while who whom why will with would you
your also very just only each other any all both can't cannot don't does doesn't""".split())
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
_NUMBER = re.compile(r"\b\d[\d,.:]*\b")
_LINK = re.compile(r"https?://\S+|www\.\S+")
STEM = 5  # words are compared by their first 5 letters: "classify" ~ "classification", "trained" ~ "training"


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning, lower-cased and cut to :data:`STEM` letters."""
    return [w.lower()[:STEM] for w in _WORD.findall(text) if w.lower() not in STOPWORDS]


def overlap(sentence: str, passage: str) -> float:
    """Share of ``sentence``'s content words found in ``passage`` (1.0 for a sentence with none)."""
    words = content_words(sentence)
    if not words:
        return 1.0
    have = set(content_words(passage))
    return sum(w in have for w in words) / len(words)


def support(sentences: Sequence[str], passages: Sequence[str], embeddings: Any = None,
            weight: float = 0.5) -> list[tuple[float, int]]:
    """How well each sentence is supported, and by which passage.

    Args:
        sentences: the generated sentences.
        passages: the texts they should come from.
        embeddings: optional LangChain / llmapp embeddings; when given, the score blends word overlap
            with the cosine similarity of sentence and passage (``weight`` on the cosine).
        weight: the cosine's share of the score when ``embeddings`` is given.

    Returns:
        One ``(score, passage_index)`` per sentence: score in [0, 1] (higher: better supported),
        ``passage_index`` the best passage (-1 when there are no passages).
    """
    if not passages:
        return [(0.0, -1) for _ in sentences]
    scores = [[overlap(s, p) for p in passages] for s in sentences]
    if embeddings is not None and sentences:
        import numpy as np

        from chains.store import encode

        svec = np.asarray(encode(embeddings, list(sentences)), dtype="float32")
        pvec = np.asarray(encode(embeddings, list(passages)), dtype="float32")
        cos = svec @ pvec.T  # (sentences, passages)
        scores = [[(1 - weight) * o + weight * max(0.0, float(c)) for o, c in zip(row, crow, strict=True)]
                  for row, crow in zip(scores, cos, strict=True)]
    out = []
    for row in scores:
        best = max(range(len(row)), key=row.__getitem__)
        out.append((round(row[best], 4), best))
    return out


def unsupported_terms(sentence: str, passages: Sequence[str]) -> list[str]:
    """Names, numbers and links in ``sentence`` that occur in none of ``passages`` (case-insensitive).

    A name is a capitalised word that does not start the sentence; numbers are compared digits-only
    (``6,000`` matches ``6000``).
    """
    text = " ".join(passages).lower()
    digits = re.sub(r"[,\s]", "", text)
    missing = []
    for link in _LINK.findall(sentence):
        if link.lower().rstrip(".,)") not in text:
            missing.append(link)
    for number in _NUMBER.findall(_LINK.sub(" ", sentence)):
        bare = number.rstrip(".,:").replace(",", "")
        if bare and bare not in digits:
            missing.append(number.rstrip(".,:"))
    words = _WORD.findall(_LINK.sub(" ", sentence))
    for i, word in enumerate(words):
        if i > 0 and word[0].isupper() and word.lower() not in STOPWORDS and word.lower() not in text:
            missing.append(word)
    return list(dict.fromkeys(missing))
