"""Evaluation metrics: answer overlap, ranking quality, summary overlap and support, text diversity and likelihood.

Every function is pure (no models), takes plain strings / lists and returns a float or a dict of
floats, and is checked against hand-worked values and the libraries' reference examples in
``tests/test_metrics.py``. ``METRICS`` maps each name to its function.

    from eval.metrics import METRICS, token_f1, ndcg_at_k
    token_f1("the cat sat", ["a cat sat down"])        # 0.8
    ndcg_at_k(["d3", "d1"], {"d1": 1}, k=10)           # 0.6309...
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from llmapp.core.errors import LLMAppError

# ------------------------------------------------------------------------------------------ answers (SQuAD)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def _f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    if not pred_tokens or not ref_tokens:  # SQuAD: F1 is 1 when both are empty, else 0
        return float(pred_tokens == ref_tokens)
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1: harmonic mean of token precision and recall, the best over the references."""
    pred = normalize_answer(prediction).split()
    return max((_f1(pred, normalize_answer(r).split()) for r in references), default=0.0)


def keyword_accuracy(prediction: str, keywords: Sequence[str]) -> float:
    """Fraction of ``keywords`` that occur in the prediction (case-insensitive substring match)."""
    if not keywords:
        return 0.0
    text = prediction.lower()
    return sum(k.lower() in text for k in keywords) / len(keywords)


# ------------------------------------------------------------------------------------------ ranking

def hit_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """1.0 if any of the first ``k`` ranked ids is relevant."""
    rel = set(relevant)
    return float(any(r in rel for r in ranked[:k]))


def recall_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the relevant ids found in the first ``k`` (distinct) ranked ids."""
    rel = set(relevant)
    if not rel:
        return 0.0
    return len(rel & set(ranked[:k])) / len(rel)


def mrr(ranked: Sequence[str], relevant: Iterable[str], k: int | None = None) -> float:
    """Reciprocal rank of the first relevant id (within the first ``k``), 0.0 if none."""
    rel = set(relevant)
    for rank, doc in enumerate(ranked[:k] if k else ranked, start=1):
        if doc in rel:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevance: dict[str, float], k: int = 10) -> float:
    """Normalised discounted cumulative gain with linear gains, as trec_eval / pytrec_eval (and BEIR).

    Args:
        ranked: ids, best first.
        relevance: id -> graded relevance (> 0 is relevant).
        k: the cut-off.
    """
    def dcg(gains: Iterable[float]) -> float:
        return sum(g / math.log2(i + 2) for i, g in enumerate(gains))

    ideal = dcg(sorted((g for g in relevance.values() if g > 0), reverse=True)[:k])
    return dcg(relevance.get(d, 0.0) for d in ranked[:k]) / ideal if ideal > 0 else 0.0


# ------------------------------------------------------------------------------------------ summaries

@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures (Google's ``rouge-score``, Porter stemming), each in [0, 1]."""
    scores = _rouge_scorer().score(reference, prediction)  # the library takes (target, prediction)
    return {name: s.fmeasure for name, s in scores.items()}


def faithfulness(supported: Sequence[bool]) -> float | None:
    """Share of a summary's sentences that the source supports; None for an empty summary.

    Args:
        supported: one judgement per summary sentence (``chains.grounding.Grounding.check``).
    """
    return sum(map(bool, supported)) / len(supported) if supported else None


def coverage(scores: Sequence[float], threshold: float) -> float | None:
    """Share of the key sentences the summary covers: those whose best support score in the summary
    reaches ``threshold``; None when there are no key sentences."""
    return sum(s >= threshold for s in scores) / len(scores) if scores else None


def agreement(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    """Share of labelled examples where ``score >= threshold`` agrees with the label (accuracy)."""
    if not labels:
        raise LLMAppError("agreement needs labelled examples")
    return sum((s >= threshold) == bool(y) for s, y in zip(scores, labels, strict=True)) / len(labels)


def best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """The threshold with the highest :func:`agreement` on ``labels`` (ties: the middle of the best run).

    Returns:
        ``(threshold, agreement)``; candidate thresholds lie halfway between consecutive distinct scores.
    """
    values = sorted(set(scores))
    cands = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + [values[-1] + 1e-6]
    accs = [agreement(scores, labels, t) for t in cands]
    top = max(accs)
    best = [t for t, a in zip(cands, accs, strict=True) if a == top]
    return best[len(best) // 2], top


# ------------------------------------------------------------------------------------------ diversity

def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens: the unit for distinct-n and repetition."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams across ``texts`` (Li et al., 2016); 0.0 when there are none."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a text's n-grams that repeat an earlier one: 0 = no loops, near 1 = one phrase looped."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


# ------------------------------------------------------------------------------------------ likelihood

def perplexity(nll_nats: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token); ``nll_nats`` is the summed NLL in nats."""
    if n_tokens <= 0:
        raise LLMAppError("perplexity needs at least one scored token; give a longer text")
    return math.exp(nll_nats / n_tokens)


def bits_per_char(nll_nats: float, n_chars: int) -> float:
    """Summed NLL (nats) over a text as bits per character: comparable across tokenizers."""
    if n_chars <= 0:
        raise LLMAppError("bits per character needs a non-empty text")
    return nll_nats / (n_chars * math.log(2))


METRICS: dict[str, Callable[..., Any]] = {
    "exact_match": exact_match,
    "token_f1": token_f1,
    "keyword_accuracy": keyword_accuracy,
    "hit@k": hit_at_k,
    "recall@k": recall_at_k,
    "mrr": mrr,
    "ndcg@k": ndcg_at_k,
    "rouge": rouge,
    "faithfulness": faithfulness,
    "coverage": coverage,
    "agreement": agreement,
    "distinct_n": distinct_n,
    "repetition_rate": repetition_rate,
    "perplexity": perplexity,
    "bits_per_char": bits_per_char,
}


def get_metric(name: str) -> Callable[..., Any]:
    """The metric called ``name``; an unknown name lists the valid ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise LLMAppError(f"unknown metric {name!r}; use one of: {', '.join(METRICS)}") from None


def mean(values: Iterable[float]) -> float | None:
    """The mean, or None for no values (shown as n/a rather than a misleading 0)."""
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
