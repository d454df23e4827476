"""The extractive selection of chains.extractive: centrality, duplicates, budgets and the position prior."""

import numpy as np

from chains.extractive import select_sentences


def _unit(rows):
    v = np.asarray(rows, dtype="float32")
    return v / np.linalg.norm(v, axis=1, keepdims=True)


SENTS = ["An opening sentence that states the main point here.", "A filler sentence about something else entirely now.",
         "Another sentence that restates the main point at the end."]
# Sentence 2 is a little closer to the centroid than sentence 0; sentence 1 is off topic.
VECS = _unit([[1.0, 0.35], [0.2, 1.0], [1.0, 0.45]])


def test_centroid_only_picks_the_most_central_sentence():
    assert select_sentences(SENTS, max_sentences=1, vectors=VECS) == [2]


def test_position_prior_prefers_the_early_sentence():
    assert select_sentences(SENTS, max_sentences=1, vectors=VECS, lead=0.2) == [0]


def test_picks_come_back_in_document_order_within_the_budget():
    picks = select_sentences(SENTS, max_sentences=3, vectors=VECS, lead=0.2, max_tokens=20)
    assert picks == sorted(picks) and sum(len(SENTS[i].split()) for i in picks) <= 20
    assert len(picks) == 2
