"""chains.rag: retrieval modes, abstention, citations only of retrieved sources, streaming shapes."""

from __future__ import annotations

import re

import pytest

from chains.index import build_index
from chains.rag import ABSTAIN, CitationFilter, Source, rag_chain, retrieve
from chains.store import Store
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError, PromptTooLong
from llmapp.corpora import GENAI_NOTES as DEMO_DATA

GAN = "002_689f4fe1e3be862a.txt"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from llmapp import load_embeddings

    folder = tmp_path_factory.mktemp("rag") / "store"
    build_index([DEMO_DATA], folder, load_embeddings())
    return Store.load(folder)


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_every_retrieval_mode_finds_the_right_note(store, mode):
    cfg = RAGConfig(retrieval=mode, k=3)
    sources = retrieve(store, "What are Hidden Markov Models and Markov Chain Monte Carlo?", cfg)
    assert [s.n for s in sources] == [1, 2, 3]
    assert sources[0].source.endswith(GAN) and "Markov" in sources[0].text
    assert all(isinstance(s, Source) and -1 <= s.score <= 1 for s in sources)
    assert sources[0].score == max(s.score for s in sources) or mode != "vector"
    assert all(len(s.snippet) <= 125 and "\n" not in s.snippet for s in sources)


def test_mmr_trades_redundancy_for_diversity(store):
    q = "How do GANs work?"
    plain = retrieve(store, q, RAGConfig(retrieval="vector", k=4))
    diverse = retrieve(store, q, RAGConfig(retrieval="vector", k=4, mmr=True, mmr_lambda=0.3))
    assert len(diverse) == 4 and diverse[0].text == plain[0].text  # the best chunk still comes first
    assert len({s.source for s in diverse}) >= len({s.source for s in plain})
    assert {s.text for s in diverse} != {s.text for s in plain}


def test_bad_retrieval_settings_are_named(store):
    with pytest.raises(LLMAppError, match="use one of: vector, bm25, hybrid"):
        retrieve(store, "GANs", RAGConfig(retrieval="magic"))
    with pytest.raises(LLMAppError, match="empty question"):
        retrieve(store, "  ", RAGConfig())
    assert retrieve(store, "the of and", RAGConfig(retrieval="bm25")) == []  # only stopwords: nothing to match


def test_irrelevant_question_abstains_instead_of_answering(store, chat_model):
    question = "What is the boiling point of mercury in Kelvin?"
    assert retrieve(store, question) == []
    assert rag_chain(store, chat_model).invoke(question) == ABSTAIN
    out = rag_chain(store, chat_model, return_sources=True).invoke({"question": question})
    assert out == {"question": question, "answer": ABSTAIN, "sources": [], "abstained": True}


def test_answer_cites_only_retrieved_sources_and_lists_them(store):
    from llmapp import load_chat_model

    chat = load_chat_model(max_tokens=40)
    text = rag_chain(store, chat, RAGConfig(k=3)).invoke("What are the two neural networks in a GAN?")
    answer, _, sources = text.partition("\n\nSources:\n")
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert cited and cited <= {1, 2, 3}  # the model cites (or attribution does), and only what was retrieved
    lines = sources.splitlines()
    assert [line[:3] for line in lines] == ["[1]", "[2]", "[3]"] and GAN in sources and " — " in lines[0]


def test_return_sources_stream_yields_sources_first_then_answer_pieces(store):
    from llmapp import load_chat_model

    chain = rag_chain(store, load_chat_model(max_tokens=12), RAGConfig(k=2), return_sources=True)
    chunks = list(chain.stream("What is a variational autoencoder?"))
    assert set(chunks[0]) == {"sources", "abstained"} and chunks[0]["abstained"] is False
    assert [s["n"] for s in chunks[0]["sources"]] == [1, 2]
    assert {"n", "source", "snippet", "score", "start", "end"} <= set(chunks[0]["sources"][0])
    assert len(chunks) >= 2 and all(set(c) == {"answer"} for c in chunks[1:])  # a sentence per chunk (checked)


def test_closing_the_stream_early_stops_generation(store):
    from langchain_core.callbacks import BaseCallbackHandler

    from llmapp import load_chat_model

    class Tokens(BaseCallbackHandler):
        n = 0

        def on_llm_new_token(self, token, **kwargs):
            self.n += 1

    tokens = Tokens()
    chain = rag_chain(store, load_chat_model(max_tokens=200), RAGConfig(k=1))
    stream = chain.stream("How are GANs trained?", {"callbacks": [tokens]})
    first = next(stream)  # the first checked sentence
    before = tokens.n
    stream.close()  # joins the model's thread: no token comes after this
    assert isinstance(first, str) and first
    assert tokens.n - before < 20, f"{tokens.n - before} tokens generated after an early close"


def test_over_long_question_is_a_clear_error(store, chat_model):
    question = "Tell me about GANs and their generator networks. " * 900  # ~9k tokens: past the 8k window
    with pytest.raises(PromptTooLong, match="question is too long"):
        rag_chain(store, chat_model).invoke(question)


