"""Citations and grounding for RAG answers: keep ``[n]`` honest, add missing ones, catch made-up claims.

- :class:`CitationFilter` streams an answer through, dropping ``[n]`` of sources that were not
  retrieved and citing each uncited sentence by a source that supports it (:func:`attributor`: the
  best quote's source first, never for a sentence that only restates the question);
  with ``recite`` every sentence is cited that way, in place of the numbers the model wrote (a 135M
  model's own numbers are often wrong): a number it wrote is kept only when that source supports the
  sentence, and a sentence that merely restates the question is cited by nothing.
- :class:`GroundingGate` sits before it and lets the answer through a sentence at a time: a sentence
  that shares too little with the sources (``chains.grounding.support`` under
  ``RAGConfig.min_support``, or a name or number no source has) ends the answer there; when it is
  the first sentence, the answer becomes a quote of the source sentence that best answers the
  question, with its citation, instead of a made-up claim.

    gate = GroundingGate(question, sources, 0.5, "always", term_weights(store), store.embeddings)
    quote = gate.evidence()                # (n, sentence): the source sentence that best answers it
    cites = CitationFilter({1, 2}, attributor(store, sources, 0.3, question, quote[0], min_new=0.8))
    for piece in model_pieces:
        text = gate.feed(piece)            # whole sentences, checked
        print(cites.feed(text), end="")
        if gate.stopped: break
    print(cites.feed(gate.flush()) + cites.flush())
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from chains.grounding import content_words, foreign_tokens, overlap, split_sentences, support, terms

_CITATION = re.compile(r"(\s*)\[\s*(?:[Ss]ources?\s*)?(\d+(?:\s*,\s*\d+)*)\s*\]")
_ANY_CITATION = re.compile(r"\s*\[[^\]]*\]")
QUOTE_COSINE = 0.3  # weight of a sentence's cosine to the question in choosing the quote: on dev its source held
# the keywords for 0.850 of the questions with it, 0.833 without (quote keyword accuracy 0.764 against 0.719)
TITLE_WORDS = 12  # a paragraph this short without a full stop is a title (is_title), not evidence
_SENTENCE_END = re.compile(r"[.!?](?:\s*\[[\d,\s]+\])*(?=\s+[^\s\[])|\n")


class CitationFilter:
    """Streams an answer through, keeping only citations of retrieved sources and adding missing ones.

    - ``[n]`` whose ``n`` was not retrieved is dropped (``invalid`` records it). A piece ending in an
      unclosed ``[`` is held back until the bracket closes, so a citation split across tokens is checked.
    - With ``attribute`` (sentence -> source number or None), a sentence that ends without a citation
      gets one before its full stop: the source its text is most similar to. Small models often
      answer well but forget the brackets; this keeps every claim traceable.
    """

    def __init__(self, valid: set[int], attribute: Callable[[str], int | None] | None = None,
                 recite: bool = False) -> None:
        self.valid, self.attribute = valid, attribute
        self.recite = recite and attribute is not None  # replace the model's own numbers by attribution
        self.buf = ""  # raw text not yet checked (an unclosed "[")
        self.sentence = ""  # the current sentence, as emitted so far
        self.state, self.held = "text", ""  # "punct"/"gap": a possible sentence end, held in ``held``
        self.after_cite = False  # a citation right after a full stop: it closes the sentence before it
        self.cited: list[int] = []  # valid numbers the model wrote, in order of first citation
        self.added: list[int] = []  # numbers added by attribution
        self.invalid: list[int] = []  # numbers the model made up, stripped
        self.written: list[int] = []  # with ``recite``: the numbers the model wrote in the current sentence

    def _clean(self, text: str) -> str:
        def fix(m: re.Match) -> str:
            nums = [int(x) for x in re.split(r"\s*,\s*", m.group(2))]
            good = [n for n in nums if n in self.valid]
            self.invalid += [n for n in nums if n not in self.valid]
            self.cited += [n for n in good if n not in self.cited]
            if self.recite:  # the sentence is cited at its end by attribution, which weighs these numbers
                self.written += [n for n in good if n not in self.written]
                return ""
            return m.group(1) + "".join(f"[{n}]" for n in good) if good else ""

        return _CITATION.sub(fix, text)

    def feed(self, piece: str) -> str:
        """Take the next streamed piece; return the text that is safe to show now."""
        self.buf += piece
        cut = self.buf.rfind("[")
        if cut >= 0 and "]" not in self.buf[cut:] and len(self.buf) - cut < 16:
            cut = len(self.buf[:cut].rstrip())  # hold the space before it too: a stripped citation takes it along
            ready, self.buf = self.buf[:cut], self.buf[cut:]
        else:
            ready, self.buf = self.buf, ""
        return self._sentences(self._clean(ready))

    def flush(self) -> str:
        """The held-back tail, with the last sentence attributed if it needs it."""
        out = self._sentences(self._clean(self.buf))
        self.buf = ""
        if self.state == "text":
            stripped = self.sentence.rstrip()
            tail = self.sentence[len(stripped):]
            return out + self._cite(stripped) + tail if stripped else out
        out += self._cite(self.sentence) + self.held
        self.state, self.held, self.sentence = "text", "", ""
        return out

    def _sentences(self, text: str) -> str:
        out = []
        for ch in text:
            if self.state == "punct":  # just saw . ! or ?: a sentence end only if whitespace follows
                if ch.isspace():
                    self.state, self.held = "gap", self.held + ch
                    continue
                out.append(self.held)
                self.sentence += self.held
                self.state, self.held = "text", ""
            elif self.state == "gap":
                if ch.isspace():
                    self.held += ch
                    continue
                # "[" after the full stop: the model cites the sentence itself ("... . [1]")
                out.append(self.held if ch == "[" else self._cite(self.sentence) + self.held)
                self.after_cite = ch == "["  # the sentence ends when that citation closes
                self.sentence = "" if ch != "[" else self.sentence
                self.state, self.held = "text", ""
            if ch in ".!?":
                self.state, self.held = "punct", ch
                continue
            if ch == "\n" and self.sentence.strip():  # a list item or paragraph ends the sentence too
                out.append(self._cite(self.sentence))
                self.sentence = ""
                out.append(ch)
                continue
            self.sentence += ch
            out.append(ch)
            if ch == "]" and self.after_cite:
                self.sentence, self.after_cite = "", False
        return "".join(out)

    def _cite(self, sentence: str) -> str:
        """`` [n]`` for a sentence without a citation, when attribution finds a source for it."""
        written, self.written = self.written, []
        if self.attribute is None or re.search(r"\[\d+\]", sentence) or len(sentence.split()) < 3:
            return ""
        n = self.attribute(sentence, written) if written else self.attribute(sentence)
        if n is None:
            return ""
        self.added.append(n)
        return f" [{n}]"


def attributor(store: Any, sources: Sequence[Any], min_score: float, question: str = "",
               prefer: int | None = None, min_new: float = 0.0) -> Callable[..., int | None]:
    """(sentence, written numbers) -> the number of the source to cite it by, or None.

    A sentence that only restates the question's words gets no citation: any retrieved chunk
    "supports" those. Otherwise ``prefer`` (the source of the best quote, :func:`best_quote`) is cited
    when its support (word overlap blended with embedding cosine, as in
    :func:`chains.grounding.support`) reaches ``min_score``: one source cited throughout an answer is
    right more often than a second, weaker one. Any other source must also hold ``min_new`` of the
    sentence's own content words (those the question does not say); among those, a number the model
    wrote for the sentence wins, then the best support. A sentence copied from a source (the quote)
    is cited by that source.

    Args:
        store: the loaded store (its embeddings).
        sources: the retrieved chunks (``.n`` and ``.text``).
        min_score: the blended support a source needs (``RAGConfig.attribute_min_score``).
        question: the user's question; its words do not count as support.
        prefer: the source number to cite when it supports the sentence.
        min_new: the share of the sentence's non-question words the source must hold
            (``RAGConfig.cite_min_new``); 0 keeps the blended score as the only test.
    """
    from chains.grounding import encode, support_scores

    texts = [s.text for s in sources]
    flat = [" ".join(t.split()).lower() for t in texts]
    asked = set(content_words(question))
    vectors: list[Any] = []  # the sources' vectors, embedded on the first sentence only

    def best(sentence: str, written: Sequence[int] = ()) -> int | None:
        bare = _ANY_CITATION.sub("", sentence).strip()
        copied = " ".join(bare.split()).lower().rstrip(".!?")
        for i, text in enumerate(flat):
            if len(copied) > 20 and copied in text:
                return sources[i].n  # a quote: cited by the source it was copied from
        own = [w for w in content_words(bare) if w not in asked]
        if min_new > 0 and not own:
            return None  # it only restates the question
        if not vectors:
            vectors.append(encode(store.embeddings, texts))
        support_of = support_scores([bare], texts, store.embeddings, vectors[0], lexical=0.5)[0]  # (n_sources,)
        scored = []  # (support, share of the sentence's own words held, source number)
        for i, text in enumerate(texts):
            have = set(content_words(text))
            held = sum(w in have for w in own) / len(own) if own else 1.0
            scored.append((float(support_of[i]), held, sources[i].n))
        if any(n == prefer and score >= min_score for score, _, n in scored):
            return prefer
        ok = {n: score for score, held, n in scored if score >= min_score and held >= min_new}
        for n in written:
            if n in ok:
                return n
        return max(ok, key=ok.__getitem__) if ok else None

    return best


def source_sentences(sources: Sequence[Any]) -> list[tuple[int, str]]:
    """Every sentence of the retrieved chunks as ``(source number, sentence)``, best-ranked source first."""
    out = []
    for s in sources:
        for sent in split_sentences(s.text):  # hard-wrapped lines rejoin; paragraphs and sentences split
            sent = sent.lstrip("#*-> ").strip()
            if len(sent.split()) >= 4:
                out.append((s.n, sent))
    return out


def is_title(sentence: str, text: str) -> bool:
    """Whether ``sentence`` (from :func:`source_sentences`) is a title of ``text``: a whole paragraph of
    at most :data:`TITLE_WORDS` words that does not end like a sentence (``.``, ``!``, ``?``, ``:``,
    ``;``) and is no table row, such as "Evening bookings and deposits" or a Markdown heading. A title
    names a topic without saying anything about it, so it is never the evidence quote: on dev one
    outscored the sentence under it that held the answer ("Booking the Pilot Room, the Net Loft and
    the Lantern Room" for a question on the Net Loft's evening fees)."""
    if sentence[-1:] in ".!?:;" or "|" in sentence or len(sentence.split()) > TITLE_WORDS:
        return False
    return any(" ".join(block.split()).lstrip("#*-> ").strip() == sentence for block in re.split(r"\n\s*\n", text))


def term_weights(store: Any) -> Callable[[str], float]:
    """A question word's weight for :func:`best_quote`: its inverse document frequency over the store's
    chunks (exact words as ``w``, stems as ``~stem``), built once per loaded store. A sentence that has
    the question's rare word ("baselines") beats one that repeats its common one ("summarization"):
    on the dev questions the quote's source held the answer's keywords for 0.833 of them, against
    0.800 with every word counted once (quote keyword accuracy 0.719 against 0.686)."""
    cached = store.cache.get("quote_idf")
    if cached is None:
        from chains.stores import all_docs  # every chunk, from a FAISS or a Postgres store

        df: dict[str, int] = {}
        docs = all_docs(store)
        for doc in docs:
            for t in terms(doc["text"]) | {"~" + w for w in content_words(doc["text"])}:
                df[t] = df.get(t, 0) + 1
        n = max(len(docs), 1)
        cached = store.cache["quote_idf"] = lambda t: math.log(1 + n / df.get(t, 0.5))  # unseen: rarer than once
    return cached


def best_quote(question: str, sources: Sequence[Any], weight: Callable[[str], float] | None = None,
               embeddings: Any = None) -> tuple[int, str] | None:
    """The source sentence that best answers ``question``: most of its words, exact (:func:`terms`) and
    stemmed (:func:`content_words`), each weighted by ``weight`` (:func:`term_weights`; None: each
    counts once), as a share of all of them; with ``embeddings``, plus :data:`QUOTE_COSINE` times the
    sentence's cosine to the question. Titles (:func:`is_title`) are passed over while any other
    sentence is left. The model's own answer is not consulted: on the dev questions,
    favouring sentences that share its words picked wrong sentences more often than right ones
    (keyword accuracy 0.667 with that bonus, 0.803 without, on the genai notes).

    Returns:
        ``(source number, sentence)``, or None when the sources have no sentence at all.
    """
    q, q_stems = terms(question), set(content_words(question))
    pool = source_sentences(sources)
    text = {s.n: s.text for s in sources}
    pool = [p for p in pool if not is_title(p[1], text[p[0]])] or pool  # a title says nothing: never the evidence
    if not pool:
        return None
    w = weight or (lambda t: 1.0)
    total = sum(map(w, q)) + sum(w("~" + s) for s in q_stems) or 1.0
    cosine = [0.0] * len(pool)
    if embeddings is not None:
        from chains.grounding import encode

        vecs = encode(embeddings, [question] + [sent for _, sent in pool])
        cosine = [float(c) for c in vecs[1:] @ vecs[0]]

    def score(rank: int) -> tuple[float, int]:
        words = terms(pool[rank][1])
        # A question word found exactly counts twice (as itself and as its stem); "classify" still finds
        # "classification" once. Ties: the higher-ranked source, then the earlier sentence.
        found = sum(w(t) for t in q & words) + sum(w("~" + s) for s in q_stems & set(content_words(pool[rank][1])))
        return (found / total + QUOTE_COSINE * cosine[rank], -rank)

    return pool[max(range(len(pool)), key=score)]


class GroundingGate:
    """Lets a streamed answer through one whole sentence at a time, checking each against the sources.

    Args:
        question: the user's question (its own words count as supported).
        sources: the retrieved chunks (``.n`` and ``.text``).
        min_support: the word-overlap share (``chains.grounding.support``) a sentence needs.
        quote: ``"fallback"``: quote a source only in place of an unsupported first sentence;
            ``"always"``: also end every answer with the source sentence that best answers the
            question (unless the answer already says it), so the reader sees the evidence.
        weight: question-word weights for choosing that sentence (:func:`term_weights`).
        embeddings: the store's embeddings, to weigh in each sentence's cosine to the question.

    ``fired`` is True when the answer was replaced by a quote, ``stopped`` when the gate ended it
    (the model can stop generating), ``dropped`` counts unsupported sentences cut off the end.
    """

    def __init__(self, question: str, sources: Sequence[Any], min_support: float, quote: str = "fallback",
                 weight: Callable[[str], float] | None = None, embeddings: Any = None) -> None:
        self.question, self.sources, self.min_support, self.quote = question, list(sources), min_support, quote
        self.weight, self.embeddings = weight, embeddings  # for best_quote: word weights (term_weights), cosine
        self._evidence: list[tuple[int, str] | None] = []  # best_quote's answer, once computed
        self.answer = ""  # the sentences let through
        self.texts = [s.text for s in self.sources]
        self.buf = ""
        self.passed = 0  # sentences let through
        self.fired = self.stopped = self.quoted = False
        self.dropped = 0
        self.scores: list[float] = []

    def evidence(self) -> tuple[int, str] | None:
        """The source sentence that best answers the question (:func:`best_quote`), computed once."""
        if not self._evidence:
            self._evidence.append(best_quote(self.question, self.sources, self.weight, self.embeddings))
        return self._evidence[0]

    def feed(self, piece: str) -> str:
        """Take the next piece of the model's text; return the whole sentences that passed."""
        if self.stopped:
            return ""
        self.buf += piece
        out = ""
        while not self.stopped and (m := _SENTENCE_END.search(self.buf)):
            sentence, self.buf = self.buf[:m.end()], self.buf[m.end():]
            out += self._check(sentence)
        return out

    def flush(self) -> str:
        """The last sentence (cut by the token budget or ended by the model), checked like the rest,
        then the evidence quote when ``quote="always"``."""
        tail, self.buf = self.buf, ""
        out = "" if self.stopped or not tail.strip() else self._check(tail)
        if self.quote == "always" and not self.fired and self.answer.strip():
            found = self.evidence()
            if found is not None and overlap(found[1], self.answer) < 0.8:  # not a repeat of what it said
                self.quoted = True
                out += " " + _cited(*found)
        return out

    def supported(self, sentence: str) -> bool:
        """Whether ``sentence`` is supported by the sources (always, when ``min_support`` is negative)."""
        bare = _ANY_CITATION.sub("", sentence).strip()
        if self.min_support < 0:
            return True
        if len(content_words(bare)) < 2:  # "Yes." or a heading: nothing to check
            return True
        score = support([bare], self.texts)[0][0] if self.texts else 0.0
        self.scores.append(score)
        return score >= self.min_support and not foreign_tokens(bare, " ".join([*self.texts, self.question]))

    def _check(self, sentence: str) -> str:
        if self.supported(sentence):
            self.passed += 1
            self.answer += sentence
            return sentence
        self.stopped = True
        if self.passed:
            self.dropped += 1
            return ""
        quote = self.evidence()
        if quote is None:
            return sentence
        self.fired = True
        return _cited(*quote)


def _cited(n: int, text: str) -> str:
    """A quoted source sentence with its citation before the full stop."""
    text = text if text[-1:] in ".!?" else text + "."
    return f"{text[:-1]} [{n}]{text[-1]}"
