"""Grounding: is each sentence of a generated text supported by its source, and does it add anything new?

Two checks, shared by the summarization guard and metrics and by RAG's citation checks:

- :func:`support`: for each sentence, the source passage it is most similar to and that cosine
  similarity (sentence-embedding vectors, unit length, so a dot product). Passages are whatever
  the caller cites: retrieved chunks for RAG, or windows of consecutive source sentences
  (:func:`passages`) for a summary, since one summary sentence often joins two adjacent facts.
- :func:`foreign_tokens`: the names, numbers and links in a sentence that the source never
  mentions. A summary of a note with no links must not contain one, and a sentence that names
  "Ruth Osei" or "1851" where the source says "Priya Nandakumar" or "1841" is wrong however similar
  it is overall; similarity alone cannot see one wrong digit.

:class:`Grounding` prepares a source once (passages, their vectors and its vocabulary) and judges
any number of sentences against it with :meth:`Grounding.check`. The threshold of
:data:`SUPPORT_THRESHOLD` was chosen on the dev half of ``eval/data/summarization-faithfulness.jsonl``
(hand-labelled summary sentences); ``eval/tasks/summarization.py`` reports its agreement on test.

    from llmapp import load_embeddings
    from chains.grounding import Grounding, foreign_tokens, support
    g = Grounding(source_text, load_embeddings())
    for v in g.check(["The branch reopens on Monday.", "See https://example.com."]):
        print(v.supported, round(v.score, 2), v.foreign)
    foreign_tokens("Ruth Osei lost 9,000 books.", "Priya lost 9000 books.")    # ['Ruth', 'Osei']
    support(["a cat sat"], ["the cat sat down", "dogs bark"], load_embeddings())  # [(0.8..., 0)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SUPPORT_THRESHOLD = 0.665  # cosine below which a sentence is unsupported: the best agreement with the dev hand
# labels (0.706 on dev, 0.683 on test, with foreign tokens; python -m eval.faithfulness)
WINDOWS = (1, 2)  # passage sizes in consecutive source sentences: a summary sentence often joins two facts

_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_TERMINAL = re.compile(r"[.!?][\"')\]]*$")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|#+)\s+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+|\b[\w.+-]+@[\w-]+\.[\w.-]+\b", re.I)
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_NUMBER_WORDS = frozenset("two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                          "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                          "hundred thousand million billion dozen twice thrice half quarter".split())
# Words that open or join summary sentences and are capitalised only by position or habit.
_COMMON = frozenset("""a an the this these that those it its they their there then here he she his her we our you
your i in on at of for from to by with as and or but so if when while after before during since until also
additionally however overall finally first second third next later meanwhile moreover furthermore summary
summarizing summarized summarised in-summary note notes text document passage article author authors writer
story report part section chapter scene act both each every all some many most several one no not yet thus
therefore instead although though because despite throughout today according other another such what which
who whom whose how why where key main despite among between""".split())

# Function words carry no claim: a sentence is judged on the rest.
STOPWORDS = frozenset("""a an and are as at be been being but by can could did do does for from had has have how i if
in into is it its it's may might more most much no not of on or our so some such than that the their them then there
these they this those to too under up us was we were what when where which while who whom why will with would you
your also very just only each other any all both can't cannot don't does doesn't""".split())
STEM = 5  # words are compared by their first 5 letters: "classify" ~ "classification", "trained" ~ "training"
_CONTENT_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")


@dataclass
class Verdict:
    """How one sentence stands against the source."""

    sentence: str
    score: float  # cosine similarity to the most similar passage (1.0 = the same meaning)
    passage: int  # index of that passage in the Grounding's passages (-1 when there are none)
    foreign: list[str] = field(default_factory=list)  # names / numbers / links the source never mentions
    supported: bool = True  # score >= threshold and nothing foreign


def split_sentences(text: str, lines: bool = False) -> list[str]:
    """Split text into sentences at ., ! or ? followed by a capital, a digit or an opening quote.

    Args:
        text: prose, notes or verse.
        lines: also treat every line break as a boundary, and drop list markers (``-``, ``1.``,
            ``#``): right for generated text, where a model writes bullets; a source's verse lines
            are kept together within a paragraph instead.

    Returns:
        Sentences with whitespace collapsed, in order; empty ones dropped.
    """
    blocks = [ln for ln in text.splitlines()] if lines else re.split(r"\n\s*\n", text)
    out: list[str] = []
    for block in blocks:
        block = _BULLET.sub("", block) if lines else block
        out += [s.strip() for s in _SENTENCE.split(" ".join(block.split())) if s.strip()]
    return out


def join_sentences(sentences: Sequence[str], after: str = "") -> str:
    """Sentences as one text that :func:`split_sentences` (with ``lines=True``) splits back the same:
    a space after a sentence that ends in ., ! or ?, a line break after one that does not (a verse
    line, a list item), so that two of them never merge into one.

    Args:
        sentences: the sentences, in order.
        after: the text they follow, if any (a separator is put before the first one then).
    """
    out = ""
    prev = after
    for sentence in sentences:
        if prev:
            out += " " if _TERMINAL.search(prev) else "\n"
        out += sentence
        prev = sentence
    return out


