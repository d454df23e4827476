"""Summarization of text of any length, budgeted by the model's own tokenizer and guarded by its source.

Strategies (every prompt is measured with the chat model's tokenizer and chat template before it
is sent, so no prompt plus its reply ever exceeds the context window, however long the text):

- ``stuff``: the whole text in one prompt (only when it fits);
- ``map_reduce``: summarize window-sized chunks, then combine the summaries (collapsing them in
  groups first if even the summaries do not fit);
- ``refine``: summarize the first chunk, then update that summary with each next chunk;
- ``extract`` (extract-then-abstract): pick the sentences closest to the text's centroid
  (``chains.extractive``), then let the model rewrite just those: one short prompt for any length;
- ``select``: the extract step's selection (with its position prior) as the summary, verbatim and in
  document order, to the summary's length: no model call, so faithful by construction;
- ``auto`` (default): chosen by the text's length from the table :data:`AUTO`, measured on the
  summarization eval's dev split (``docs/chains.md``).

The final summary passes the hallucination guard (``chains.guard``): a sentence that no source
passage supports, or that names a name, number or link the source lacks, is dropped (or flagged).
Partial summaries pass it too, so a combine step never builds on an invented fact. Intermediate
steps can be cached (``SummarizeConfig.cache``) so an interrupted long summary resumes.

    from llmapp import load_chat_model, load_embeddings
    from chains.summarize import summarize
    text = open("llmapp/corpora/tinyshakespeare.txt").read()[:100_000]
    print(summarize(text, load_chat_model(max_tokens=200), embeddings=load_embeddings(), progress=True))

    llmapp summarize FILE [--strategy auto|stuff|map_reduce|refine|extract|select] [--guard drop|flag|off]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator

from chains.budget import Budget
from chains.grounding import Grounding, join_sentences
from chains.guard import GUARD_MODES, SentenceGuard
from chains.progress import Progress
from chains.step_cache import StepCache, cache_key
from chains.summary_settings import (  # re-exported: the public names of chains.summarize
    AUTO,
    LENGTHS,
    PART_LENGTH,
    SENTENCE_TOKENS,
    STRATEGIES,
    SummarizeConfig,
    SummaryStats,
    length_words,
    pick_strategy,
    target_sentences,
)
from llmapp.core.errors import LLMAppError, PromptTooLong

log = logging.getLogger(__name__)

__all__ = ["AUTO", "LENGTHS", "STRATEGIES", "SummarizeConfig", "Summarizer", "SummaryStats", "pick_strategy",
           "summarize", "summarize_chain", "summarize_stream", "target_sentences"]

class Summarizer:
    """One summarization run: the steps of a strategy, each prompt checked against the window.

    Args:
        chat_model: a LangChain chat model with ``get_num_tokens_from_messages``.
        config: the settings.
        progress: True for a tqdm bar, a ``callback(done, total[, label])``, or None.
        run_config: LangChain ``RunnableConfig`` passed to every model call.
        embeddings: sentence embeddings for the guard's support check and the extract and select strategies;
            None: the guard checks names, numbers and links only, and extract ranks by word frequency.
        grounding: the text already prepared (``Grounding(text, embeddings, threshold)``), when the
            caller has embedded it for another purpose; it must be of the text passed to :meth:`run`.
    """

    def __init__(self, chat_model: Any, config: SummarizeConfig | None = None, progress: Any = None,
                 run_config: RunnableConfig | None = None, embeddings: Any = None, grounding: Any = None) -> None:
        from langchain_core.output_parsers import StrOutputParser

        from prompts import load_prompt

        self.chat_model, self.config, self.run_config = chat_model, config or SummarizeConfig(), run_config
        self.embeddings = embeddings
        if self.config.guard not in GUARD_MODES:
            raise LLMAppError(f"unknown guard mode {self.config.guard!r}; use one of: {', '.join(GUARD_MODES)}")
        self.budget = Budget(chat_model, self.config.context_window)
        self.prompts = {k: load_prompt(getattr(self.config, f"{k}_template"))
                        for k in ("map", "combine", "refine", "extract")}
        self.parser = StrOutputParser()
        self.progress = Progress(progress)
        self.stats = SummaryStats()
        self.cache: StepCache | None = None
        self._grounding: Grounding | None = grounding
        self.text = ""
        self.n_sentences = 4
        self.length = "four"

    # ------------------------------------------------------------------------------------------ the run

    def run(self, text: str) -> Iterator[str]:
        """Yield the final summary in pieces (earlier steps run to completion first)."""
        t0 = time.perf_counter()
        if not text.strip():
            raise LLMAppError("nothing to summarize: the text is empty")
        strategy = self.config.strategy
        if strategy not in STRATEGIES:
            raise LLMAppError(f"unknown strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}")
        if self._grounding is not None and self._grounding.source != text:
            raise LLMAppError("internal: the grounding given to Summarizer is of another text")
        self.text = text
        n_tokens = self.stats.text_tokens = self.budget.text_tokens(text)
        self.n_sentences = self.config.sentences or target_sentences(n_tokens)
        self.length = length_words(self.n_sentences)
        fits = self.budget.fits(self.prompts["map"], text=text, **self._extra("map"))
        if strategy == "auto":
            strategy = pick_strategy(n_tokens)
            strategy = "map_reduce" if strategy == "stuff" and not fits else strategy
        self.stats.strategy = strategy
        if self.config.cache and strategy != "select":
            settings = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("cache", "cache_dir")}
            self.cache = StepCache.open(cache_key(text, self.chat_model, {**settings, "strategy": strategy}),
                                        self.config.cache_dir)
        log.info("summarizing %d characters (%d tokens) with %s", len(text), n_tokens, strategy)
        if strategy == "stuff" and not fits:
            raise PromptTooLong(f"the text is {n_tokens} tokens and does not fit the {self.budget.window}-token "
                                "window in one prompt; use map_reduce, refine or extract")
        if strategy == "select":  # verbatim source sentences: nothing for the guard to check
            self.progress.plan(0)
            yield from self.select()
        else:
            yield from self.finish(*self._plan(strategy, text))
        if self.cache is not None and self.cache.path is not None:
            self.cache.path.unlink(missing_ok=True)  # finished: nothing left to resume
        self.stats.seconds = time.perf_counter() - t0

    def _plan(self, strategy: str, text: str) -> tuple[str, dict[str, str]]:
        plan = {"stuff": self.stuff, "map_reduce": self.map_reduce, "refine": self.refine, "extract": self.extract}
        return plan[strategy](text)

    def stuff(self, text: str) -> tuple[str, dict[str, str]]:
        self.progress.plan(1)
        return "map", {"text": text}

    def map_reduce(self, text: str) -> tuple[str, dict[str, str]]:
        room = self.budget.space(self.prompts["map"], **self._extra("map", PART_LENGTH))
        chunks = self.budget.split(text, self.chunk_size(room))
        self.progress.plan(len(chunks) + 1)
        summaries = [self.call("map", f"chunk {i} of {len(chunks)}", text=c, sentences=PART_LENGTH)
                     for i, c in enumerate(chunks, 1)]
        summaries = [s for s in summaries if s]
        while True:
            joined = "\n\n".join(summaries)
            if self.budget.fits(self.prompts["combine"], text=joined, **self._extra("combine")):
                return "combine", {"text": joined}
            groups = self.group(summaries, self.budget.space(self.prompts["combine"], **self._extra("combine")))
            self.progress.plan(self.progress.total + len(groups))
            summaries = [self.call("combine", f"combining group {i} of {len(groups)}", text="\n\n".join(g))
                         for i, g in enumerate(groups, 1)]

    def refine(self, text: str) -> tuple[str, dict[str, str]]:
        # Room for the running summary (at most one reply long) comes out of each chunk's share.
        extra = self._extra("refine")
        size = self.budget.space(self.prompts["refine"], existing_summary="", **extra) - self.budget.reply
        chunks = self.budget.split(text, self.chunk_size(size))
        self.progress.plan(len(chunks))
        if len(chunks) == 1:
            return "map", {"text": chunks[0]}
        summary = self.call("map", f"chunk 1 of {len(chunks)}", text=chunks[0])
        for i, chunk in enumerate(chunks[1:-1], 2):
            summary = self.call("refine", f"chunk {i} of {len(chunks)}", existing_summary=summary, text=chunk) or summary
        return "refine", {"existing_summary": summary, "text": chunks[-1]}

    def extract(self, text: str) -> tuple[str, dict[str, str]]:
        from chains.extractive import select_sentences

        self.progress.plan(1)
        g = self.grounding
        room = min(self.config.extract_tokens, self.budget.space(self.prompts["extract"], **self._extra("extract")))
        picks = select_sentences(g.sentences, self.embeddings, max_tokens=room, count=self.budget.text_tokens,
                                 max_sentences=self.config.extract_sentences or len(g.sentences),
                                 vectors=g.sentence_vectors(), lead=self.config.extract_lead)
        if not picks:
            raise PromptTooLong(f"no sentence of the text fits the {room} tokens left in the window; lower max_tokens")
        return "extract", {"text": "\n".join(g.sentences[i] for i in picks)}

    def select(self) -> Iterator[str]:
        """The ``select`` summary: the most central sentences (position prior ``extract_lead``, no
        near-duplicates), verbatim in document order, up to ``sentences x SENTENCE_TOKENS x select_scale``
        tokens; never empty (the most central sentence, whatever its length)."""
        from chains.extractive import select_sentences

        g = self.grounding
        room = int(self.n_sentences * SENTENCE_TOKENS * self.config.select_scale)
        picks = select_sentences(g.sentences, self.embeddings, max_sentences=2 * self.n_sentences, max_tokens=room,
                                 count=self.budget.text_tokens, vectors=g.sentence_vectors(),
                                 lead=self.config.extract_lead)
        if not picks:
            picks = select_sentences(g.sentences, self.embeddings, max_sentences=1, vectors=g.sentence_vectors(),
                                     lead=self.config.extract_lead)
        summary = " ".join(g.sentences[i] for i in picks)
        self.stats.raw = summary
        yield summary

    def chunk_size(self, space: int) -> int:
        return min(space, self.config.chunk_tokens) if self.config.chunk_tokens else space

    def group(self, summaries: list[str], space: int) -> list[list[str]]:
        """Consecutive summaries packed into groups whose joined text fits ``space`` tokens."""
        groups: list[list[str]] = [[]]
        used = 0
        for s in summaries:
            n = self.budget.text_tokens(s) + 2
            if groups[-1] and used + n > space:
                groups.append([])
                used = 0
            groups[-1].append(s)
            used += n
        if len(groups) == len(summaries) and len(groups) > 1:  # no two summaries fit together: cannot shrink
            raise PromptTooLong(f"the {self.budget.window}-token window cannot hold two partial summaries; "
                                "lower max_tokens")
        return groups

    # ------------------------------------------------------------------------------------------ model calls

    @property
    def grounding(self) -> Grounding:
        """The source prepared for the guard and for extraction (embedded once, on first use)."""
        if self._grounding is None:
            self._grounding = Grounding(self.text, self.embeddings, self.config.support_threshold)
        return self._grounding

    def _extra(self, step: str, length: str | None = None) -> dict[str, str]:
        """Values a template may take besides its text: the summary length, where it asks for one."""
        prompt = self.prompts[step]
        known = set(prompt.input_variables) | set(getattr(prompt, "partial_variables", {}) or {})
        return {"sentences": length or self.length} if "sentences" in known else {}

    def messages(self, step: str, values: dict[str, str]) -> Any:
        prompt = self.prompts[step]
        values = dict(values)
        length = values.pop("sentences", None)  # given only where the template asks for a length
        values.update(self._extra(step, length))
        used = self.budget.prompt_tokens(prompt, **values)
        if used > self.budget.room:  # the budgeting above should make this impossible; never send it
            raise PromptTooLong(f"internal: a {step} prompt of {used} tokens exceeds the {self.budget.room} available")
        self.stats.max_prompt_tokens = max(self.stats.max_prompt_tokens, used)
        self._pending = used
        return prompt.format_messages(**values)

    def call(self, step: str, label: str, **values: str) -> str:
        """One intermediate step: its reply (from the cache when it has it), cleaned by the guard."""
        messages = self.messages(step, values)
        reply = self.cache.get(messages) if self.cache is not None else None
        self.progress.begin(label)
        if reply is None:
            reply = self.parser.invoke(self.chat_model.invoke(messages, self.run_config)).strip()
            self._count(reply)
            if self.cache is not None:
                self.cache.put(messages, reply)
        else:
            self.stats.cached_steps += 1
            label += " (cached)"
        self.stats.steps += 1
        self.progress.tick(label)
        if self.config.guard == "off":
            return reply
        guard = SentenceGuard(self.grounding, "drop")
        return (guard.feed(reply) + guard.flush()).strip()

    def finish(self, step: str, values: dict[str, str]) -> Iterator[str]:
        """The last step, streamed through the guard; the extractive selection if nothing survives."""
        messages = self.messages(step, values)
        self.progress.begin("final summary")
        inner = self.chat_model.stream(messages, self.run_config)
        guard = SentenceGuard(self.grounding, self.config.guard) if self.config.guard != "off" else None
        raw, finish = "", None
        try:
            for chunk in inner:
                raw += chunk.content
                finish = (getattr(chunk, "response_metadata", None) or {}).get("finish_reason") or finish
                out = guard.feed(chunk.content) if guard else chunk.content
                if out:
                    yield out
        finally:
            inner.close()
        self._count(raw)
        self.stats.raw = raw
        self.stats.steps += 1
        self.progress.tick("final summary")
        if guard is None:
            return
        tail = guard.flush(truncated=finish == "length")
        if tail:
            yield tail
        self.stats.dropped = guard.dropped
        if not guard.kept or (self.config.top_up and guard.dropped):
            self.stats.fallback = not guard.kept
            extra = self.fill(guard.kept)
            if extra:
                yield join_sentences(extra, guard.kept[-1] if guard.kept else "")

    def fill(self, kept: list[str]) -> list[str]:
        """The source's most central sentences, verbatim (so supported by construction), that the
        ``kept`` summary sentences do not already say, up to the summary's length in tokens."""
        from chains.extractive import select_sentences, word_vectors
        from chains.grounding import encode

        g = self.grounding
        vectors, said = g.sentence_vectors(), None
        if kept and self.embeddings is not None:
            said = encode(self.embeddings, kept)
        elif kept:  # no embeddings: word-frequency vectors over source and summary together
            both = word_vectors(g.sentences + kept)
            vectors, said = both[:len(g.sentences)], both[len(g.sentences):]
        target = min(self.budget.reply, self.n_sentences * SENTENCE_TOKENS)
        room = target - sum(self.budget.text_tokens(k) for k in kept)
        picks = select_sentences(g.sentences, self.embeddings, max_sentences=self.n_sentences, max_tokens=room,
                                 count=self.budget.text_tokens, vectors=vectors, avoid=said,
                                 avoid_above=self.config.support_threshold,
                                 lead=self.config.extract_lead) if room > 0 else []
        if not picks and not kept:  # never an empty summary: the most central sentence, whatever its length
            picks = select_sentences(g.sentences, self.embeddings, max_sentences=1, vectors=g.sentence_vectors())
        self.stats.topped_up = len(picks)
        return [g.sentences[i] for i in picks]

    def _count(self, reply: str) -> None:
        self.stats.prompt_tokens += getattr(self, "_pending", 0)
        self.stats.output_tokens += self.budget.text_tokens(reply) if reply else 0


