"""chains.citations.attributor: which retrieved source an answer sentence is cited by, if any."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chains.citations import CitationFilter, attributor

QUESTION = "What does the Markov property state?"
SOURCES = [
    SimpleNamespace(n=1, text="Markov chains are used in text generation. The Markov property is a classic topic."),
    SimpleNamespace(n=2, text="The Markov property states that the next state depends only on the current state."),
    SimpleNamespace(n=3, text="The next state of a Markov chain depends only on the current state, not on history."),
]


@pytest.fixture(scope="module")
def store(embeddings):
    return SimpleNamespace(embeddings=embeddings)


def test_a_sentence_that_only_restates_the_question_is_not_cited(store):
    cite = attributor(store, SOURCES, 0.3, QUESTION, prefer=2, min_new=0.8)
    assert cite("So the Markov property states this.") is None  # only the question's own words
    assert attributor(store, SOURCES, 0.3)("So the Markov property states this.") is not None  # the old rule cites


def test_the_quotes_source_is_preferred_when_it_supports_the_sentence(store):
    sentence = "Only the current state decides which state comes next."
    assert attributor(store, SOURCES, 0.3, QUESTION, prefer=3, min_new=0.8)(sentence) == 3
    assert attributor(store, SOURCES, 0.3, QUESTION, prefer=2, min_new=0.8)(sentence) == 2


def test_another_source_is_cited_only_when_it_holds_the_sentences_own_words(store):
    cite = attributor(store, SOURCES, 0.3, QUESTION, prefer=None, min_new=0.8)
    assert cite("The Markov property is used in text generation.") == 1
    assert cite("Markov chains are used by weather forecasters in Peru.") is None  # no source holds those words


def test_a_copied_sentence_is_cited_by_the_source_it_came_from(store):
    cite = attributor(store, SOURCES, 0.3, QUESTION, prefer=2, min_new=0.8)
    assert cite("Markov chains are used in text generation.") == 1


def test_recite_keeps_the_models_number_only_where_that_source_supports_the_sentence(store):
    cite = attributor(store, SOURCES, 0.3, QUESTION, prefer=None, min_new=0.8)
    f = CitationFilter({1, 2, 3}, cite, recite=True)
    out = f.feed("It is used in text generation of Markov chains [1]. It is used in text generation [3]. ") + f.flush()
    assert out.startswith("It is used in text generation of Markov chains [1].")
    assert out.rstrip().endswith("It is used in text generation [1].")  # [3] does not hold those words; [1] does


def test_the_quote_prefers_the_sentence_with_the_questions_rare_word():
    from chains.citations import best_quote, term_weights

    common = [{"text": f"The summarization task has option {i}."} for i in range(8)]
    store = SimpleNamespace(cache={}, docs=[*common, {"text": "Its baselines are lead-3 and random-3."}])
    sources = [SimpleNamespace(n=1, text="The summarization task reads a summarization option from the task file."),
               SimpleNamespace(n=2, text="The summarization baselines are lead-3 and random-3, scored the same way.")]
    question = "Which baselines does the summarization task use?"
    assert best_quote(question, sources)[0] == 1  # counted once each: "summarization" and "task" win
    assert best_quote(question, sources, term_weights(store))[0] == 2  # "baselines" is the rare word


def test_with_embeddings_the_quote_breaks_a_word_tie_by_meaning(embeddings):
    from chains.citations import best_quote

    sources = [SimpleNamespace(n=1, text="Spiders and people are listed in chapter two of this guide."),
               SimpleNamespace(n=2, text="People are frightened of spiders since some of them bite.")]
    question = "Why are people afraid of spiders?"
    assert best_quote(question, sources)[0] == 1  # the same words: the higher-ranked source
    assert best_quote(question, sources, embeddings=embeddings)[0] == 2


def test_the_quote_passes_over_a_title_that_only_repeats_the_question():
    from chains.citations import best_quote, is_title

    text = "Booking the Net Loft in the evening\n\nThe caretaker charges 25 dollars per hour after closing."
    sources = [SimpleNamespace(n=1, text=text)]
    question = "What does booking the Net Loft in the evening cost?"
    assert is_title("Booking the Net Loft in the evening", text)  # a paragraph of its own, no full stop
    assert best_quote(question, sources)[1].startswith("The caretaker charges 25 dollars")
    title_only = [SimpleNamespace(n=1, text="# Booking the Net Loft in the evening")]
    assert best_quote(question, title_only)[1] == "Booking the Net Loft in the evening"  # nothing else: kept


def test_a_title_is_a_short_paragraph_that_does_not_end_like_a_sentence():
    from chains.citations import is_title

    text = "Hire charges per hour:\n\n| Room | Price |\n\nEvening bookings and deposits\nare explained below"
    assert not is_title("Hire charges per hour:", text)  # it introduces what follows
    assert not is_title("| Room | Price |", text)  # a table row
    assert not is_title("Evening bookings and deposits", text)  # a line of a longer paragraph
    assert is_title("Evening bookings and deposits are explained below", text)
    assert not is_title("The Net Loft is free for members", "The Net Loft is free for members and groups.")


def test_the_grid_scores_whether_the_quoted_sources_chunk_holds_every_keyword():
    from eval.retrieval_grid import quote_scores

    sources = [SimpleNamespace(n=1, text="The fee is 25 dollars."),
               SimpleNamespace(n=2, text="A deposit of 100 dollars; the fee is 25 dollars an hour.")]
    keywords = ["25 dollars", "100 dollars"]
    assert quote_scores(keywords, sources, (2, "The fee is 25 dollars an hour.")) == (0.5, 1.0)
    assert quote_scores(keywords, sources, (1, "The fee is 25 dollars.")) == (0.5, 0.0)
    assert quote_scores(keywords, sources, None) == (0.0, 0.0)
