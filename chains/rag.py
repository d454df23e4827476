"""Retrieval-augmented answering: retrieve chunks from a store, answer with ``[n]`` citations and Sources.

Retrieval is by vector (FAISS), BM25 (bm25s) or both fused by reciprocal rank, optionally re-ranked
by maximal marginal relevance. A relevance signal over what was retrieved (``chains.relevance``,
threshold calibrated per embedding model) decides whether to answer at all; below it the chain says
so instead of answering from nothing. The answer streams from the chat model one sentence at a time
through the grounding gate (a sentence the sources do not support ends the answer, or becomes a
quote of the best source sentence) and the citation filter (``[n]`` of sources that were not
retrieved are stripped, uncited sentences are attributed); with ``quote="always"`` it ends with the
cited source sentence that best answers the question (``chains.citations``). Every setting is a
:class:`~llmapp.core.config.RAGConfig` field; the prompt is the ``rag_answer`` template.

    from llmapp import load_chat_model
    from chains.rag import rag_chain, retrieve
    chain = rag_chain("store", load_chat_model())
    for piece in chain.stream("What is a VAE?"):
        print(piece, end="", flush=True)

    llmapp ask "What is a VAE?" --store store [--retrieval vector|bm25|hybrid] [--mmr] [-k 4]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from chains.citations import CitationFilter, GroundingGate, attributor, best_quote, term_weights
from chains.relevance import relevance, threshold
from chains.store import Store
from llmapp.core.config import RAGConfig
from llmapp.core.errors import LLMAppError, PromptTooLong

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal-rank-fusion constant from Cormack et al. (2009); damps the weight of top ranks
ANSWER_STOPS = ["\nQuestion:", "\nSources:"]  # where an answer that runs on has clearly ended
SNIPPET_CHARS = 120  # how much of a chunk the Sources list shows
ABSTAIN = ("I could not find anything about that in the indexed documents, so I cannot answer it from them. "
           "Try rephrasing the question, or index documents that cover it.")


@dataclass
class Source:
    """One retrieved chunk, numbered as the answer cites it."""

    n: int  # the citation number: [n]
    source: str  # the file's absolute path
    snippet: str  # the chunk's first words, one line, for the Sources list
    score: float  # cosine similarity to the question
    start: int  # character offsets of the chunk in the file's extracted text
    end: int
    text: str = ""  # the whole chunk, as the model read it


def _as_store(store: Store | str | Path) -> Store:
    from chains.stores import open_store  # a folder or a postgresql:// URL

    return open_store(store)


# ---------------------------------------------------------------------------------------------- retrieval

def _vector_ranking(store: Store, question: str, qvec: Any, n: int) -> list[int]:
    return [h.id for h in store.search_vector(qvec, n)]


def _bm25_ranking(store: Store, question: str, qvec: Any, n: int) -> list[int]:
    if hasattr(store, "keyword_ranking"):  # a Postgres store ranks by its own full-text search
        return store.keyword_ranking(question, n)
    import bm25s

    retriever = store.cache.get("bm25")
    if retriever is None:  # built once per loaded store: a few ms per thousand chunks
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on its own logger
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize([d["text"] for d in store.docs], stopwords="en", show_progress=False),
                        show_progress=False)
        store.cache["bm25"] = retriever
    terms = [t for t in bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
             if t in retriever.vocab_dict]
    if not terms:  # every word is a stopword or unseen: BM25 has nothing to match on
        return []
    ids, scores = retriever.retrieve([terms], k=min(n, len(store)), show_progress=False)
    return [int(i) for i, s in zip(ids[0], scores[0], strict=False) if s > 0]


def _hybrid_ranking(store: Store, question: str, qvec: Any, n: int) -> list[int]:
    if hasattr(store, "hybrid_ranking"):  # a Postgres store fuses both in one statement: one committed version
        return store.hybrid_ranking(question, qvec, n, RRF_K)
    fused: dict[int, float] = {}
    for ranking in (_vector_ranking(store, question, qvec, n), _bm25_ranking(store, question, qvec, n)):
        for rank, row in enumerate(ranking):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(fused, key=fused.__getitem__, reverse=True)


RETRIEVERS: dict[str, Callable[[Store, str, Any, int], list[int]]] = {
    "vector": _vector_ranking,
    "bm25": _bm25_ranking,
    "hybrid": _hybrid_ranking,
}


def retrieve(store: Store | str | Path, question: str, config: RAGConfig | None = None) -> list[Source]:
    """The chunks to answer ``question`` from, numbered 1..k; empty when nothing is relevant.

    Args:
        store: a loaded :class:`~chains.store.Store` or its folder.
        question: the user's question.
        config: ``retrieval``, ``k``, ``fetch_k``, ``mmr``, ``mmr_lambda``, and the abstention
            signal ``abstain`` with its threshold ``min_score`` (None: calibrated per embedding model).

    Returns:
        Up to ``config.k`` sources, or none when their relevance signal (``chains.relevance``) is
        below the threshold.
    """
    config = config or RAGConfig()
    store = _as_store(store)
    sources = rank(store, question, config)
    if sources and config.abstain != "none":
        signal, cut = threshold(store, config.abstain, config.min_score)
        score = relevance(store, question, sources, signal)
        if score < cut:
            log.info("abstaining: %s relevance %.3f is under %.3f", signal, score, cut)
            return []
    return sources


def rank(store: Store, question: str, config: RAGConfig) -> list[Source]:
    """The top ``config.k`` chunks by the configured retriever (and MMR), with no abstention."""
    import numpy as np

    if not question.strip():
        raise LLMAppError("empty question: ask something about the indexed documents")
    ranker = RETRIEVERS.get(config.retrieval)
    if ranker is None:
        raise LLMAppError(f"unknown retrieval {config.retrieval!r}; use one of: {', '.join(RETRIEVERS)}")
    qvec = store.embed_query(question)
    rows = ranker(store, question, qvec, max(config.fetch_k, config.k))
    if not rows:
        return []
    cosine = np.asarray(store.vectors[rows], dtype="float32") @ qvec[0]  # (n,)
    keep = [(r, float(c)) for r, c in zip(rows, cosine, strict=False)]
    if config.mmr:
        keep = _mmr(store, keep, config.k, config.mmr_lambda)
    out = []
    for n, (row, score) in enumerate(keep[:config.k], start=1):
        doc = store.docs[row]
        out.append(Source(n, doc["source"], _snippet(doc["text"]), round(score, 4), doc["start"], doc["end"], doc["text"]))
    return out


def _mmr(store: Store, candidates: list[tuple[int, float]], k: int, lam: float) -> list[tuple[int, float]]:
    """Maximal marginal relevance: each pick maximizes lam*relevance - (1-lam)*similarity to earlier picks."""
    import numpy as np

    if not candidates:
        return []
    vecs = np.asarray(store.vectors[[r for r, _ in candidates]], dtype="float32")
    relevance = np.array([c for _, c in candidates])
    chosen: list[int] = []
    while len(chosen) < min(k, len(candidates)):
        redundancy = (vecs @ vecs[chosen].T).max(axis=1) if chosen else np.zeros(len(candidates))
        score = lam * relevance - (1 - lam) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(score.argmax()))
    return [candidates[i] for i in chosen]


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "..."


# ---------------------------------------------------------------------------------------------- answering

def format_context(sources: list[Source], style: str = "numbered") -> str:
    """The sources as the prompt shows them: ``[n] chunk`` (``numbered``) or bare chunks (``plain``),
    separated by blank lines."""
    if style == "plain":
        return "\n\n".join(" ".join(s.text.split()) for s in sources)
    return "\n\n".join(f"[{s.n}] {' '.join(s.text.split())}" for s in sources)


def format_sources(sources: list[Source], store: Store | None = None) -> str:
    """The Sources block printed under an answer: ``[n] path — snippet`` per line."""
    name = store.display_name if store is not None else (lambda p: p)
    return "Sources:\n" + "\n".join(f"[{s.n}] {name(s.source)} — {s.snippet}" for s in sources)


class RAGChain(Runnable[Any, Any]):
    """The Runnable :func:`rag_chain` returns: question in, cited answer (and sources) out, streamed."""

    name = "rag_chain"

    def __init__(self, store: Store, chat_model: Any, config: RAGConfig, return_sources: bool, prompt: Any) -> None:
        self.store, self.chat_model, self.config, self.return_sources = store, chat_model, config, return_sources
        self.prompt = prompt
        self.checks: dict[str, Any] = {}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if not self.return_sources:
            return "".join(self.stream(input, config, **kwargs))
        out = {"question": _question(input), "answer": "", "sources": [], "abstained": False}
        for chunk in self.stream(input, config, **kwargs):
            if "answer" in chunk:
                out["answer"] += chunk["answer"]
            else:
                out.update(chunk)
        return out

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        question = _question(input)
        sources = self.fit(question, retrieve(self.store, question, self.config))
        abstained = not sources
        self.checks = {"abstained": abstained}  # the last answer's diagnostics (eval reads them)
        if self.return_sources:
            yield {"sources": [dataclasses.asdict(s) for s in sources], "abstained": abstained}
        wrap = (lambda text: {"answer": text}) if self.return_sources else (lambda text: text)
        if abstained:
            yield wrap(ABSTAIN)
        else:
            for text in self._answer(question, sources, config, kwargs):
                yield wrap(text)
        if not self.return_sources and sources:
            yield "\n\n" + format_sources(sources, self.store)

    def _answer(self, question: str, sources: list[Source], config: RunnableConfig | None,
                kwargs: dict[str, Any]) -> Iterator[str]:
        """The model's answer, sentence by sentence through the grounding gate, then the citation filter."""
        weight, embeddings = term_weights(self.store), self.store.embeddings
        gate = (GroundingGate(question, sources, self.config.min_support if self.config.ground else -1.0,
                              self.config.quote, weight, embeddings)
                if self.config.ground or self.config.quote == "always" else None)
        attribute = None
        if self.config.attribute:  # cite by the quote's source where it supports a sentence
            quote = gate.evidence() if gate is not None else best_quote(question, sources, weight, embeddings)
            attribute = attributor(self.store, sources, self.config.attribute_min_score, question,
                                   quote[0] if quote else None, self.config.cite_min_new)
        cites = CitationFilter({s.n for s in sources}, attribute, recite=self.config.recite)
        # The model is streamed directly rather than through `prompt | model | parser`: closing an LCEL
        # sequence's stream leaves the model generating until garbage collection, closing this stops it.
        messages = self.prompt.format_messages(question=question, context=format_context(sources, self.config.context))
        # Small models run on into a made-up next "Question:"; the answer ends there.
        inner = self.chat_model.stream(messages, config, **{"stop": ANSWER_STOPS, **self._budget(), **kwargs})
        try:
            for chunk in inner:
                piece = chunk.text if hasattr(chunk, "text") else str(chunk.content)
                if gate is not None:
                    piece = gate.feed(piece)
                if text := cites.feed(piece):
                    yield text
                if gate is not None and gate.stopped:
                    break  # the rest would build on an unsupported sentence: stop the model now
        finally:
            inner.close()  # stops the model within one token when our caller stops early
        if tail := cites.feed(gate.flush() if gate is not None else "") + cites.flush():
            yield tail
        self.checks.update(cited=cites.cited, added=cites.added, invalid=sorted(set(cites.invalid)),
                           grounding_fired=bool(gate and gate.fired), dropped=gate.dropped if gate else 0,
                           quoted=bool(gate and gate.quoted))
        log.info("citations: written %s, added by attribution %s", cites.cited, cites.added)
        if gate is not None and gate.fired:
            log.info("grounding: the answer shared too little with its sources; quoted the best sentence instead")
        if cites.invalid:
            log.info("stripped citations of sources that were not retrieved: %s", sorted(set(cites.invalid)))

    def _budget(self) -> dict[str, Any]:
        """``max_tokens`` for the answer: RAGConfig's budget, unless the chat model's own is smaller."""
        own = getattr(self.chat_model, "max_tokens", None)
        if self.config.max_tokens is None or not isinstance(own, int):
            return {}
        return {"max_tokens": min(own, self.config.max_tokens)}

    def fit(self, question: str, sources: list[Source]) -> list[Source]:
        """Drop the lowest-ranked sources until the prompt fits the chat model's window.

        Raises:
            PromptTooLong: the question alone does not fit.
        """
        count = getattr(self.chat_model, "get_num_tokens_from_messages", None)
        window = getattr(self.chat_model, "context_window", None)
        if count is None or not window:
            return sources
        room = window - int(self._budget().get("max_tokens") or getattr(self.chat_model, "max_tokens", 256) or 256)
        kept = list(sources)
        while True:
            used = count(self.prompt.format_messages(question=question, context=format_context(kept, self.config.context)))
            if used <= room:
                return kept
            if not kept:
                raise PromptTooLong(f"the question is too long: with the answer prompt it takes {used} tokens, and "
                                    f"only {room} fit the model's {window}-token window; shorten the question")
            kept.pop()


