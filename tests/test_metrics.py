"""Every metric in eval.metrics against known values: worked by hand, or the libraries' own examples."""

from __future__ import annotations

import math

import pytest

from eval import metrics as M
from eval.baselines import CharNGram, lead, random_sentences
from llmapp.core.errors import LLMAppError


def test_squad_normalisation_and_exact_match():
    assert M.normalize_answer("The  Cat, sat!") == "cat sat"
    assert M.normalize_answer("An apple a day") == "apple day"
    assert M.exact_match("the Generator and a discriminator.", ["A generator and a discriminator"]) == 1.0
    assert M.exact_match("generator", ["A generator and a discriminator"]) == 0.0
    assert M.exact_match("1976", ["1975", "1976"]) == 1.0  # best over references


def test_token_f1_by_hand():
    # pred "cat sat" vs ref "cat sat down": P = 2/2, R = 2/3 -> F1 = 2*1*(2/3)/(1+2/3) = 0.8
    assert M.token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    # repeated tokens count once per match: pred "a a b" -> "b"? articles go, so "b" vs "b c": P=1, R=1/2
    assert M.token_f1("a b", ["b c"]) == pytest.approx(2 / 3)
    assert M.token_f1("xyz", ["cat"]) == 0.0
    assert M.token_f1("cat", ["dog", "cat"]) == 1.0
    assert M.token_f1("", [""]) == 1.0  # SQuAD: both empty counts as a match


def test_keyword_accuracy():
    assert M.keyword_accuracy("GANs use a Generator.", ["generator", "discriminator"]) == 0.5
    assert M.keyword_accuracy("anything", []) == 0.0


def test_ranking_metrics_by_hand():
    ranked = ["d3", "d1", "d7", "d2"]
    assert M.hit_at_k(ranked, {"d1"}, 1) == 0.0
    assert M.hit_at_k(ranked, {"d1"}, 2) == 1.0
    assert M.recall_at_k(ranked, {"d1", "d2", "d9"}, 2) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranked, {"d1", "d2", "d9"}, 4) == pytest.approx(2 / 3)
    assert M.mrr(ranked, {"d7"}) == pytest.approx(1 / 3)
    assert M.mrr(ranked, {"d7"}, k=2) == 0.0
    assert M.mrr(ranked, {"zz"}) == 0.0
    # one relevant doc at rank 2: DCG = 1/log2(3), ideal = 1
    assert M.ndcg_at_k(["d3", "d1"], {"d1": 1}, 10) == pytest.approx(1 / math.log2(3))


def test_ndcg_matches_the_wikipedia_worked_example():
    # en.wikipedia.org/wiki/Discounted_cumulative_gain: six retrieved docs of relevance 3,2,3,0,1,2
    # give DCG6 = 6.861; two more relevant docs (3 and 2) exist but were not retrieved, so the ideal
    # ranking is 3,3,3,2,2,2 with IDCG6 = 8.740 and nDCG6 = 0.785.
    rel = {"d1": 3, "d2": 2, "d3": 3, "d4": 0, "d5": 1, "d6": 2, "d7": 3, "d8": 2}
    ranked = ["d1", "d2", "d3", "d4", "d5", "d6"]
    assert M.ndcg_at_k(ranked, rel, 6) == pytest.approx(6.861 / 8.740, abs=1e-3)
    assert M.ndcg_at_k(ranked, rel, 6) == pytest.approx(0.785, abs=1e-3)
    # the same six judgements alone: IDCG (3,3,2,2,1,0) = 7.141 by hand
    six = {k: v for k, v in rel.items() if k in ranked}
    assert M.ndcg_at_k(ranked, six, 6) == pytest.approx(6.861 / 7.141, abs=1e-3)
    assert M.ndcg_at_k(["d1", "d3", "d2", "d6", "d5", "d4"], six, 6) == pytest.approx(1.0)


def test_rouge_matches_the_rouge_score_readme():
    # github.com/google-research/google-research/tree/master/rouge: score(target, prediction)
    target, prediction = "The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."
    scores = M.rouge(prediction, target)
    assert scores["rouge1"] == pytest.approx(0.7058823529411765)  # P = 0.75, R = 0.667
    assert scores["rougeL"] == pytest.approx(0.5882352941176471)  # P = 0.625, R = 0.556
    # ROUGE-2 by hand: bigrams of the prediction that are in the target: "the quick", "quick brown" -> 2 of 7 / 2 of 8
    assert scores["rouge2"] == pytest.approx(2 * (2 / 7) * (2 / 8) / (2 / 7 + 2 / 8))
    assert M.rouge("identical text here", "identical text here")["rougeL"] == pytest.approx(1.0)


def test_distinct_n_and_repetition_by_hand():
    assert M.distinct_n(["a b a"], 1) == pytest.approx(2 / 3)
    assert M.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert M.distinct_n(["a b", "a c"], 1) == pytest.approx(3 / 4)  # pooled across texts
    assert M.distinct_n([], 2) == 0.0
    assert M.repetition_rate("a b c a b c", 3) == pytest.approx(0.25)  # abc bca cab abc: one repeat in four
    assert M.repetition_rate("one two three four", 3) == 0.0
    assert M.repetition_rate("hi", 3) == 0.0


def test_perplexity_and_bits_per_char():
    assert M.perplexity(4 * math.log(2), 2) == pytest.approx(4.0)  # 2 bits per token -> perplexity 4
    assert M.bits_per_char(8 * math.log(2), 4) == pytest.approx(2.0)
    with pytest.raises(LLMAppError):
        M.perplexity(1.0, 0)
    with pytest.raises(LLMAppError):
        M.bits_per_char(1.0, 0)


def test_registry_lists_valid_names():
    assert M.get_metric("token_f1") is M.token_f1
    with pytest.raises(LLMAppError, match="use one of: exact_match, token_f1"):
        M.get_metric("bleu")


def test_char_ngram_is_a_distribution_and_learns():
    text = "abracadabra " * 20
    lm = CharNGram(order=3).fit(text, vocab=set("abcdrz "))
    for history in ("", "a", "ab", "zz"):
        assert sum(lm.prob(history, ch) for ch in set("abcdrz ")) == pytest.approx(1.0)
    assert lm.prob("ab", "r") > 0.9  # "ab" is always followed by "r"
    uniform_bits = len(text) * math.log2(7)
    assert lm.nll(text) / math.log(2) < uniform_bits / 5


def test_lead_and_random_sentences():
    sents = ["One.", "Two.", "Three.", "Four."]
    assert lead(sents, 3) == "One. Two. Three."
    picked = random_sentences(sents, 2, seed="x")
    assert picked == random_sentences(sents, 2, seed="x")  # seeded
    assert len(picked.split()) == 2
