"""chains.relevance: the coverage signal's words (stems, framing words, words the store never has)."""

from __future__ import annotations

from types import SimpleNamespace

from chains.relevance import _terms, coverage


def _store(*texts):
    return SimpleNamespace(cache={}, docs=[{"text": t} for t in texts])


def test_plural_and_possessive_forms_share_a_stem():
    assert _terms("GANs") == _terms("GAN") == _terms("GAN's")
    assert _terms("discriminators") == _terms("discriminator")
    assert _terms("class") != _terms("cla")  # "ss" is not a plural ending


def test_framing_words_do_not_count_against_coverage():
    store = _store("GANs pit a generator against a discriminator.", "VAEs learn a Gaussian.", "Markov chains.")
    chunk = ["A GAN has a generator and a discriminator."]
    assert coverage(store, "What does a GAN have?", chunk) == 1.0
    assert coverage(store, "According to the notes, what does a GAN have?", chunk) == 1.0


def test_a_word_no_chunk_has_weighs_more_than_one_merely_not_retrieved():
    store = _store("GANs pit a generator against a discriminator.", "VAEs learn a Gaussian.", "Markov chains.")
    chunk = ["A GAN has a generator and a discriminator."]
    not_retrieved = coverage(store, "How does a GAN generator relate to Markov chains?", chunk)
    unseen = coverage(store, "How does a GAN generator relate to Wasserstein losses?", chunk)
    assert unseen < not_retrieved < 1.0
