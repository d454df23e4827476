"""What a summary run is told and what it reports: settings, length and strategy tables, statistics.

``chains.summarize`` re-exports everything here; import from there.

    from chains.summarize import SummarizeConfig, pick_strategy
    SummarizeConfig(strategy="extract", guard="flag")
    pick_strategy(20_000)          # the strategy auto uses for a 20,000-token text
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chains.grounding import SUPPORT_THRESHOLD

STRATEGIES = ("auto", "stuff", "map_reduce", "refine", "extract", "select")
# Text tokens -> summary length in sentences; mirrors the reference guideline of the eval set
# (paragraph 1-2, note 3-4, chapter 4-6, long 5-8 sentences).
LENGTHS: tuple[tuple[int | None, int], ...] = ((450, 2), (3500, 4), (14000, 5), (None, 6))
# Text tokens -> strategy for "auto": the best strategy per length bucket on the dev split (SmolLM2-135M,
# ROUGE-L; within 0.01 the cheaper): select 0.304 vs stuff 0.290 on paragraphs, 0.258 vs extract 0.243 on
# notes, 0.168 vs 0.177 on chapters (a tie, select costs no model call), 0.170 vs 0.124 on long texts.
AUTO: tuple[tuple[int | None, str], ...] = ((450, "select"), (3500, "select"), (14000, "select"), (None, "select"))
SENTENCE_TOKENS = 30  # a summary sentence's usual length (the references average ~22 words): the length in
# tokens that topping up fills a summary to, n sentences x this
PART_LENGTH = "two or three"  # sentences per partial summary: many chunks must still fit one combine prompt
_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def length_words(n: int) -> str:
    """``n`` sentences as a prompt says it: "four"."""
    return _WORDS.get(n, str(n))


@dataclass
class SummarizeConfig:
    """How text is cut, budgeted, summarized and checked."""

    strategy: str = "auto"  # auto picks by the text's length from AUTO (measured), see STRATEGIES
    chunk_tokens: int | None = 1024  # text tokens per map/refine step; None = as many as fit. Small chunks
    # cost less: prefill time grows faster than linearly with prompt length on CPU
    context_window: int | None = None  # budget against this instead of the model's window (tests, safety margin)
    sentences: int | None = None  # summary length; None = by the text's length (LENGTHS)
    extract_tokens: int = 700  # extract: at most this many tokens of selected sentences for the model to rewrite
    extract_sentences: int | None = None  # extract: at most this many sentences; None = as many as fit
    # extract_tokens (on dev, handing over more sentences beat the summary's length + 1: 0.317 vs 0.282 ROUGE-L
    # on paragraphs, 0.236 vs 0.212 on notes)
    extract_lead: float = 0.2  # extract, select and top-up: weight of the position prior in sentence selection
    # (chains.extractive.select_sentences(lead=...)); on dev at select_scale 1.4, select scores 0.242 ROUGE-L
    # vs 0.228 at 0, 0.241 at 0.1, 0.233 at 0.3; extract with the model's rewrite 0.228 vs 0.229 at 0 (no change)
    select_scale: float = 1.4  # select: summary length in tokens = sentences x SENTENCE_TOKENS x this; on dev
    # (lead 0.2) 0.225 / 0.226 / 0.242 / 0.235 / 0.234 ROUGE-L at 1.0 / 1.2 / 1.4 / 1.7 / 2.0
    top_up: bool = True  # when the guard drops sentences, fill the summary to its length (sentences x
    # SENTENCE_TOKENS) with central source sentences it does not yet say (verbatim, so supported)
    guard: str = "drop"  # unsupported sentences: drop, flag ([unsupported: ...]) or off
    support_threshold: float = SUPPORT_THRESHOLD  # cosine to the nearest source passage a sentence needs
    cache: bool = False  # keep finished intermediate steps on disk so an interrupted run resumes
    cache_dir: str | None = None  # where; None = $LLMAPP_HOME/summaries
    map_template: str = "summarize_map"  # also used by stuff
    combine_template: str = "summarize_combine"
    refine_template: str = "summarize_refine"
    extract_template: str = "summarize_extract"


@dataclass
class SummaryStats:
    """What one run did: the eval's cost columns and the guard's record."""

    strategy: str = ""
    text_tokens: int = 0
    steps: int = 0  # model calls made or read from the cache
    cached_steps: int = 0
    prompt_tokens: int = 0  # tokens processed: every prompt sent (cached steps excluded) ...
    output_tokens: int = 0  # ... and every reply generated
    max_prompt_tokens: int = 0  # the largest prompt, for the window check (must be <= window - max_tokens)
    seconds: float = 0.0
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (sentence, why) removed by the guard
    fallback: bool = False  # the guard removed every sentence: the summary is the extractive selection
    topped_up: int = 0  # source sentences added where the guard had dropped some (see SummarizeConfig.top_up)
    raw: str = ""  # the last step's reply before the guard, to measure what the guard changed


def pick_strategy(text_tokens: int, table: tuple[tuple[int | None, str], ...] = AUTO) -> str:
    """The strategy ``auto`` uses for a text of ``text_tokens`` tokens."""
    return next(s for limit, s in table if limit is None or text_tokens <= limit)


def target_sentences(text_tokens: int) -> int:
    """Summary length, in sentences, for a text of ``text_tokens`` tokens (:data:`LENGTHS`)."""
    return next(n for limit, n in LENGTHS if limit is None or text_tokens <= limit)


__all__ = ["AUTO", "LENGTHS", "PART_LENGTH", "SENTENCE_TOKENS", "STRATEGIES", "SummarizeConfig", "SummaryStats", "length_words",
           "pick_strategy", "target_sentences"]