def passages(sentences: Sequence[str], windows: Sequence[int] = WINDOWS) -> list[str]:
    """Windows of consecutive sentences (each size in ``windows``) as the passages a claim may cite."""
    out: list[str] = []
    for size in windows:
        if size == 1 or len(sentences) >= size:
            out += [" ".join(sentences[i:i + size]) for i in range(max(1, len(sentences) - size + 1))]
    return [p for p in out if p]


def encode(embeddings: Any, texts: Sequence[str]) -> Any:
    """Unit-length float32 vectors, shape (len(texts), dim), from llmapp's or any LangChain embeddings."""
    import numpy as np

    if not texts:
        return np.zeros((0, 1), dtype="float32")
    raw = embeddings.encode(list(texts)) if hasattr(embeddings, "encode") else embeddings.embed_documents(list(texts))
    vecs = np.asarray(raw, dtype="float32")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning, lower-cased and cut to :data:`STEM` letters."""
    return [w.lower()[:STEM] for w in _CONTENT_WORD.findall(text) if w.lower() not in STOPWORDS]


# Only the words that frame a question: matching a source sentence to it wants every other word exact.
QUESTION_STOPWORDS = frozenset("a an and are as at be by do does for from how in is it of on or that the to what when "
                               "where which who why with".split())


def terms(text: str) -> set[str]:
    """The exact words of ``text`` (lower-cased, ``snake_case`` names kept whole) that are not question
    framing: what a question and the sentence that answers it share. Matching them exactly (no stems,
    few stopwords) picks the answering sentence better than :func:`content_words` does (eval/retrieval_grid)."""
    return set(re.findall(r"\w+", text.lower())) - QUESTION_STOPWORDS


def overlap(sentence: str, passage: str) -> float:
    """Share of ``sentence``'s content words found in ``passage`` (1.0 for a sentence with none)."""
    words = content_words(sentence)
    if not words:
        return 1.0
    have = set(content_words(passage))
    return sum(w in have for w in words) / len(words)


def support(sentences: Sequence[str], passages: Sequence[str], embeddings: Any = None,
            passage_vectors: Any = None, lexical: float = 0.0) -> list[tuple[float, int]]:
    """The best-supporting passage of each sentence, and how well it supports it.

    Args:
        sentences: the claims to check (a summary's or an answer's sentences).
        passages: what they may rest on (source windows, retrieved chunks).
        embeddings: LangChain ``Embeddings`` (``load_embeddings()``), or anything with ``encode``; None
            scores by word :func:`overlap` alone.
        passage_vectors: the passages' vectors if already computed (:func:`encode`), to embed once.
        lexical: with embeddings, the share of word overlap blended into the cosine (0: cosine only).

    Returns:
        One ``(score, passage_index)`` per sentence: the highest score and where it was found;
        ``(0.0, -1)`` for every sentence when there are no passages.
    """
    if not passages:
        return [(0.0, -1) for _ in sentences]
    if not sentences:
        return []
    scores = support_scores(sentences, passages, embeddings, passage_vectors, lexical)
    best = scores.argmax(axis=1)
    return [(round(float(scores[i, j]), 4), int(j)) for i, j in enumerate(best)]


def support_scores(sentences: Sequence[str], passages: Sequence[str], embeddings: Any = None,
                   passage_vectors: Any = None, lexical: float = 0.0) -> Any:
    """How well each passage supports each sentence, as :func:`support` scores it: an
    ``(n_sentences, n_passages)`` float32 array (both lists non-empty)."""
    import numpy as np

    scores = np.zeros((len(sentences), len(passages)), dtype="float32")
    if embeddings is None or lexical:
        scores += np.array([[overlap(s, p) for p in passages] for s in sentences], dtype="float32")
    if embeddings is not None:
        pvecs = encode(embeddings, passages) if passage_vectors is None else passage_vectors
        sims = encode(embeddings, sentences) @ pvecs.T  # (n_sentences, n_passages)
        scores = lexical * scores + (1 - lexical) * (np.maximum(sims, 0.0) if lexical else sims)
    return scores


class Vocabulary:
    """What a source mentions, normalised for :func:`foreign_tokens`: words, numbers and links."""

    def __init__(self, source: str) -> None:
        low = source.lower()
        self.text = low
        self.words = {w.strip("'’-") for w in _WORD.findall(low)}
        self.words |= {part for w in list(self.words) for part in re.split(r"['’-]", w) if part}
        self.numbers = {_norm_number(n) for n in _NUMBER.findall(source)}

    def has_word(self, word: str) -> bool:
        """Whether the source has ``word`` in any case, as a plural or singular, or each part of it."""
        w = re.sub(r"['’]s$", "", word.lower().strip("'’-"))
        return self._known(w) or all(self._known(p) for p in re.split(r"['’-]", w) if p)

    def _known(self, w: str) -> bool:
        forms = {w, w + "s", w + "es", w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w}
        return not forms.isdisjoint(self.words)