def test_citation_filter_strips_invented_numbers_across_token_boundaries():
    f = CitationFilter({1, 2})
    pieces = ["GANs pit two nets [", "1] against each other [7", "]. See [2, 9] and [Source 2]."]
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    assert out == "GANs pit two nets [1] against each other. See [2] and [2]."
    assert (f.invalid, f.cited) == ([7, 9], [1, 2])


def test_citation_filter_attributes_uncited_sentences():
    f = CitationFilter({1, 2}, attribute=lambda sentence: 2 if "decoder" in sentence else None)
    out = "".join(f.feed(p) for p in ["A VAE has an encoder and a decoder. It", " samples [1]. Short. ", "No match here at all"])
    out += f.flush()
    assert out == "A VAE has an encoder and a decoder [2]. It samples [1]. Short. No match here at all"
    assert f.added == [2]


# ---------------------------------------------------------------------------------------------- defaults, abstention, grounding

def test_defaults_are_the_tuned_ones_and_every_surface_reads_them():
    from prompts import load_prompt

    cfg = RAGConfig()
    assert (cfg.context, cfg.chunker, cfg.abstain, cfg.min_score, cfg.ground, cfg.quote, cfg.max_tokens) == (
        "numbered", "markdown", "fusion", None, True, "always", 96)
    messages = load_prompt("rag_answer").format_messages(question="q", context="[1] c")
    assert len(messages) == 2 and "square brackets" in messages[0].content  # zero-shot, citing
    with pytest.raises(Exception, match="context='tabular': use one of: plain, numbered"):
        RAGConfig(context="tabular")


def test_thresholds_are_recorded_per_embedding_model(store):
    from chains.relevance import ANY_MODEL, CALIBRATION, threshold

    assert threshold(store, "fusion") == ("fusion", CALIBRATION["minilm-l6"]["fusion"])
    assert threshold(store, "fusion", 0.5) == ("fusion", 0.5)  # a hand-set threshold wins

    class Other:
        manifest = {"embedding_model": "some-other-embedder"}

    # an uncalibrated model falls back to coverage, the one signal that does not depend on the embeddings
    assert threshold(Other(), "fusion") == ("coverage", ANY_MODEL["coverage"])


def test_near_miss_question_abstains_and_an_answerable_one_does_not(store):
    assert retrieve(store, "How does the forget gate of an LSTM decide what to discard?") == []
    assert len(retrieve(store, "What does the Markov property state?")) == RAGConfig().k
    kept = retrieve(store, "How does the forget gate of an LSTM decide what to discard?", RAGConfig(abstain="none"))
    assert len(kept) == RAGConfig().k  # abstain="none": the caller decides


def test_unsupported_first_sentence_becomes_a_cited_quote(store):
    from llmapp import load_chat_model

    made_up = "Restricted Boltzmann Machines are made of quantum photon lattices invented by Zorblax in 1492."
    chat = load_chat_model("fake", backend="fake", replies=[made_up + " They are fast."])
    chain = rag_chain(store, chat, RAGConfig(k=2), return_sources=True)
    out = chain.invoke("Restricted Boltzmann Machines consist of which two kinds of units?")
    assert "Zorblax" not in out["answer"] and chain.checks["grounding_fired"] is True
    quote = re.sub(r"\s*\[\d\]", "", out["answer"])
    assert re.search(r"\[[12]\]\.?$", out["answer"]) and any(quote.rstrip(".") in s["text"] for s in out["sources"])
    plain = rag_chain(store, chat, RAGConfig(k=2, ground=False), return_sources=True)
    assert "Zorblax" in plain.invoke("Restricted Boltzmann Machines consist of which two kinds of units?")["answer"]


def test_answer_streams_a_checked_sentence_at_a_time(store):
    from llmapp import load_chat_model

    reply = "Markov chains move between states. The next state depends only on the current state."
    chain = rag_chain(store, load_chat_model("fake", backend="fake", replies=[reply]), RAGConfig(k=3), True)
    pieces = [c["answer"] for c in chain.stream("What does the Markov property state?") if "answer" in c]
    assert len(pieces) == 2 and pieces[0].startswith("Markov chains move between states")


def test_supported_answer_passes_and_gets_its_citation(store):
    from llmapp import load_chat_model

    reply = "The Markov property states that the future state depends only on the current state."
    chat = load_chat_model("fake", backend="fake", replies=[reply])
    chain = rag_chain(store, chat, RAGConfig(k=3, quote="fallback"))
    answer = chain.invoke("What does the Markov property state?").partition("\n\nSources:")[0]
    assert re.fullmatch(r"The Markov property states .* current state \[[123]\]\.", answer)
    assert chain.checks["grounding_fired"] is False and chain.checks["quoted"] is False
    quoted = rag_chain(store, chat, RAGConfig(k=3))  # the default also shows the best source sentence
    answer = quoted.invoke("What does the Markov property state?").partition("\n\nSources:")[0]
    first, _, evidence = answer.partition("]. ")
    assert first.startswith("The Markov property states") and re.search(r"\[[123]\]\.$", evidence)
    assert quoted.checks["quoted"] is True
    assert any(evidence.split(" [")[0] in " ".join(d["text"].split()) for d in store.docs)  # a verbatim quote