def summarize_stream(text: str, chat_model: Any, strategy: str | None = None, progress: Any = None,
                     config: SummarizeConfig | None = None, run_config: RunnableConfig | None = None,
                     embeddings: Any = None) -> Iterator[str]:
    """Like :func:`summarize`, yielding the final summary in pieces as the model writes it."""
    config = config or SummarizeConfig()
    config = dataclasses.replace(config, strategy=strategy) if strategy else config
    yield from Summarizer(chat_model, config, progress, run_config, embeddings).run(text)


def summarize(text: str, chat_model: Any, strategy: str | None = None, progress: Any = None,
              config: SummarizeConfig | None = None, run_config: RunnableConfig | None = None,
              embeddings: Any = None) -> str:
    """Summarize ``text`` of any length.

    Args:
        text: the text.
        chat_model: a LangChain chat model with ``get_num_tokens_from_messages`` (``load_chat_model()``);
            its ``max_tokens`` caps every partial and final summary.
        strategy: ``auto``, ``stuff``, ``map_reduce``, ``refine``, ``extract`` or ``select``; None: the
            config's (``auto`` by default).
        progress: True for a tqdm bar, a ``callback(done_steps, total_steps[, label])``, or None.
        config: chunk size, window override, length, guard, cache and template names.
        run_config: a LangChain ``RunnableConfig`` (callbacks, tags) passed to every model call.
        embeddings: sentence embeddings (``load_embeddings()``) for the guard, ``extract`` and ``select``;
            without them the guard checks names, numbers and links only.

    Returns:
        The summary.
    """
    return "".join(summarize_stream(text, chat_model, strategy, progress, config, run_config, embeddings)).strip()


def summarize_chain(chat_model: Any, strategy: str | None = None, settings: SummarizeConfig | None = None,
                    embeddings: Any = None) -> Runnable:
    """A Runnable: ``{"text": str}`` or ``str`` in, summary ``str`` out; ``.stream()`` streams the last step."""

    def transform(inputs: Iterator[Any], config: RunnableConfig) -> Iterator[str]:
        for value in inputs:
            text = value.get("text") if isinstance(value, dict) else value
            if not isinstance(text, str):
                raise LLMAppError("summarize_chain takes a str or {'text': str}")
            yield from summarize_stream(text, chat_model, strategy, None, settings, config, embeddings)

    return RunnableGenerator(transform, name=f"summarize:{strategy or (settings or SummarizeConfig()).strategy}")
