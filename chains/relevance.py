"""Relevance signals for abstention: does what was retrieved answer the question at all?

Three signals, each a number that is higher when the retrieved chunks are more likely to hold the
answer (:data:`SIGNALS`):

- ``cosine``: the best cosine similarity between the question and a retrieved chunk. It depends on
  the embedding model (MiniLM's unrelated pairs sit near 0.1, another model's may sit at 0.6);
- ``coverage``: the share of the question's content words, weighted by their rarity in the store
  (IDF), that occur in the retrieved chunks. A near-miss question ("the password of the Wi-Fi")
  names something the documents never mention; no embedding is involved, so it holds for any model;
- ``fusion``: the best, over the retrieved chunks, of the chunk's cosine times its own coverage: one
  chunk must both be close in meaning and hold the question's rare words.

Thresholds come from the answerable-against-unanswerable ROC on the dev split of
``eval/data/rag-qa.jsonl`` (``python -m eval.calibrate``) and are recorded per embedding model in
:data:`CALIBRATION`; a model with no entry falls back to ``coverage``, the signal that does not depend
on it. ``RAGConfig.min_score`` set by hand overrides the table.

    from chains.relevance import relevance, threshold
    score = relevance(store, "What is a VAE?", sources, "fusion")        # sources from retrieve()
    abstain = score < threshold(store, "fusion")
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from chains.grounding import STEM, STOPWORDS
from llmapp.core.errors import LLMAppError

log = logging.getLogger(__name__)

# Thresholds per embedding model and signal, from `python -m eval.calibrate --max-false 0` on the dev
# split: the point of the ROC with the most correct abstentions and no false one. Abstaining on a
# question the store answers costs a user more than answering one it does not (the reply then says
# what the sources hold, with citations); the 5%-false point of the dev ROC (fusion 0.1382) abstained
# on 12% of the answerable test questions.
CALIBRATION: dict[str, dict[str, float]] = {
    # dev, 60 answerable + 15 unanswerable: AUC cosine 0.809, coverage 0.927, fusion 0.958 (stems without
    # plurals, framing words dropped, unseen words weighted 3x; before: coverage 0.875, fusion 0.957)
    "minilm-l6": {"cosine": 0.285, "coverage": 0.2003, "fusion": 0.0761},
}
# Coverage does not involve the embedding model, so its threshold serves any model without an entry.
ANY_MODEL = {"coverage": 0.2003}
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
# Words that frame a question about documents rather than say what it asks ("according to the notes",
# "what kind of", "listed in the table"). In a small store they occur in few chunks and get a high IDF,
# so an answerable question that says "the notes" looked like a near miss.
FRAMING = frozenset("""note notes noted according listed list lists kind kinds type types sort about describe
described describes say says said mention mentioned mentions give gives given define defined defines table
document documents doc docs text texts page pages typically usually generally explain explained explains tell
tells way ways example examples name named names called call exactly specific particular main""".split())
UNSEEN_WEIGHT = 3.0  # a question word no chunk of the store contains counts 3x the rarest seen one: "Wasserstein"
# or "Docker" absent from every document says more than a rare word missing from the retrieved chunks


def _stem(word: str) -> str:
    """``word`` without a possessive or plural ending, cut to :data:`STEM` letters: "GANs" ~ "GAN"."""
    word = re.sub(r"'s?$", "", word)
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        word = word[:-1]
    return word[:STEM]


_FRAMING_STEMS = frozenset(_stem(w) for w in FRAMING)


def _terms(text: str) -> list[str]:
    stems = (_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS)
    return [t for t in stems if t not in _FRAMING_STEMS]


def idf(store: Any) -> tuple[dict[str, float], float]:
    """Per-term inverse document frequency over the store's chunks (built once per loaded store).

    Returns:
        ``(table, unseen)``: term -> IDF, and the weight of a term no chunk contains (the highest IDF
        times :data:`UNSEEN_WEIGHT`).
    """
    cached = store.cache.get("idf")
    if cached is None:
        from chains.stores import all_docs  # every chunk, from a FAISS or a Postgres store

        df: dict[str, int] = {}
        docs = all_docs(store)
        for doc in docs:
            for term in set(_terms(doc["text"])):
                df[term] = df.get(term, 0) + 1
        n = max(len(docs), 1)
        cached = ({t: math.log(1 + n / c) for t, c in df.items()}, UNSEEN_WEIGHT * math.log(1 + n))
        store.cache["idf"] = cached
    return cached


def coverage(store: Any, question: str, texts: Sequence[str]) -> float:
    """IDF-weighted share of the question's content words that occur in ``texts`` (0 to 1)."""
    table, unseen = idf(store)
    words = _terms(question)
    if not words:
        return 0.0
    have = {t for text in texts for t in _terms(text)}
    total = sum(table.get(w, unseen) for w in words)
    return sum(table.get(w, unseen) for w in words if w in have) / total


SIGNALS: dict[str, Callable[[Any, str, Sequence[Any]], float]] = {
    # sources: retrieved chunks with .text and .score (the cosine of chunk and question)
    "cosine": lambda store, question, sources: max(s.score for s in sources),
    "coverage": lambda store, question, sources: coverage(store, question, [s.text for s in sources]),
    "fusion": lambda store, question, sources: max(max(s.score, 0.0) * coverage(store, question, [s.text])
                                                   for s in sources),
}


def relevance(store: Any, question: str, sources: Sequence[Any], signal: str) -> float:
    """The value of ``signal`` for ``question`` against the retrieved ``sources`` (0 when there are none).

    Raises:
        LLMAppError: an unknown signal (listing the valid ones).
    """
    fn = SIGNALS.get(signal)
    if fn is None:
        raise LLMAppError(f"unknown abstention signal {signal!r}; use one of: {', '.join(SIGNALS)}, none")
    return float(fn(store, question, sources)) if sources else 0.0


def threshold(store: Any, signal: str, min_score: float | None = None) -> tuple[str, float]:
    """The signal to use and its threshold for this store's embedding model.

    Args:
        store: the loaded store (its manifest names the embedding model).
        signal: the configured signal.
        min_score: a threshold set by hand; it wins over the calibration table.

    Returns:
        ``(signal, threshold)``: ``signal`` may fall back to ``coverage`` for an uncalibrated model.
    """
    if min_score is not None:
        return signal, float(min_score)
    model = str(store.manifest.get("embedding_model", ""))
    table = CALIBRATION.get(model) or CALIBRATION.get(model.rsplit("/", 1)[-1].lower()) or {}
    if signal in table:
        return signal, table[signal]
    if signal in ANY_MODEL:
        return signal, ANY_MODEL[signal]
    log.info("no %s threshold calibrated for embeddings %r; abstaining on coverage instead", signal, model)
    return "coverage", ANY_MODEL["coverage"]