def foreign_tokens(sentence: str, source: str | Vocabulary) -> list[str]:
    """Names, numbers and links in ``sentence`` that ``source`` never mentions.

    - links and e-mail addresses, unless the source contains them;
    - numbers (``9,000`` matches ``9000``; ``1851`` does not match ``1841``) and number words
      (``fourteen``), unless the source has them;
    - names: capitalised words and acronyms, unless the source has the word in any case; a
      sentence's first word only when a capitalised word follows it, and never a common opener
      like "Overall" or "The".

    Args:
        sentence: one generated sentence.
        source: the source text, or its :class:`Vocabulary` when checking many sentences.

    Returns:
        The offending tokens in order of appearance, without duplicates; ``[]`` when there are none.
    """
    vocab = source if isinstance(source, Vocabulary) else Vocabulary(source)
    found: list[tuple[int, str]] = []  # (position, token), sorted at the end
    for m in _URL.finditer(sentence):
        url = m.group().rstrip(".,;:")
        if url.lower() not in vocab.text:
            found.append((m.start(), url))
    rest = _URL.sub(lambda m: " " * len(m.group()), sentence)  # same length: positions stay valid
    for m in _NUMBER.finditer(rest):
        if _norm_number(m.group()) not in vocab.numbers:
            found.append((m.start(), m.group()))
    words = list(_WORD.finditer(re.sub(r"\d", " ", rest)))
    for i, m in enumerate(words):
        word, low = m.group(), m.group().lower()
        # A sentence's first word is a name when a capitalised word follows it ("Ruth Osei said").
        first = i == 0 and not (len(words) > 1 and _is_name(words[1].group(), first=False))
        if (low in _NUMBER_WORDS or _is_name(word, first=first)) and not vocab.has_word(word):
            found.append((m.start(), word))
    found = [t for _, t in sorted(found)]
    return list(dict.fromkeys(found))


def _is_name(word: str, first: bool) -> bool:
    """A capitalised word that is not just starting the sentence, or an acronym / CamelCase word."""
    if len(word) > 1 and (word.isupper() or any(c.isupper() for c in word[1:])):
        return word.lower() not in _COMMON
    if not word[0].isupper() or word.lower() in _COMMON or word == "I":
        return False
    return not first


def _norm_number(num: str) -> str:
    """``9,000`` and ``9000`` alike; trailing separators dropped; leading zeros kept (``007``)."""
    return num.replace(",", "").rstrip(".:/")


class Grounding:
    """A source prepared once (sentences, passages, their vectors, its vocabulary) to judge many claims.

    Args:
        source: the source text.
        embeddings: sentence embeddings (``load_embeddings()``); None checks foreign tokens only
            (every score is then 1.0 and no passage is named).
        threshold: the support cosine below which a sentence is unsupported.
        windows: passage sizes, in consecutive source sentences.
        vectors: the passages' vectors, when saved from an earlier Grounding of the same source.
    """

    def __init__(self, source: str, embeddings: Any, threshold: float = SUPPORT_THRESHOLD,
                 windows: Sequence[int] = WINDOWS, vectors: Any = None) -> None:
        self.source, self.embeddings, self.threshold = source, embeddings, threshold
        self.sentences = split_sentences(source)
        self.passages = passages(self.sentences, windows)
        if vectors is not None and len(vectors) != len(self.passages):
            raise ValueError(f"{len(vectors)} vectors given for {len(self.passages)} passages")
        if vectors is None and embeddings is not None:
            vectors = encode(embeddings, self.passages)
        self.vectors = vectors
        self.vocabulary = Vocabulary(source)

    def sentence_vectors(self) -> Any:
        """Vectors of the source's sentences alone (None without embeddings); the first passages are
        the sentences themselves when windows start at 1, so nothing is embedded twice."""
        if self.vectors is None:
            return None
        n = len(self.sentences)
        if self.passages[:n] == self.sentences:
            return self.vectors[:n]
        return encode(self.embeddings, self.sentences)

    def check(self, sentences: Sequence[str]) -> list[Verdict]:
        """A :class:`Verdict` for each sentence: best passage, score, foreign tokens, supported."""
        if self.embeddings is None:
            scored = [(1.0, -1)] * len(sentences)
        else:
            scored = support(sentences, self.passages, self.embeddings, self.vectors)
        out = []
        for sentence, (score, index) in zip(sentences, scored, strict=True):
            foreign = foreign_tokens(sentence, self.vocabulary)
            out.append(Verdict(sentence, score, index, foreign, score >= self.threshold and not foreign))
        return out


__all__ = ["STEM", "STOPWORDS", "SUPPORT_THRESHOLD", "Grounding", "Verdict", "Vocabulary", "content_words", "encode", "terms",
           "foreign_tokens", "join_sentences", "overlap", "passages", "split_sentences", "support"]