def _question(input: Any) -> str:
    question = input.get("question") if isinstance(input, dict) else input
    if not isinstance(question, str) or not question.strip():
        raise LLMAppError("rag_chain takes a question: a non-empty string or {'question': str}")
    return question.strip()


def rag_chain(store: Store | str | Path, chat_model: Any, config: RAGConfig | None = None,
              return_sources: bool = False, template: str = "rag_answer") -> Runnable:
    """A Runnable that answers questions from a store with ``[n]`` citations.

    Args:
        store: a loaded :class:`~chains.store.Store` or its folder.
        chat_model: any LangChain chat model (``llmapp.load_chat_model()``).
        config: retrieval settings (:class:`~llmapp.core.config.RAGConfig`).
        return_sources: False: the output is the answer followed by a Sources block, as ``str``
            (``.stream()`` yields ``str`` pieces). True: ``invoke`` returns ``{"question", "answer",
            "sources", "abstained"}``; ``.stream()`` yields ``{"sources", "abstained"}`` first,
            then ``{"answer": piece}`` chunks.
        template: the prompt template (variables ``question`` and ``context``).

    Returns:
        The chain; its input is a question ``str`` or ``{"question": str}``.
    """
    from prompts import load_prompt

    return RAGChain(_as_store(store), chat_model, config or RAGConfig(), return_sources, load_prompt(template))
