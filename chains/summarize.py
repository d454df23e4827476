"""Summarization of text of any length: stuff, map-reduce or refine, budgeted by the model's own tokenizer.

Every prompt is measured with the chat model's tokenizer and chat template before it is sent, so no
prompt plus its reply ever exceeds the context window, however long the text:

- ``stuff``: the whole text in one prompt (only when it fits);
- ``map_reduce``: summarize window-sized chunks, then combine the summaries (collapsing them in
  groups first if even the summaries do not fit);
- ``refine``: summarize the first chunk, then update that summary with each next chunk;
- ``auto`` (default): ``stuff`` when the text fits the window, else ``map_reduce``.

    from llmapp import load_chat_model
    from chains.summarize import summarize
    text = open("../shared/data/tinyshakespeare.txt").read()[:100_000]
    print(summarize(text, load_chat_model(max_tokens=160), progress=True))

    llmapp summarize FILE [--strategy stuff|map_reduce|refine|auto]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator

from llmapp.core.errors import LLMAppError, PromptTooLong

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "stuff", "map_reduce", "refine")
SLACK = 8  # tokens kept free: a chunk tokenized alone can differ by a token or two inside the template


@dataclass
class SummarizeConfig:
    """How text is cut and budgeted."""

    strategy: str = "auto"  # auto picks stuff when the text fits the window, else map_reduce
    chunk_tokens: int | None = None  # text tokens per map/refine step; None = as many as fit the window
    context_window: int | None = None  # budget against this instead of the model's window (tests, safety margin)
    map_template: str = "summarize_map"  # also used by stuff
    combine_template: str = "summarize_combine"
    refine_template: str = "summarize_refine"


class Budget:
    """Token counting against one chat model's window, with its own tokenizer and chat template."""

    def __init__(self, chat_model: Any, config: SummarizeConfig) -> None:
        self.chat_model = chat_model
        window = config.context_window or getattr(chat_model, "context_window", None)
        if not window:
            raise LLMAppError("the chat model does not say its context window; set SummarizeConfig.context_window")
        self.reply = int(getattr(chat_model, "max_tokens", None) or 256)
        self.room = window - self.reply  # what a prompt may take: the reply shares the window
        self.window = window
        if self.room < 4 * SLACK:
            raise PromptTooLong(f"max_tokens={self.reply} leaves no room in the {window}-token window; lower it")

    def prompt_tokens(self, prompt: Any, **values: str) -> int:
        return int(self.chat_model.get_num_tokens_from_messages(prompt.format_messages(**values)))

    def text_tokens(self, text: str) -> int:
        return int(self.chat_model.get_num_tokens(text))

    def space(self, prompt: Any, **values: str) -> int:
        """Tokens left for ``text`` in ``prompt`` once the other values are filled in."""
        return self.room - self.prompt_tokens(prompt, text="", **values) - SLACK

    def split(self, text: str, size: int) -> list[str]:
        """Cut ``text`` into pieces of at most ``size`` tokens, at paragraph/line/word boundaries."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        if size < 16:
            raise PromptTooLong(f"only {size} tokens are left for text in the {self.window}-token window; "
                                "lower max_tokens or use a model with a longer window")
        tok = getattr(getattr(self.chat_model, "lm", None), "tokenizer", None)
        if tok is not None:
            splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tok, chunk_size=size, chunk_overlap=0)
        else:
            splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=0, length_function=self.text_tokens)
        return [c for c in splitter.split_text(text) if c.strip()]


class Summarizer:
    """One summarization run: the steps of a strategy, each prompt checked against the window."""

    def __init__(self, chat_model: Any, config: SummarizeConfig, progress: Any = None,
                 run_config: RunnableConfig | None = None) -> None:
        from langchain_core.output_parsers import StrOutputParser

        from prompts import load_prompt

        self.chat_model, self.config, self.run_config = chat_model, config, run_config
        self.budget = Budget(chat_model, config)
        self.prompts = {k: load_prompt(getattr(config, f"{k}_template")) for k in ("map", "combine", "refine")}
        self.parser = StrOutputParser()
        self.progress = _progress(progress)
        self.steps = self.done = 0

    def run(self, text: str) -> Iterator[str]:
        """Yield the final summary in pieces (earlier steps run to completion first)."""
        if not text.strip():
            raise LLMAppError("nothing to summarize: the text is empty")
        strategy = self.config.strategy
        if strategy not in STRATEGIES:
            raise LLMAppError(f"unknown strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}")
        fits = self.budget.prompt_tokens(self.prompts["map"], text=text) <= self.budget.room
        if strategy == "auto":
            strategy = "stuff" if fits else "map_reduce"
        log.info("summarizing %d characters with %s", len(text), strategy)
        if strategy == "stuff":
            if not fits:
                raise PromptTooLong(f"the text is {self.budget.text_tokens(text)} tokens and does not fit the "
                                    f"{self.budget.window}-token window in one prompt; use map_reduce or refine")
            self.steps = 1
            return self.stream("map", text=text)
        return self.map_reduce(text) if strategy == "map_reduce" else self.refine(text)

    def map_reduce(self, text: str) -> Iterator[str]:
        chunks = self.budget.split(text, self.chunk_size(self.budget.space(self.prompts["map"])))
        self.steps = len(chunks) + 1
        summaries = [self.call("map", text=c) for c in chunks]
        while True:
            joined = "\n\n".join(summaries)
            if self.budget.prompt_tokens(self.prompts["combine"], text=joined) <= self.budget.room:
                return self.stream("combine", text=joined)
            groups = self.group(summaries, self.budget.space(self.prompts["combine"]))
            self.steps += len(groups)
            summaries = [self.call("combine", text="\n\n".join(g)) for g in groups]

    def refine(self, text: str) -> Iterator[str]:
        # Room for the running summary (at most one reply long) comes out of each chunk's share.
        size = self.budget.space(self.prompts["refine"], existing_summary="") - self.budget.reply
        chunks = self.budget.split(text, self.chunk_size(size))
        self.steps = len(chunks)
        summary = self.call("map", text=chunks[0]) if len(chunks) > 1 else None
        if summary is None:
            return self.stream("map", text=chunks[0])
        for chunk in chunks[1:-1]:
            summary = self.call("refine", existing_summary=summary, text=chunk)
        return self.stream("refine", existing_summary=summary, text=chunks[-1])

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

    def messages(self, step: str, values: dict[str, str]) -> Any:
        prompt = self.prompts[step]
        used = self.budget.prompt_tokens(prompt, **values)
        if used > self.budget.room:  # the budgeting above should make this impossible; never send it
            raise PromptTooLong(f"internal: a {step} prompt of {used} tokens exceeds the {self.budget.room} available")
        return prompt.format_messages(**values)

    def call(self, step: str, **values: str) -> str:
        out = self.parser.invoke(self.chat_model.invoke(self.messages(step, values), self.run_config)).strip()
        self.tick()
        return out

    def stream(self, step: str, **values: str) -> Iterator[str]:
        messages = self.messages(step, values)
        inner = self.chat_model.stream(messages, self.run_config)
        try:
            for chunk in inner:
                if chunk.content:
                    yield chunk.content
        finally:
            inner.close()
        self.tick()

    def tick(self) -> None:
        self.done += 1
        self.progress(self.done, max(self.steps, self.done))


def _progress(progress: Any) -> Callable[[int, int], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda done, total: None
    from tqdm.auto import tqdm

    bar = tqdm(desc="summarizing", unit="step", disable=None)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def summarize_stream(text: str, chat_model: Any, strategy: str = "auto", progress: Any = None,
                     config: SummarizeConfig | None = None, run_config: RunnableConfig | None = None) -> Iterator[str]:
    """Like :func:`summarize`, yielding the final summary in pieces as the model writes it."""
    import dataclasses

    config = dataclasses.replace(config or SummarizeConfig(), strategy=strategy)
    yield from Summarizer(chat_model, config, progress, run_config).run(text)


def summarize(text: str, chat_model: Any, strategy: str = "auto", progress: Any = None,
              config: SummarizeConfig | None = None, run_config: RunnableConfig | None = None) -> str:
    """Summarize ``text`` of any length.

    Args:
        text: the text.
        chat_model: a LangChain chat model with ``get_num_tokens_from_messages`` (``load_chat_model()``);
            its ``max_tokens`` is the length of every partial and final summary.
        strategy: ``auto``, ``stuff``, ``map_reduce`` or ``refine``.
        progress: True for a tqdm bar, a ``callback(done_steps, total_steps)``, or None.
        config: chunk size, window override and template names.
        run_config: a LangChain ``RunnableConfig`` (callbacks, tags) passed to every model call.

    Returns:
        The summary.
    """
    return "".join(summarize_stream(text, chat_model, strategy, progress, config, run_config)).strip()


def summarize_chain(chat_model: Any, strategy: str = "auto", settings: SummarizeConfig | None = None) -> Runnable:
    """A Runnable: ``{"text": str}`` or ``str`` in, summary ``str`` out; ``.stream()`` streams the last step."""

    def transform(inputs: Iterator[Any], config: RunnableConfig) -> Iterator[str]:
        for value in inputs:
            text = value.get("text") if isinstance(value, dict) else value
            if not isinstance(text, str):
                raise LLMAppError("summarize_chain takes a str or {'text': str}")
            yield from summarize_stream(text, chat_model, strategy, None, settings, config)

    return RunnableGenerator(transform, name=f"summarize:{strategy}")
