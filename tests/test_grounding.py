"""chains.grounding and chains.guard: support scores, foreign names/numbers/links, and the streaming guard."""

from __future__ import annotations

import json

import pytest

from chains.grounding import (
    SUPPORT_THRESHOLD,
    Grounding,
    Vocabulary,
    foreign_tokens,
    join_sentences,
    passages,
    split_sentences,
    support,
)
from chains.guard import SentenceGuard
from eval.metrics import agreement, best_threshold, coverage, faithfulness
from llmapp.core.errors import LLMAppError

SOURCE = ("The Marlow Street library reopened on Monday, 14 October, eleven months after the flood. "
          "The branch manager, Priya Nandakumar, said about 9000 books were lost. "
          "Insurance covered most of the cost of the repairs.")


def test_foreign_tokens_finds_invented_names_numbers_and_links():
    assert foreign_tokens("The branch manager, Ruth Osei, said about 9,000 books were lost.", SOURCE) == ["Ruth", "Osei"]
    assert foreign_tokens("The library was closed for fourteen months.", SOURCE) == ["fourteen"]
    assert foreign_tokens("It reopened on 15 October.", SOURCE) == ["15"]
    assert foreign_tokens("See https://marlow.example/library for details.", SOURCE) == ["https://marlow.example/library"]
    assert foreign_tokens("Link 1: the flood report.", SOURCE) == ["1"]
    # what the source says, however it is written, is not foreign
    assert foreign_tokens("Overall, Priya Nandakumar's branch lost about 9,000 books.", SOURCE) == []
    assert foreign_tokens("Marlow Street's library reopened eleven months after the flood.", SOURCE) == []
    assert foreign_tokens("However, insurance covered most repairs.", SOURCE) == []


def test_vocabulary_is_reusable_and_case_insensitive():
    vocab = Vocabulary(SOURCE)
    assert vocab.has_word("MARLOW") and vocab.has_word("Nandakumar's") and not vocab.has_word("Osei")
    assert foreign_tokens("GPT wrote it.", vocab) == ["GPT"]  # an acronym is a name even first in a sentence


def test_split_sentences_in_prose_and_in_generated_lists():
    assert split_sentences("One here. Two there!\n\nThree? Yes.") == ["One here.", "Two there!", "Three?", "Yes."]
    assert split_sentences("A line\ncontinues here.") == ["A line continues here."]  # verse stays together
    listed = "Summary:\n- GANs have two networks.\n- VAEs learn a latent space.\n1. Transformers attend."
    assert split_sentences(listed, lines=True) == ["Summary:", "GANs have two networks.", "VAEs learn a latent space.",
                                                   "Transformers attend."]
    assert passages(["a.", "b.", "c."], (1, 2)) == ["a.", "b.", "c.", "a. b.", "b. c."]
    verse = ["Lend thy hand,", "And pluck my magic garment from me.", "So: lie there, my art."]
    joined = join_sentences(verse)
    assert joined == "Lend thy hand,\nAnd pluck my magic garment from me. So: lie there, my art."
    assert split_sentences(joined, lines=True) == verse  # never merged into one sentence
    assert join_sentences(["Next."], after="Before,") == "\nNext."


def test_support_finds_the_passage_with_the_real_embeddings(embeddings):
    scored = support(["Insurance paid for most of the repair work.", "Penguins live in Antarctica."],
                     split_sentences(SOURCE), embeddings)
    (good, where), (bad, _) = scored
    assert where == 2 and good > SUPPORT_THRESHOLD > bad
    assert support(["anything"], [], embeddings) == [(0.0, -1)]


def test_grounding_check_combines_support_and_foreign_tokens(embeddings):
    g = Grounding(SOURCE, embeddings)
    ok, renamed, offtopic = g.check(["The library reopened in October, eleven months after a flood.",
                                     "The branch manager, Ruth Osei, said about 9000 books were lost.",
                                     "The city council plans a new swimming pool."])
    assert ok.supported and ok.foreign == []
    assert not renamed.supported and renamed.foreign == ["Ruth", "Osei"] and renamed.score > SUPPORT_THRESHOLD
    assert not offtopic.supported and offtopic.score < SUPPORT_THRESHOLD
    assert g.sentence_vectors().shape == (3, 384)


def test_guard_drops_invented_name_number_and_link_while_streaming():
    guard = SentenceGuard(Grounding(SOURCE, embeddings=None))  # no embeddings: names, numbers, links only
    reply = ("The library reopened on Monday, 14 October. Ruth Osei runs the branch. About 12,000 books were lost. "
             "More at https://flood.example/report. Insurance covered most of the repairs.")
    out = [guard.feed(reply[i:i + 7]) for i in range(0, len(reply), 7)]
    out.append(guard.flush())
    text = "".join(out)
    assert text == "The library reopened on Monday, 14 October. Insurance covered most of the repairs."
    assert [why for _, why in guard.dropped] == ["Ruth, Osei", "12,000", "https://flood.example/report"]
    assert out[0] == ""  # nothing leaves before its sentence is complete


def test_guard_flags_repeats_leadins_and_cut_off_sentences():
    flag = SentenceGuard(Grounding(SOURCE, None), mode="flag")
    text = flag.feed("Here is a summary:\nRuth Osei said so. ") + flag.flush()
    assert text == "Ruth Osei said so. [unsupported: Ruth, Osei]"
    drop = SentenceGuard(Grounding(SOURCE, None))
    text = drop.feed("Insurance covered most repairs. Insurance covered most repairs. The flood was in") + \
        drop.flush(truncated=True)
    assert text == "Insurance covered most repairs."
    assert [why for _, why in drop.dropped] == ["repeated", "cut off"]
    with pytest.raises(LLMAppError, match="use one of: drop, flag, off"):
        SentenceGuard(Grounding(SOURCE, None), mode="strict")


def test_summary_metrics_and_threshold_choice():
    assert faithfulness([True, True, False, True]) == 0.75 and faithfulness([]) is None
    assert coverage([0.9, 0.4, 0.7], 0.6) == pytest.approx(2 / 3) and coverage([], 0.5) is None
    scores, labels = [0.2, 0.4, 0.6, 0.8], [False, False, True, True]
    assert agreement(scores, labels, 0.5) == 1.0 and agreement(scores, labels, 0.7) == 0.75
    threshold, acc = best_threshold(scores, labels)
    assert acc == 1.0 and 0.4 < threshold < 0.6


def test_faithfulness_judge_agrees_with_hand_labels_on_paragraphs(embeddings):
    """The metric's criterion against the labelled sentences of the short documents (dev and test)."""
    from eval.faithfulness import criterion_scores, score_labelled
    from eval.tasks.base import DATA

    docs = {json.loads(ln)["id"]: json.loads(ln) for ln in (DATA / "summarization.jsonl").open()}
    labels = [json.loads(ln) for ln in (DATA / "summarization-faithfulness.jsonl").open()]
    labels = [r for r in labels if docs[r["doc_id"]]["bucket"] == "paragraph"]
    scored = score_labelled(labels, {k: d["document"] for k, d in docs.items()}, embeddings)
    ys = [r["supported"] for r in scored]
    combined = agreement(criterion_scores(scored, "embedding + foreign"), ys, SUPPORT_THRESHOLD)
    assert len(scored) >= 30 and combined >= 0.7
    assert combined > agreement(criterion_scores(scored, "embedding"), ys, SUPPORT_THRESHOLD)
