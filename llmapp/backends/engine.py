"""The engine seam of the local backends, and the text stream every local model reads from it.

A local backend supplies an :class:`Engine`: it tokenizes, renders the chat template and streams raw
text pieces for a prompt (:class:`Generation`). :class:`TextStream` turns that into what users rely
on, for any engine: stop strings that never leak (a partial match is held back), a cancel event that
stops the engine within one token, a deadline, the loop guard, and ``usage``. :func:`fit_prompt` is
the context-window check, with opt-in left-truncation. The LangChain models over an engine are in
:mod:`llmapp.backends.base`.

    from llmapp.backends.engine import TextStream, fit_prompt
    ids = fit_prompt(engine.context_window, engine.chat_ids(messages), config)
    stream = TextStream(engine, ids, config)
    text = stream.text()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from llmapp.backends.loops import LoopGuard
from llmapp.core.config import GenerationConfig
from llmapp.core.errors import LLMAppError, PromptTooLong


class Generation(Protocol):
    """An engine's raw output for one prompt: iterate it for text pieces (until EOS, the token budget
    or the cancel event); when it ends, ``output_tokens`` and ``finish_reason`` say what happened."""

    output_tokens: int
    finish_reason: str | None  # "stop" (end of turn) or "length" (max_tokens); None when cancelled

    def __iter__(self) -> Iterator[str]: ...


class Engine(Protocol):
    """A loaded model behind a local backend: the one thing a new local backend implements."""

    name: str
    context_window: int

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``."""

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of ``messages`` rendered with the model's chat template, ready for the reply."""

    def generate(self, ids: list[int], config: GenerationConfig, cancel: threading.Event,
                 **options: Any) -> Generation:
        """Start decoding after ``ids``; setting ``cancel`` stops it within one token.

        ``options`` are engine-specific extras (``transformers.generate`` keywords, llama.cpp request
        fields), used by benchmarks and constrained decoding (``grammar``: llguidance Lark from
        :mod:`llmapp.backends.grammar`; only the tokens it allows are decoded).
        """

    def info(self) -> dict[str, Any]:
        """What runs the model (backend, its version, threads, device), recorded in bench and eval results."""


def fit_prompt(context_window: int, input_ids: list[int], config: GenerationConfig) -> list[int]:
    """Check a prompt against the context window, leaving room for ``config.max_tokens``.

    Returns:
        ``input_ids``, or its last tokens when ``config.truncate`` is set and it is too long.

    Raises:
        LLMAppError: an empty prompt.
        PromptTooLong: the prompt does not fit and truncation was not asked for.
    """
    if not input_ids:
        raise LLMAppError("empty prompt: give the model some text to continue")
    room = context_window - config.max_tokens
    if room <= 0:
        raise PromptTooLong(
            f"max_tokens={config.max_tokens} leaves no room in the {context_window}-token context window; lower max_tokens"
        )
    if len(input_ids) <= room:
        return input_ids
    if config.truncate:
        return input_ids[-room:]
    raise PromptTooLong(
        f"prompt is {len(input_ids)} tokens but only {room} fit ({context_window}-token window minus "
        f"max_tokens={config.max_tokens}); shorten it, lower max_tokens, or allow left-truncation (truncate=True)"
    )


class TextStream:
    """Iterate the text an engine generates, piece by piece; ``usage`` is filled in when it ends.

    Args:
        engine: the loaded model.
        input_ids: the prompt's token ids (already checked by :func:`fit_prompt`).
        config: decoding settings; ``config.stop`` strings end the text and are never emitted.
        cancel: set it from anywhere to stop generation within one token.
        timeout: seconds after which generation stops with what it has (finish reason ``length``).
        options: engine-specific extras passed to ``engine.generate``.
    """

    def __init__(self, engine: Engine, input_ids: list[int], config: GenerationConfig,
                 cancel: threading.Event | None = None, timeout: float | None = None, **options: Any) -> None:
        self.engine, self.input_ids, self.config, self.timeout, self.options = engine, input_ids, config, timeout, options
        self.cancel = cancel or threading.Event()
        self.usage: dict[str, Any] = {"input_tokens": len(input_ids), "output_tokens": 0, "finish_reason": None}

    def __iter__(self) -> Iterator[str]:
        stops = self.config.stop
        deadline = time.monotonic() + self.timeout if self.timeout else None
        generation = self.engine.generate(self.input_ids, self.config, self.cancel, **self.options)
        text = emitted = ""
        pieces = iter(generation)
        guard = LoopGuard() if self.config.stop_loops else None  # ends the reply where it starts repeating
        try:
            for piece in pieces:
                text += piece
                cut = _first_stop(text, stops, len(emitted))
                loop, hold = guard.check(text) if guard is not None else (None, 0)
                cut = loop if cut is None or (loop is not None and loop < cut) else cut
                if cut is not None:
                    self.usage["finish_reason"] = "stop"
                    self.cancel.set()
                    if cut > len(emitted):
                        yield text[len(emitted):cut]
                    break
                safe = len(text) - max(_held_back(text, stops), hold)
                if safe > len(emitted):
                    yield text[len(emitted):safe]
                    emitted = text[:safe]
                if deadline is not None and time.monotonic() > deadline:
                    self.usage["finish_reason"] = "length"
                    self.cancel.set()
                    break
            else:
                end = guard.check(text + "\n")[0] if guard is not None else None  # a last unit that repeats
                if len(text) > len(emitted) and not self.cancel.is_set():
                    yield text[len(emitted):end]  # a held-back tail that never became a stop string
            if self.usage["finish_reason"] is None:  # the engine ended: end of turn, budget, or a cancel from outside
                self.usage["finish_reason"] = generation.finish_reason or "cancelled"
        finally:
            self.cancel.set()
            close = getattr(pieces, "close", None)
            if close:
                close()  # waits for the engine to notice the cancel event
            self.usage["output_tokens"] = generation.output_tokens

    def text(self) -> str:
        """Run to the end and return the whole text."""
        return "".join(self)


def _first_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index where the earliest stop string starts in ``text``, searching only new text."""
    hits = [i for s in stops if (i := text.find(s, max(0, emitted - len(s) + 1))) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if s.startswith(text[-n:]):
                best = n
                break
    return best
