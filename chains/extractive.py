"""Extractive selection: the sentences of a text that best represent the whole of it.

The first half of the extract-then-abstract summary strategy, the fallback of the hallucination
guard, and the extractive baseline of ``llmapp eval summarization``. Sentences are ranked by
cosine similarity to the document's centroid (the mean of all sentence vectors, MiniLM by default),
near-duplicates of a sentence already taken are skipped, and the picks are returned in document
order. Without embeddings, a word-frequency centroid (content words, as in Luhn's and SumBasic's
summarizers) stands in, so selection works with no model at all.

    from llmapp import load_embeddings
    from chains.extractive import select_sentences
    picks = select_sentences(sentences, load_embeddings(), max_sentences=5)     # list of indices
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

DUPLICATE = 0.9  # cosine above which a candidate repeats a sentence already picked
MIN_WORDS, MAX_WORDS = 8, 80  # shorter is a heading, a label or a greeting; longer is a run-on list or a table
_URL = re.compile(r"https?://|www\.", re.I)
_STOP = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those he she they them his her their we our you your i not no so than then there here which who
whom what when where how why all any both each few more most other some such only own same can will just do does
did has have had would should could may might must shall also into over under about after before between out up
down very""".split())


def candidates(sentences: Sequence[str]) -> list[int]:
    """Indices of the sentences worth selecting: prose of a sensible length, not links or headings."""
    keep = []
    for i, s in enumerate(sentences):
        n = len(s.split())
        if MIN_WORDS <= n <= MAX_WORDS and not _URL.search(s) and not s.lstrip().startswith("#"):
            keep.append(i)
    return keep or list(range(len(sentences)))


def centroid_scores(vectors: Any) -> Any:
    """Cosine of each (unit) vector to the normalised mean of all of them: shape (n,)."""
    import numpy as np

    centre = vectors.mean(axis=0)
    centre = centre / max(float(np.linalg.norm(centre)), 1e-12)
    return vectors @ centre


def word_vectors(sentences: Sequence[str]) -> Any:
    """Unit bag-of-content-words vectors, weighted by the word's frequency in the whole text."""
    import numpy as np

    tokens = [[w for w in re.findall(r"[a-z0-9]+", s.lower()) if w not in _STOP and len(w) > 2] for s in sentences]
    freq = Counter(w for t in tokens for w in set(t))
    vocab = {w: i for i, w in enumerate(freq)}
    vecs = np.zeros((len(sentences), max(1, len(vocab))), dtype="float32")
    for row, t in enumerate(tokens):
        for w in set(t):
            vecs[row, vocab[w]] = freq[w]
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


def select_sentences(sentences: Sequence[str], embeddings: Any = None, max_sentences: int = 3,
                     max_tokens: int | None = None, count: Callable[[str], int] | None = None,
                     vectors: Any = None, avoid: Any = None, avoid_above: float = DUPLICATE,
                     lead: float = 0.0) -> list[int]:
    """The most central sentences, without near-duplicates, in document order.

    Args:
        sentences: the document's sentences (``chains.grounding.split_sentences``).
        embeddings: sentence embeddings; None: word-frequency vectors (no model).
        max_sentences: at most this many.
        max_tokens: and at most this many tokens together, counted by ``count`` (a sentence that
            would overflow is skipped, a shorter later one may still fit).
        count: tokens of a sentence (the chat model's ``get_num_tokens``); default: words.
        vectors: the sentences' unit vectors if already computed (one row per sentence).
        avoid: unit vectors (same model) of what is already said: a sentence whose cosine to any of
            them reaches ``avoid_above`` is skipped (topping up a summary without repeating it).
        avoid_above: that cosine.
        lead: weight of a position prior added to each centroid score, ``lead / sqrt(1 + index)``:
            authors state the point early, so an early sentence wins over a slightly more central
            late one (0 = centroid only, the eval's centroid baseline).

    Returns:
        Indices into ``sentences``, ascending.
    """
    if not sentences:
        return []
    if vectors is None:
        from chains.grounding import encode

        vectors = encode(embeddings, sentences) if embeddings is not None else word_vectors(sentences)
    scores = centroid_scores(vectors)
    if lead:
        import numpy as np

        scores = scores + lead / np.sqrt(1.0 + np.arange(len(sentences)))
    count = count or (lambda s: len(s.split()))
    pool = sorted(candidates(sentences), key=lambda i: -float(scores[i]))
    picked: list[int] = []
    used = 0
    for i in pool:
        if len(picked) >= max_sentences:
            break
        if any(float(vectors[i] @ vectors[j]) > DUPLICATE for j in picked):
            continue
        if avoid is not None and len(avoid) and float((avoid @ vectors[i]).max()) >= avoid_above:
            continue
        cost = count(sentences[i])
        if max_tokens is not None and used + cost > max_tokens:
            continue
        picked.append(i)
        used += cost
    return sorted(picked)


__all__ = ["candidates", "centroid_scores", "select_sentences", "word_vectors"]
